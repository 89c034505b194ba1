using EdgeFleet.TestServers;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Tests;

/// <summary>
/// The store suite: every <see cref="IFleetStore"/> implementation runs all of it (LiteDB and PostgreSQL below,
/// identity and audit in <c>FleetStoreContract.Identity.cs</c>).
/// </summary>
public abstract partial class FleetStoreContract : IDisposable
{
    protected static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);
    private readonly Lazy<IFleetStore> _opened;

    protected FleetStoreContract() => _opened = new Lazy<IFleetStore>(Open, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Opens the store under test on its (fresh, per-test) storage.</summary>
    protected abstract IFleetStore Open();

    protected IFleetStore _store => _opened.Value;

    internal static List<TelemetryRecord> Records(long first, int count, string label = "l") => Enumerable.Range(0, count).Select(i => new TelemetryRecord
    {
        Seq = first + i,
        Ts = T0.AddSeconds(first + i),
        Kind = TelemetryKind.Inference,
        Inference = new InferenceSample { Model = "m", Version = "1", Label = $"{label}{first + i}", Confidence = 0.5f, LatencyMicros = 10 },
    }).ToList();

    internal static TelemetryBatch Batch(string device, string stream, long first, int count, long? pendingFrom = null) =>
        TelemetryBatchCodec.CreateBatch(device, stream, Records(first, count), pendingFrom);

    private Task<TelemetryStoreResult> Store(string device, string stream, long first, int count, long? pendingFrom = null) =>
        Store(device, stream, Records(first, count), pendingFrom);

    private Task<TelemetryStoreResult> Store(string device, string stream, List<TelemetryRecord> records, long? pendingFrom = null) =>
        _store.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch(device, stream, records, pendingFrom), records, T0, default);

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
    public async Task A_late_progress_report_does_not_undo_an_update_s_outcome_but_a_retry_after_a_failure_counts()
    {
        await _store.RecordHelloAsync(Hello("d1", "b"), T0, default);
        OtaStatusMessage Status(long version, OtaState state, int second) =>
            new() { DeviceId = "d1", ModelId = "m", Version = version, State = state, At = T0.AddSeconds(second) };
        async Task<OtaState?> Last() => (await _store.GetDeviceAsync("d1", default))?.LastOta?.State;

        // Over a lossy link "downloading" arrives after "committed" (live status vs the outcome record).
        await _store.RecordOtaStatusAsync(Status(2, OtaState.Committed, 10), T0, default);
        await _store.RecordOtaStatusAsync(Status(2, OtaState.Downloading, 5), T0, default);
        Assert.Equal(OtaState.Committed, await Last());
        Assert.Equal(OtaState.Committed, (await _store.GetDeviceAsync("d1", default))!.Ota);

        // A failed update is tried again: its progress is news. So is another version's.
        await _store.RecordOtaStatusAsync(Status(3, OtaState.Failed, 20), T0, default);
        await _store.RecordOtaStatusAsync(Status(3, OtaState.Downloading, 30), T0, default);
        Assert.Equal(OtaState.Downloading, await Last());
        await _store.RecordOtaStatusAsync(Status(3, OtaState.Committed, 40), T0, default);
        await _store.RecordOtaStatusAsync(Status(4, OtaState.Downloading, 50), T0, default);
        Assert.Equal(OtaState.Downloading, await Last());
    }

    [Fact]
    public async Task Stores_each_record_once_and_acknowledges_the_highest_stored()
    {
        var first = await Store("d1", "s", 1, 10);
        var again = await Store("d1", "s", 1, 10);
        var overlap = await Store("d1", "s", 6, 10);

        Assert.Equal(new TelemetryStoreResult(10, 10, 0, 0, 0), first);
        Assert.Equal(new TelemetryStoreResult(10, 0, 10, 0, 0), again);
        Assert.Equal(new TelemetryStoreResult(15, 5, 5, 0, 0), overlap);
        var stored = await _store.GetTelemetryAsync("d1", 100, default);
        Assert.Equal(Enumerable.Range(1, 15).Select(i => (long)i), stored.Select(r => r.Seq));
        Assert.Equal(15, (await _store.GetDeviceAsync("d1", default))!.TelemetryRecords);
    }

    [Fact]
    public async Task A_gap_below_the_devices_pending_floor_is_recorded_not_waited_on()
    {
        await Store("d1", "s", 1, 3);
        var result = await Store("d1", "s", 10, 2, pendingFrom: 10);
        Assert.Equal(new TelemetryStoreResult(11, 2, 0, 6, 0), result);
        Assert.Equal(6, (await _store.GetDeviceAsync("d1", default))!.SkippedRecords);
        Assert.Equal([new TelemetryGap("d1", "s", 4, 9, T0)], await _store.GetGapsAsync("d1", 10, default));
    }

    [Fact]
    public async Task Records_sent_ahead_by_priority_wait_above_the_watermark_until_the_hole_fills()
    {
        // An alarm (seq 8) goes first while 1..7 are still on the device.
        var alarm = await Store("d1", "s", 8, 1, pendingFrom: 1);
        Assert.Equal(0, alarm.AckedSeq);
        await Store("d1", "s", 1, 3);
        var backlog = await Store("d1", "s", 4, 4);
        Assert.Equal(8, backlog.AckedSeq);
        Assert.Equal(0, (await _store.GetDeviceAsync("d1", default))!.SkippedRecords);
    }

    [Fact]
    public async Task Gaps_between_records_stored_out_of_order_are_split_around_them()
    {
        await Store("d1", "s", 5, 1);
        await Store("d1", "s", 9, 1, pendingFrom: 9);
        var result = await Store("d1", "s", 20, 1, pendingFrom: 20);
        Assert.Equal(20, result.AckedSeq);
        Assert.Equal(
            [new SeqRange(1, 4), new SeqRange(6, 8), new SeqRange(10, 19)],
            (await _store.GetGapsAsync("d1", 10, default)).Select(g => new SeqRange(g.From, g.To)));
        Assert.Equal(17, (await _store.GetDeviceAsync("d1", default))!.SkippedRecords);
    }

    [Fact]
    public async Task A_sequence_number_sent_again_with_other_content_is_a_conflict_and_the_first_copy_stays()
    {
        await Store("d1", "s", Records(1, 3, "first"));
        var result = await Store("d1", "s", Records(2, 3, "second"));
        Assert.Equal(new TelemetryStoreResult(4, 1, 2, 0, 2), result);
        Assert.Equal(["first1", "first2", "first3", "second4"], (await _store.GetTelemetryAsync("d1", 10, default)).Select(r => r.Inference!.Label));
        Assert.Equal(2, (await _store.GetDeviceAsync("d1", default))!.ConflictingRecords);
    }

    [Fact]
    public async Task The_latest_evictions_report_sets_the_devices_evicted_count()
    {
        var report = new TelemetryRecord
        {
            Seq = 1,
            Ts = T0,
            Kind = TelemetryKind.Evictions,
            Evictions = new EvictionReport { Records = 42, Bytes = 4200, OverCapacity = 40, Expired = 2, ByKind = { ["inference"] = 42 } },
        };
        await Store("d1", "s", [report]);
        Assert.Equal(42, (await _store.GetDeviceAsync("d1", default))!.EvictedRecords);
        Assert.Equal(42, (await _store.GetTelemetryAsync("d1", 1, default))[0].Evictions!.ByKind["inference"]);
    }

    [Fact]
    public async Task A_wiped_device_starts_a_new_stream_whose_records_are_not_duplicates()
    {
        await Store("d1", "old", 1, 5);
        var result = await Store("d1", "new", 1, 3);
        Assert.Equal(new TelemetryStoreResult(3, 3, 0, 0, 0), result);
        Assert.Equal(8, (await _store.GetTelemetryAsync("d1", 100, default)).Count);
    }

    [Fact]
    public async Task Devices_are_kept_apart()
    {
        await Store("d1", "s", 1, 2);
        await Store("d2", "s", 1, 3);
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
    public async Task The_newest_records_of_a_device_are_read_newest_first()
    {
        await Store("d1", "s", 1, 10);
        await Store("d1", "s", 11, 5);
        await Store("d2", "s", 1, 50);
        Assert.Equal([15L, 14, 13], (await _store.GetRecentTelemetryAsync("d1", 3, default)).Select(r => r.Seq));
        Assert.Equal(15, (await _store.GetRecentTelemetryAsync("d1", 100, default)).Count);
        Assert.Equal("l12", (await _store.GetRecentTelemetryAsync("d1", 4, default))[^1].Inference!.Label);
        Assert.Empty(await _store.GetRecentTelemetryAsync("d3", 10, default));
    }

    [Fact]
    public async Task A_desired_state_is_kept_per_device_and_replaced_by_the_next()
    {
        Assert.Null(await _store.GetDesiredAsync("d1", default));
        await _store.SetDesiredAsync("d1", [1, 2, 3], default);
        await _store.SetDesiredAsync("d2", [9], default);
        await _store.SetDesiredAsync("d1", [4, 5], default);
        Assert.Equal([4, 5], await _store.GetDesiredAsync("d1", default));
        Assert.Equal([9], await _store.GetDesiredAsync("d2", default));
        Assert.Null(await _store.GetDesiredAsync("d3", default));
        Assert.Equal(["d1", "d2"], (await _store.ListDesiredAsync(default)).Select(d => d.DeviceId).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Reported_state_updates_the_active_model()
    {
        await _store.RecordReportedAsync(new ReportedState { DeviceId = "d1", Active = new ModelRef { Name = "m", Version = "2" }, Ota = OtaState.Idle, UpdatedAt = T0 }, T0, default);
        Assert.Equal("2", (await _store.GetDeviceAsync("d1", default))!.ActiveModel!.Version);
    }

    [Fact]
    public async Task Everything_survives_reopening_the_store()
    {
        await _store.RecordHelloAsync(Hello("d1", "b"), T0, default);
        await Store("d1", "s", 1, 4);
        _store.Dispose();
        using var reopened = Open();
        var device = (await reopened.GetDeviceAsync("d1", default))!;
        Assert.Equal(4, device.AckedSeq);
        Assert.Equal("l4", device.LastInference!.Label);
        var again = Records(1, 4);
        Assert.Equal(new TelemetryStoreResult(4, 0, 4, 0, 0), await reopened.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch("d1", "s", again), again, T0, default));
    }

    [Fact]
    public async Task Concurrent_batches_from_many_devices_are_all_stored_once()
    {
        await Parallel.ForEachAsync(Enumerable.Range(0, 20), async (d, ct) =>
        {
            for (var b = 0; b < 5; b++)
                await Store($"d{d}", "s", 1 + (b * 10), 10);
        });
        foreach (var device in await _store.ListDevicesAsync(default))
        {
            Assert.Equal(50, device.TelemetryRecords);
            Assert.Equal(50, device.AckedSeq);
        }
    }

    public virtual void Dispose()
    {
        if (_opened.IsValueCreated)
            _opened.Value.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class LiteDbFleetStoreTests : FleetStoreContract
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-store-").FullName;

    protected override IFleetStore Open() => new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));

    [Fact]
    public async Task A_file_with_one_document_per_record_is_regrouped_into_segments_and_keeps_deduplicating()
    {
        // The layout before segments: a device acknowledged to 3, with 5 and 6 stored above a hole at 4.
        using (var db = new LiteDB.LiteDatabase(new LiteDB.ConnectionString { Filename = Path.Combine(_dir, "fleet.db"), Connection = LiteDB.ConnectionType.Direct }))
        {
            db.GetCollection("devices").Insert(new LiteDB.BsonDocument
            {
                ["_id"] = "old",
                ["firstSeen"] = T0.ToUnixTimeMilliseconds(),
                ["lastSeen"] = T0.ToUnixTimeMilliseconds(),
                ["restarts"] = 0,
                ["ota"] = "Idle",
                ["streamId"] = "s",
                ["ackedSeq"] = 3L,
                ["telemetryRecords"] = 5L,
                ["skippedRecords"] = 0L,
            });
            var telemetry = db.GetCollection("telemetry");
            foreach (var r in Records(1, 3).Concat(Records(5, 2)))
            {
                telemetry.Insert(new LiteDB.BsonDocument
                {
                    ["_id"] = $"old/s/{r.Seq:D19}",
                    ["device"] = "old",
                    ["stream"] = "s",
                    ["seq"] = r.Seq,
                    ["ts"] = r.Ts.ToUnixTimeMilliseconds(),
                    ["kind"] = "Inference",
                    ["body"] = System.Text.Json.JsonSerializer.Serialize(r, EdgeFleet.Shared.Wire.WireJsonContext.Default.TelemetryRecord),
                });
            }
        }
        Assert.Equal([1L, 2, 3, 5, 6], (await _store.GetTelemetryAsync("old", 10, default)).Select(r => r.Seq));
        Assert.Equal([new SeqRange(5, 6)], (await _store.GetDeviceAsync("old", default))!.StoredAboveAck);
        // 5 and 6 are known: sending 4..6 stores 4 and moves the watermark to 6.
        var records = Records(4, 3);
        var result = await _store.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch("old", "s", records), records, T0, default);
        Assert.Equal(new TelemetryStoreResult(6, 1, 2, 0, 0), result);
        _store.Dispose();
        using var reopened = Open();
        Assert.Equal(6, (await reopened.GetTelemetryAsync("old", 10, default)).Count);
    }

    [Fact]
    public async Task What_the_store_returns_as_stored_is_already_in_its_files_as_a_kill_9_right_after_would_leave_them()
    {
        // The caller acknowledges right after the store returns, and the device deletes what was acknowledged.
        // LiteDB 5's Commit returns with the pages still queued for its writer thread: the store must wait for it.
        var snapshot = Directory.CreateDirectory(Path.Combine(_dir, "snapshot")).FullName;
        for (var i = 0; i < 100; i++)
        {
            var records = Records((i * 20) + 1, 20);
            var result = await _store.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch("d", "s", records), records, T0, default);
            // The files as the kernel holds them at this instant: what a kill -9 of the process now would leave.
            // Copied by cp, which takes no lock (the store holds its files exclusively against a second fleet).
            foreach (var name in new[] { "fleet.db", "fleet-log.db" })
            {
                var from = Path.Combine(_dir, name);
                if (!File.Exists(from))
                    continue;
                using var cp = System.Diagnostics.Process.Start("cp", [from, Path.Combine(snapshot, name)]);
                cp.WaitForExit();
                Assert.Equal(0, cp.ExitCode);
            }
            using (var copy = new LiteDbFleetStore(Path.Combine(snapshot, "fleet.db")))
                Assert.Equal(result.AckedSeq, (await copy.GetDeviceAsync("d", default))?.AckedSeq);
            foreach (var file in Directory.GetFiles(snapshot))
                File.Delete(file);
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresFleetStoreTests(PostgresServer server) : FleetStoreContract
{
    private readonly string _connection = server.CreateDatabase();

    protected override IFleetStore Open() => PostgresFleetStore.OpenAsync(_connection, default).GetAwaiter().GetResult();
}
