using System.Text.Json;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

public class TelemetryBufferTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);

    private static TelemetryBuffer Open(TempDir dir, TelemetryConfig? config = null, TimeProvider? time = null) =>
        new(dir.File("t.db"), config ?? new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0 }, time ?? new ManualClock(T0));

    private static Task<long> Event(TelemetryBuffer buffer, int i, TelemetryKind kind = TelemetryKind.Event, TelemetryPriority? priority = null) =>
        buffer.AppendAsync(new TelemetryRecord { Ts = T0.AddSeconds(i), Kind = kind, Message = $"e{i}" }, priority);

    private static Task<long> Inference(TelemetryBuffer buffer, int i) => buffer.AppendAsync(new TelemetryRecord
    {
        Ts = T0.AddSeconds(i),
        Kind = TelemetryKind.Inference,
        Inference = new InferenceSample { Model = "m", Version = "1", Label = $"i{i}", Confidence = 0.5f, LatencyMicros = 1 },
    });

    /// <summary>What a batch would carry, decoded the way the fleet decodes it.</summary>
    private static List<TelemetryRecord> Decode(OutgoingBatch batch)
    {
        var json = TelemetryBatchCodec.Encode(batch.Records, TelemetryBatchCodec.Identity);
        return JsonSerializer.Deserialize(json, WireJsonContext.Default.ListTelemetryRecord)!;
    }

    [Fact]
    public async Task Assigns_consecutive_sequence_numbers_and_sends_oldest_first()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir);
        for (var i = 0; i < 5; i++)
            Assert.Equal(i + 1, await Event(buffer, i));
        var records = Decode(buffer.TakeBatch(3, long.MaxValue)!);
        Assert.Equal([1L, 2L, 3L], records.Select(r => r.Seq));
        Assert.Equal("e0", records[0].Message);
        Assert.Equal(T0, records[0].Ts);
        Assert.Equal(5, buffer.Count);
        Assert.Empty(buffer.Check());
    }

    [Fact]
    public async Task Concurrent_appends_get_unique_numbers_and_share_commits()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir);
        var commits = 0;
        buffer.Committed += () => Interlocked.Increment(ref commits);
        var seqs = await Task.WhenAll(Enumerable.Range(0, 2000).Select(i => Task.Run(() => Event(buffer, i))));
        Assert.Equal(Enumerable.Range(1, 2000).Select(i => (long)i), seqs.Order());
        Assert.True(commits < 1000, $"{commits} commits for 2000 concurrent appends: appends are not grouped");
        Assert.Empty(buffer.Check());
    }

    [Fact]
    public async Task Offline_the_log_is_checkpointed_often_so_it_and_the_memory_behind_it_stay_small()
    {
        // One commit per record, as an idle agent makes them (a few a second): every commit writes pages to
        // LiteDB's log, which LiteDB also keeps in memory until a checkpoint copies them into the data file.
        using var dir = new TempDir();
        var log = TelemetryBuffer.LogPathOf(dir.File("t.db"));
        long largest = 0;
        using (var buffer = Open(dir))
        {
            for (var i = 0; i < 600; i++)
            {
                await Inference(buffer, i);
                largest = Math.Max(largest, new FileInfo(log).Length);
            }
            Assert.Equal(600, buffer.Count);
        }
        const long page = 8192;
        // An absolute bound, not one derived from the setting: at LiteDB's default (1,000 pages) this run's log
        // reaches 8 MB, and LiteDB holds as much again on the managed heap.
        Assert.True(largest <= 1024 * 1024,
            $"the log reached {largest} bytes (checkpoint every {TelemetryBuffer.CheckpointPages} pages of {page}): over 1 MB, it is not checkpointed often");
        Assert.True(largest >= 4 * page, $"the log never held more than {largest} bytes: the test did not exercise it");
        using var reopened = Open(dir);
        Assert.Equal(600, reopened.Count);
        Assert.Equal("i599", Decode(reopened.TakeBatch(1000, long.MaxValue)!)[^1].Inference!.Label);
        Assert.Empty(reopened.Check());
    }

    [Fact]
    public async Task Acknowledgements_delete_by_watermark_and_ranges_in_any_order_and_twice()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir);
        for (var i = 0; i < 10; i++)
            await Event(buffer, i);
        Assert.Equal(3, buffer.Acknowledge(0, [new SeqRange(7, 9)]));
        Assert.Equal(4, buffer.Acknowledge(4));
        Assert.Equal(0, buffer.Acknowledge(2, [new SeqRange(7, 9)]));
        Assert.Equal(4, buffer.AckedSeq);
        Assert.Equal([5L, 6L, 10L], Decode(buffer.TakeBatch(100, long.MaxValue)!).Select(r => r.Seq));
        Assert.Equal(1, buffer.Acknowledge(1_000_000, [new SeqRange(1, long.MaxValue)]) - 2);
        Assert.Equal(10, buffer.AckedSeq);
        Assert.Null(buffer.TakeBatch(100, long.MaxValue));
        Assert.Empty(buffer.Check());
    }

    [Fact]
    public async Task Sequence_stream_and_remaining_records_survive_reopening()
    {
        using var dir = new TempDir();
        string stream;
        using (var buffer = Open(dir))
        {
            for (var i = 0; i < 6; i++)
                await Event(buffer, i);
            buffer.Acknowledge(3, [new SeqRange(5, 5)]);
            stream = buffer.StreamId;
        }
        using var reopened = Open(dir);
        Assert.Equal(stream, reopened.StreamId);
        Assert.Equal(3, reopened.AckedSeq);
        Assert.Equal([4L, 6L], Decode(reopened.TakeBatch(10, long.MaxValue)!).Select(r => r.Seq));
        Assert.Equal(7, await Event(reopened, 7));
        Assert.Empty(reopened.Check());
    }

    [Fact]
    public async Task A_new_buffer_file_starts_a_new_stream_and_a_second_opener_is_refused()
    {
        using var dir = new TempDir();
        using var a = new TelemetryBuffer(dir.File("a.db"), new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0 }, TimeProvider.System);
        using var b = new TelemetryBuffer(dir.File("b.db"), new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0 }, TimeProvider.System);
        Assert.NotEqual(a.StreamId, b.StreamId);
        Assert.Throws<IOException>(() => new TelemetryBuffer(dir.File("a.db"), new TelemetryConfig { CommitWindowSeconds = 0 }, TimeProvider.System));
        Assert.Equal(1, await Event(a, 1));
    }

    [Fact]
    public async Task When_full_the_lowest_priority_oldest_records_go_first_and_are_counted()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir, new TelemetryConfig { CommitWindowSeconds = 0, MaxBufferRecords = 10, MinFreeDiskBytes = 0 });
        await Event(buffer, 0, TelemetryKind.Alarm);
        await Event(buffer, 1, TelemetryKind.Health);
        for (var i = 2; i < 10; i++)
            await Inference(buffer, i);
        for (var i = 10; i < 14; i++)
            await Event(buffer, i);

        Assert.Equal(10, buffer.Count);
        var kept = Decode(buffer.TakeBatch(100, long.MaxValue)!);
        // Seqs 3..6 (the four oldest inference records) made room; the alarm and the health record stay.
        Assert.Equal([1L, 2L, 7L, 8L, 9L, 10L, 11L, 12L, 13L, 14L], kept.Select(r => r.Seq));
        var evictions = buffer.Evictions;
        Assert.Equal(4, evictions.Records);
        Assert.Equal(4, evictions.OverCapacity);
        Assert.Equal(0, evictions.Expired);
        Assert.Equal(4, evictions.ByKind["inference"]);
        Assert.Empty(buffer.Check());
    }

    [Fact]
    public async Task Protected_kinds_go_only_when_nothing_else_is_left()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir, new TelemetryConfig { CommitWindowSeconds = 0, MaxBufferRecords = 10, MinFreeDiskBytes = 0 });
        // An audit record asked for low priority is still protected; events asked for critical are not.
        await Event(buffer, 0, TelemetryKind.Audit, TelemetryPriority.Low);
        for (var i = 1; i < 10; i++)
            await Event(buffer, i, TelemetryKind.Event, TelemetryPriority.Critical);
        await Event(buffer, 10, TelemetryKind.Alarm);
        Assert.Equal(1, buffer.Evictions.Records);
        Assert.Equal(["audit", "event", "alarm"], Decode(buffer.TakeBatch(100, long.MaxValue)!).Select(r => TelemetryPolicy.WireName(r.Kind)).Distinct());
        for (var i = 11; i < 30; i++)
            await Event(buffer, i, TelemetryKind.Alarm);
        var left = Decode(buffer.TakeBatch(100, long.MaxValue)!);
        Assert.All(left, r => Assert.Equal(TelemetryKind.Alarm, r.Kind));
        Assert.Equal(Enumerable.Range(21, 10).Select(i => (long)i), left.Select(r => r.Seq));
    }

    [Fact]
    public async Task The_byte_limit_evicts_too_and_a_record_larger_than_the_buffer_is_refused()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir, new TelemetryConfig { CommitWindowSeconds = 0, MaxBufferBytes = 64 * 1024, MinFreeDiskBytes = 0 });
        for (var i = 0; i < 2000; i++)
            await Inference(buffer, i);
        Assert.True(buffer.Bytes <= 64 * 1024, $"{buffer.Bytes} bytes buffered");
        Assert.True(buffer.Evictions.Records > 1000);
        Assert.Equal(2000, buffer.LastSeq);

        using var tiny = new TempDir();
        using var small = Open(tiny, new TelemetryConfig { CommitWindowSeconds = 0, MaxBufferBytes = 200, MinFreeDiskBytes = 0 });
        var refused = await Assert.ThrowsAsync<TelemetryBufferException>(() =>
            small.AppendAsync(new TelemetryRecord { Ts = T0, Kind = TelemetryKind.Event, Message = new string('x', 500) }));
        Assert.Equal(TelemetryBufferError.TooLarge, refused.Code);
        Assert.Equal(0, small.LastSeq);
    }

    [Fact]
    public async Task Records_past_their_kinds_time_to_live_expire_on_a_simulated_clock()
    {
        using var dir = new TempDir();
        var clock = new ManualClock(T0);
        var config = new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0, TtlHours = new() { ["inference"] = 6 } };
        using var buffer = Open(dir, config, clock);
        for (var i = 0; i < 5; i++)
            await Inference(buffer, i);
        await Event(buffer, 5);
        clock.Advance(TimeSpan.FromHours(5));
        Assert.Equal(0, buffer.Expire());
        clock.Advance(TimeSpan.FromHours(2));
        Assert.Equal(5, buffer.Expire());
        Assert.Equal([6L], Decode(buffer.TakeBatch(10, long.MaxValue)!).Select(r => r.Seq));
        Assert.Equal(5, buffer.Evictions.Expired);
        clock.Advance(TimeSpan.FromDays(365));
        Assert.Equal(0, buffer.Expire());
    }

    [Fact]
    public async Task A_new_alarm_overtakes_the_backlog_and_batches_respect_their_limits()
    {
        using var dir = new TempDir();
        var clock = new ManualClock(T0);
        using var buffer = Open(dir, time: clock);
        for (var i = 0; i < 50; i++)
            await Inference(buffer, i);
        Assert.False(buffer.BatchDue(100, TimeSpan.FromSeconds(60)));
        await Event(buffer, 50, TelemetryKind.Alarm);
        Assert.True(buffer.BatchDue(100, TimeSpan.FromSeconds(60)));

        var first = buffer.TakeBatch(10, long.MaxValue)!;
        var records = Decode(first);
        Assert.Equal([1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L, 9L, 51L], records.Select(r => r.Seq));
        Assert.Equal(1, first.PendingFrom);
        Assert.Single(Decode(buffer.TakeBatch(10, long.MaxValue, TelemetryPriority.High)!));
        var byBytes = buffer.TakeBatch(1000, 300)!;
        Assert.InRange(byBytes.Records.Count, 1, 4);
    }

    [Fact]
    public async Task The_daily_budget_is_kept_per_day_and_survives_reopening()
    {
        using var dir = new TempDir();
        var day = DateOnly.FromDateTime(T0.UtcDateTime);
        using (var buffer = Open(dir))
        {
            buffer.SpendBudget(day, 700);
            buffer.SpendBudget(day, 300);
            Assert.Equal(1000, buffer.BudgetSpent(day));
        }
        using var reopened = Open(dir);
        Assert.Equal(1000, reopened.BudgetSpent(day));
        Assert.Equal(0, reopened.BudgetSpent(day.AddDays(1)));
        reopened.SpendBudget(day.AddDays(1), 5);
        Assert.Equal(0, reopened.BudgetSpent(day));
    }

    [Fact]
    public async Task A_buffer_of_the_previous_format_is_adopted_with_its_stream_and_records()
    {
        using var dir = new TempDir();
        using (var old = new LiteDB.LiteDatabase(new LiteDB.ConnectionString { Filename = dir.File("t.db"), Connection = LiteDB.ConnectionType.Direct }))
        {
            var meta = old.GetCollection("meta");
            meta.Insert(new LiteDB.BsonDocument { ["_id"] = "stream", ["value"] = "0123456789abcdef" });
            meta.Insert(new LiteDB.BsonDocument { ["_id"] = "lastSeq", ["value"] = 12L });
            meta.Insert(new LiteDB.BsonDocument { ["_id"] = "ackedSeq", ["value"] = 10L });
            var records = old.GetCollection("records");
            foreach (var seq in new long[] { 11, 12 })
            {
                var record = new TelemetryRecord { Seq = seq, Ts = T0, Kind = TelemetryKind.Event, Message = $"old{seq}" };
                records.Insert(new LiteDB.BsonDocument { ["_id"] = seq, ["body"] = JsonSerializer.SerializeToUtf8Bytes(record, WireJsonContext.Default.TelemetryRecord) });
            }
        }
        using var buffer = Open(dir);
        Assert.Equal("0123456789abcdef", buffer.StreamId);
        Assert.Equal(10, buffer.AckedSeq);
        Assert.Equal(["old11", "old12"], Decode(buffer.TakeBatch(10, long.MaxValue)!).Select(r => r.Message));
        Assert.Equal(13, await Event(buffer, 13));
        Assert.Empty(buffer.Check());
    }
}
