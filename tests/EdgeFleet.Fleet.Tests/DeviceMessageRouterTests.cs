using System.Text;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Fleet.Telemetry;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Fleet.Tests;

public sealed class DeviceMessageRouterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-router-").FullName;
    private readonly LiteDbFleetStore _store;
    private readonly FleetMetrics _metrics = new();
    private readonly DeviceMessageRouter _router;
    private readonly ReplyQueue _replies = new();
    private readonly TelemetryIngest _ingest;

    public DeviceMessageRouterTests()
    {
        _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));
        _ingest = new TelemetryIngest(_store, _replies, _metrics, TimeProvider.System, NullLogger<TelemetryIngest>.Instance);
        _ingest.StartAsync(default).GetAwaiter().GetResult();
        _router = new DeviceMessageRouter(_store, _ingest, _replies, _metrics, TimeProvider.System, NullLogger<DeviceMessageRouter>.Instance);
    }

    /// <summary>The ack the ingest sends for a telemetry message, once it is stored.</summary>
    private async Task<Reply> TelemetryAsync(string topic, byte[] payload)
    {
        await _router.HandleAsync(topic, payload, default);
        return await _replies.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Telemetry_is_stored_and_acknowledged_on_the_devices_ack_topic()
    {
        var batch = LiteDbFleetStoreTests.Batch("d1", "s", 1, 3);
        var reply = await TelemetryAsync("ef/v1/d1/telemetry", WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch));
        Assert.Equal("ef/v1/d1/telemetry/ack", reply.Topic);
        var ack = WireReader.Read(reply.Payload, WireJsonContext.Default.TelemetryAck, "d1");
        Assert.Equal(3, ack.Message!.AckedSeq);
        Assert.Equal("s", ack.Message.StreamId);
        Assert.Equal([new SeqRange(1, 3)], ack.Message.Stored);
    }

    [Fact]
    public async Task An_update_s_outcome_in_telemetry_updates_the_device_when_the_live_report_was_lost_and_only_its_own()
    {
        // The live ota/status "committed" went out as the connection dropped; the buffered outcome record arrives later.
        var live = new OtaStatusMessage { DeviceId = "d1", ModelId = "m", Version = 2, State = OtaState.Downloading, At = DateTimeOffset.UtcNow };
        await _router.HandleAsync("ef/v1/d1/ota/status", WireReader.Write(live, WireJsonContext.Default.OtaStatusMessage), default);
        // It names another device: the device speaks only for itself.
        var outcome = live with { DeviceId = "d2", State = OtaState.Committed, At = live.At.AddSeconds(5) };
        List<TelemetryRecord> records = [new() { Seq = 1, Ts = outcome.At, Kind = TelemetryKind.OtaStatus, Ota = outcome }];
        await TelemetryAsync("ef/v1/d1/telemetry", WireReader.Write(TelemetryBatchCodec.CreateBatch("d1", "s", records), WireJsonContext.Default.TelemetryBatch));
        var device = await _store.GetDeviceAsync("d1", default);
        Assert.Equal((OtaState.Committed, "d1"), (device!.LastOta!.State, device.LastOta.DeviceId));
        Assert.Equal(OtaState.Committed, device.Ota);
        Assert.Null(await _store.GetDeviceAsync("d2", default));
    }

    [Fact]
    public async Task A_redelivered_batch_is_acknowledged_again_but_stored_once()
    {
        var payload = WireReader.Write(LiteDbFleetStoreTests.Batch("d1", "s", 1, 5), WireJsonContext.Default.TelemetryBatch);
        var first = await TelemetryAsync("ef/v1/d1/telemetry", payload);
        var second = await TelemetryAsync("ef/v1/d1/telemetry", payload);
        // The same acknowledgement (each carries the fleet's time as it was sent).
        var (a, b) = (WireReader.Read(first.Payload, WireJsonContext.Default.TelemetryAck, "d1").Message!,
            WireReader.Read(second.Payload, WireJsonContext.Default.TelemetryAck, "d1").Message!);
        Assert.Equal((a.StreamId, a.AckedSeq), (b.StreamId, b.AckedSeq));
        Assert.Equal(a.Stored, b.Stored);
        Assert.NotNull(b.FleetTime);
        Assert.Equal(5, _metrics.TelemetryStored);
        Assert.Equal(5, _metrics.TelemetryDuplicates);
        Assert.Equal(5, (await _store.GetTelemetryAsync("d1", 100, default)).Count);
    }

    [Fact]
    public async Task A_batch_whose_compressed_records_are_garbage_stores_nothing_and_is_not_acknowledged()
    {
        var batch = LiteDbFleetStoreTests.Batch("d1", "s", 1, 5) with { Records = [0x0b, 0xad, 0xf0, 0x0d] };
        await _router.HandleAsync("ef/v1/d1/telemetry", WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), default);
        Assert.Equal(1, _metrics.Rejected[WireError.Malformed]);
        Assert.False(_replies.Reader.TryRead(out _));
        Assert.Empty(await _store.ListDevicesAsync(default));
    }

    [Fact]
    public async Task A_hello_gets_the_devices_stored_desired_state_sent_again_and_only_its_own()
    {
        static byte[] Hello(string device) => WireReader.Write(new HelloMessage
        {
            DeviceId = device,
            AgentVersion = "0.1.0",
            HardwareProfile = "x86-64-generic",
            BootId = "b1",
            StartedAt = DateTimeOffset.UtcNow,
            Models = [],
        }, WireJsonContext.Default.HelloMessage);
        await _router.HandleAsync("ef/v1/d1/hello", Hello("d1"), default);
        Assert.False(_replies.Reader.TryRead(out _)); // nothing desired yet: nothing sent
        await _store.SetDesiredAsync("d1", [1, 2, 3], default);
        await _router.HandleAsync("ef/v1/d2/hello", Hello("d2"), default);
        Assert.False(_replies.Reader.TryRead(out _));
        await _router.HandleAsync("ef/v1/d1/hello", Hello("d1"), default);
        Assert.True(_replies.Reader.TryRead(out var reply));
        Assert.Equal("ef/v1/d1/state/desired", reply.Topic);
        Assert.Equal([1, 2, 3], reply.Payload);
    }

    [Theory]
    [InlineData("ef/v1/d1/telemetry", "\u0000\u0001garbage", WireError.Malformed)]
    [InlineData("ef/v1/d1/telemetry", "", WireError.Empty)]
    [InlineData("ef/v1/d1/hello", "{\"v\":9}", WireError.UnsupportedVersion)]
    [InlineData("ef/v1/d1/telemetry/ack", "{}", WireError.Invalid)]
    [InlineData("ef/v1/BAD/telemetry", "{}", WireError.Invalid)]
    public async Task Garbage_is_counted_with_its_reason_and_stores_nothing(string topic, string payload, WireError error)
    {
        await _router.HandleAsync(topic, Encoding.UTF8.GetBytes(payload), default);
        Assert.Equal(1, _metrics.Rejected[error]);
        Assert.Empty(await _store.ListDevicesAsync(default));
    }

    [Fact]
    public async Task A_payload_claiming_another_device_is_refused()
    {
        var batch = LiteDbFleetStoreTests.Batch("d2", "s", 1, 1);
        await _router.HandleAsync("ef/v1/d1/telemetry", WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), default);
        Assert.Equal(1, _metrics.Rejected[WireError.DeviceMismatch]);
        Assert.Empty(await _store.ListDevicesAsync(default));
    }

    [Fact]
    public async Task Batches_of_many_devices_arriving_together_are_stored_in_groups_and_each_acknowledged()
    {
        var payloads = Enumerable.Range(0, 300).Select(d => (Device: $"d{d}", Payload: WireReader.Write(LiteDbFleetStoreTests.Batch($"d{d}", "s", 1, 20), WireJsonContext.Default.TelemetryBatch))).ToList();
        foreach (var (device, payload) in payloads)
            await _router.HandleAsync($"ef/v1/{device}/telemetry", payload, default);
        var acked = new Dictionary<string, long>();
        for (var i = 0; i < payloads.Count; i++)
        {
            var reply = await _replies.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            var ack = WireReader.Read(reply.Payload, WireJsonContext.Default.TelemetryAck).Message!;
            acked[ack.DeviceId] = ack.AckedSeq;
        }
        Assert.Equal(300, acked.Count);
        Assert.All(acked.Values, a => Assert.Equal(20, a));
        Assert.Equal(6000, _metrics.TelemetryStored);
    }

    public void Dispose()
    {
        _ingest.StopAsync(default).GetAwaiter().GetResult();
        _ingest.Dispose();
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
