using System.Text;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Fleet.Tests;

public sealed class DeviceMessageRouterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-router-").FullName;
    private readonly LiteDbFleetStore _store;
    private readonly FleetMetrics _metrics = new();
    private readonly DeviceMessageRouter _router;

    public DeviceMessageRouterTests()
    {
        _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));
        _router = new DeviceMessageRouter(_store, _metrics, TimeProvider.System, NullLogger<DeviceMessageRouter>.Instance);
    }

    [Fact]
    public async Task Telemetry_is_stored_and_acknowledged_on_the_devices_ack_topic()
    {
        var batch = LiteDbFleetStoreTests.Batch("d1", "s", 1, 3);
        var reply = await _router.HandleAsync("ef/v1/d1/telemetry", WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), default);
        Assert.Equal("ef/v1/d1/telemetry/ack", reply!.Value.Topic);
        var ack = WireReader.Read(reply.Value.Payload, WireJsonContext.Default.TelemetryAck, "d1");
        Assert.Equal(3, ack.Message!.AckedSeq);
        Assert.Equal("s", ack.Message.StreamId);
        Assert.Equal([new SeqRange(1, 3)], ack.Message.Stored);
    }

    [Fact]
    public async Task A_redelivered_batch_is_acknowledged_again_but_stored_once()
    {
        var payload = WireReader.Write(LiteDbFleetStoreTests.Batch("d1", "s", 1, 5), WireJsonContext.Default.TelemetryBatch);
        var first = await _router.HandleAsync("ef/v1/d1/telemetry", payload, default);
        var second = await _router.HandleAsync("ef/v1/d1/telemetry", payload, default);
        Assert.Equal(first!.Value.Payload, second!.Value.Payload);
        Assert.Equal(5, _metrics.TelemetryStored);
        Assert.Equal(5, _metrics.TelemetryDuplicates);
        Assert.Equal(5, (await _store.GetTelemetryAsync("d1", 100, default)).Count);
    }

    [Fact]
    public async Task A_batch_whose_compressed_records_are_garbage_stores_nothing_and_is_not_acknowledged()
    {
        var batch = LiteDbFleetStoreTests.Batch("d1", "s", 1, 5) with { Records = [0x0b, 0xad, 0xf0, 0x0d] };
        Assert.Null(await _router.HandleAsync("ef/v1/d1/telemetry", WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), default));
        Assert.Equal(1, _metrics.Rejected[WireError.Malformed]);
        Assert.Empty(await _store.ListDevicesAsync(default));
    }

    [Theory]
    [InlineData("ef/v1/d1/telemetry", "\u0000\u0001garbage", WireError.Malformed)]
    [InlineData("ef/v1/d1/telemetry", "", WireError.Empty)]
    [InlineData("ef/v1/d1/hello", "{\"v\":9}", WireError.UnsupportedVersion)]
    [InlineData("ef/v1/d1/telemetry/ack", "{}", WireError.Invalid)]
    [InlineData("ef/v1/BAD/telemetry", "{}", WireError.Invalid)]
    public async Task Garbage_is_counted_with_its_reason_and_stores_nothing(string topic, string payload, WireError error)
    {
        Assert.Null(await _router.HandleAsync(topic, Encoding.UTF8.GetBytes(payload), default));
        Assert.Equal(1, _metrics.Rejected[error]);
        Assert.Empty(await _store.ListDevicesAsync(default));
    }

    [Fact]
    public async Task A_payload_claiming_another_device_is_refused()
    {
        var batch = LiteDbFleetStoreTests.Batch("d2", "s", 1, 1);
        Assert.Null(await _router.HandleAsync("ef/v1/d1/telemetry", WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), default));
        Assert.Equal(1, _metrics.Rejected[WireError.DeviceMismatch]);
        Assert.Empty(await _store.ListDevicesAsync(default));
    }

    public void Dispose()
    {
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
