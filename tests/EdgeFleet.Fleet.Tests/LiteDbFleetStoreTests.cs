using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Tests;

public sealed class LiteDbFleetStoreTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-store-").FullName;
    private readonly LiteDbFleetStore _store;

    public LiteDbFleetStoreTests() => _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));

    internal static TelemetryBatch Batch(string device, string stream, long first, int count) => new()
    {
        DeviceId = device,
        StreamId = stream,
        FirstSeq = first,
        LastSeq = first + count - 1,
        Records = Enumerable.Range(0, count).Select(i => new TelemetryRecord
        {
            Seq = first + i,
            Ts = T0.AddSeconds(first + i),
            Kind = TelemetryKind.Inference,
            Inference = new InferenceSample { Model = "m", Version = "1", Label = $"l{first + i}", Confidence = 0.5f, LatencyMicros = 10 },
        }).ToList(),
    };

    private static HelloMessage Hello(string device, string boot) => new()
    {
        DeviceId = device,
        AgentVersion = "0.1.0",
        HardwareProfile = "x86-64-generic",
        BootId = boot,
        StartedAt = T0,
        Models = [new ModelRef { Name = "m", Version = "1" }],
    };

    [Fact]
    public async Task Stores_each_record_once_and_acknowledges_the_highest_stored()
    {
        var first = await _store.StoreTelemetryAsync(Batch("d1", "s", 1, 10), T0, default);
        var again = await _store.StoreTelemetryAsync(Batch("d1", "s", 1, 10), T0, default);
        var overlap = await _store.StoreTelemetryAsync(Batch("d1", "s", 6, 10), T0, default);

        Assert.Equal(new TelemetryStoreResult(10, 10, 0, 0), first);
        Assert.Equal(new TelemetryStoreResult(10, 0, 10, 0), again);
        Assert.Equal(new TelemetryStoreResult(15, 5, 5, 0), overlap);
        var stored = await _store.GetTelemetryAsync("d1", 100, default);
        Assert.Equal(Enumerable.Range(1, 15).Select(i => (long)i), stored.Select(r => r.Seq));
        Assert.Equal(15, (await _store.GetDeviceAsync("d1", default))!.TelemetryRecords);
    }

    [Fact]
    public async Task A_gap_the_device_skipped_is_counted_not_waited_on()
    {
        await _store.StoreTelemetryAsync(Batch("d1", "s", 1, 3), T0, default);
        var result = await _store.StoreTelemetryAsync(Batch("d1", "s", 10, 2), T0, default);
        Assert.Equal(new TelemetryStoreResult(11, 2, 0, 6), result);
        Assert.Equal(6, (await _store.GetDeviceAsync("d1", default))!.SkippedRecords);
    }

    [Fact]
    public async Task A_wiped_device_starts_a_new_stream_whose_records_are_not_duplicates()
    {
        await _store.StoreTelemetryAsync(Batch("d1", "old", 1, 5), T0, default);
        var result = await _store.StoreTelemetryAsync(Batch("d1", "new", 1, 3), T0, default);
        Assert.Equal(new TelemetryStoreResult(3, 3, 0, 0), result);
        Assert.Equal(8, (await _store.GetTelemetryAsync("d1", 100, default)).Count);
    }

    [Fact]
    public async Task Devices_are_kept_apart()
    {
        await _store.StoreTelemetryAsync(Batch("d1", "s", 1, 2), T0, default);
        await _store.StoreTelemetryAsync(Batch("d2", "s", 1, 3), T0, default);
        Assert.Equal(2, (await _store.GetTelemetryAsync("d1", 100, default)).Count);
        Assert.Equal(3, (await _store.GetTelemetryAsync("d2", 100, default)).Count);
        Assert.Equal(["d1", "d2"], (await _store.ListDevicesAsync(default)).Select(d => d.Id));
    }

    [Fact]
    public async Task Hello_registers_and_a_new_boot_id_counts_a_restart()
    {
        await _store.RecordHelloAsync(Hello("d1", "boot-a"), T0, default);
        await _store.RecordHelloAsync(Hello("d1", "boot-a"), T0.AddMinutes(1), default);
        await _store.RecordHelloAsync(Hello("d1", "boot-b"), T0.AddMinutes(2), default);
        var device = (await _store.GetDeviceAsync("d1", default))!;
        Assert.Equal(1, device.Restarts);
        Assert.Equal(T0, device.FirstSeen);
        Assert.Equal(T0.AddMinutes(2), device.LastSeen);
        Assert.Equal("m", device.ActiveModel!.Name);
        Assert.Null(await _store.GetDeviceAsync("nobody", default));
    }

    [Fact]
    public async Task Reported_state_updates_the_active_model()
    {
        await _store.RecordReportedAsync(new ReportedState { DeviceId = "d1", Active = new ModelRef { Name = "m", Version = "2" }, Ota = OtaState.Idle, UpdatedAt = T0 }, T0, default);
        Assert.Equal("2", (await _store.GetDeviceAsync("d1", default))!.ActiveModel!.Version);
    }

    [Fact]
    public async Task Everything_survives_reopening_the_file()
    {
        await _store.RecordHelloAsync(Hello("d1", "b"), T0, default);
        await _store.StoreTelemetryAsync(Batch("d1", "s", 1, 4), T0, default);
        _store.Dispose();
        using var reopened = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));
        var device = (await reopened.GetDeviceAsync("d1", default))!;
        Assert.Equal(4, device.AckedSeq);
        Assert.Equal("l4", device.LastInference!.Label);
        Assert.Equal(new TelemetryStoreResult(4, 0, 4, 0), await reopened.StoreTelemetryAsync(Batch("d1", "s", 1, 4), T0, default));
    }

    [Fact]
    public async Task Concurrent_batches_from_many_devices_are_all_stored_once()
    {
        await Parallel.ForEachAsync(Enumerable.Range(0, 20), async (d, ct) =>
        {
            for (var b = 0; b < 5; b++)
                await _store.StoreTelemetryAsync(Batch($"d{d}", "s", 1 + (b * 10), 10), T0, ct);
        });
        foreach (var device in await _store.ListDevicesAsync(default))
        {
            Assert.Equal(50, device.TelemetryRecords);
            Assert.Equal(50, device.AckedSeq);
        }
    }

    public void Dispose()
    {
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
