using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Agent.Tests;

/// <summary>
/// The flash-friendly side of the buffer: low and normal records wait for the commit window, high and
/// critical ones commit at once and take them along, acknowledgements ride on the next commit, a clean stop
/// loses nothing, and segments are stored compressed while files of the earlier format still read.
/// </summary>
public class TelemetryCommitWindowTests
{
    private static TelemetryBuffer Open(TempDir dir, double windowSeconds) =>
        new(dir.File("t.db"), new TelemetryConfig { MinFreeDiskBytes = 0, CommitWindowSeconds = windowSeconds }, TimeProvider.System);

    private static TelemetryRecord Inference(int i) => new()
    {
        Ts = DateTimeOffset.UtcNow,
        Kind = TelemetryKind.Inference,
        Inference = new InferenceSample { Model = "m", Version = "1", Label = $"label-{i % 3}", Confidence = 0.9f, LatencyMicros = 100 + i },
    };

    private static TelemetryRecord Alarm(string message) => new() { Ts = DateTimeOffset.UtcNow, Kind = TelemetryKind.Alarm, Message = message };

    private static TelemetryRecord Health(int i) => new()
    {
        Ts = DateTimeOffset.UtcNow,
        Kind = TelemetryKind.Health,
        Health = new HealthSample { UptimeSeconds = i, RssBytes = 1, BufferedRecords = 0 },
    };

    [Fact]
    public async Task Posted_low_and_normal_records_wait_for_the_window_and_then_commit_together()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir, windowSeconds: 1.5);
        var commits = 0;
        var committed = new TaskCompletionSource();
        buffer.Committed += () =>
        {
            Interlocked.Increment(ref commits);
            committed.TrySetResult();
        };
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < 5; i++)
            await buffer.PostAsync(Inference(i));
        await buffer.PostAsync(Health(1));
        Assert.Equal(0, buffer.Count);
        await committed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromSeconds(1.4), "the records committed before their window ended");
        Assert.Equal(6, buffer.Count);
        Assert.Equal(1, commits);
        Assert.Empty(buffer.Check());
    }

    [Fact]
    public async Task An_alarm_commits_at_once_and_takes_the_waiting_records_with_it()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir, windowSeconds: 300);
        var commits = 0;
        buffer.Committed += () => Interlocked.Increment(ref commits);
        for (var i = 0; i < 3; i++)
            await buffer.PostAsync(Inference(i));
        var seq = await buffer.AppendAsync(Alarm("bearing temperature 95 C")).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(4, seq);
        Assert.Equal(4, buffer.Count);
        Assert.Equal(1, commits);
    }

    [Fact]
    public async Task An_awaited_low_record_is_durable_when_its_append_completes()
    {
        using var dir = new TempDir();
        long seq;
        using (var buffer = Open(dir, windowSeconds: 0.3))
        {
            seq = await buffer.AppendAsync(Inference(1)).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(buffer.Contains(seq));
        }
        using var reopened = Open(dir, windowSeconds: 0.3);
        Assert.True(reopened.Contains(seq));
    }

    [Fact]
    public async Task A_clean_stop_commits_what_was_posted_and_what_was_acknowledged()
    {
        using var dir = new TempDir();
        using (var buffer = Open(dir, windowSeconds: 300))
        {
            for (var i = 0; i < 3; i++)
                await buffer.AppendAsync(Alarm($"a{i}"));
            Assert.Equal(2, buffer.Acknowledge(2));
            for (var i = 0; i < 10; i++)
                await buffer.PostAsync(Inference(i));
            Assert.Equal(1, buffer.Count);
        }
        using var reopened = Open(dir, windowSeconds: 300);
        Assert.Equal(11, reopened.Count);
        Assert.Equal(2, reopened.AckedSeq);
        Assert.Equal(13, reopened.LastSeq);
        Assert.False(reopened.Contains(1));
        Assert.Empty(reopened.Check());
    }

    [Fact]
    public async Task A_window_of_low_records_in_a_full_buffer_evicts_older_low_records_not_a_higher_class()
    {
        // 160 health records (normal) in a 300-record buffer, then a stream of inference results (low): the
        // results must make room among themselves, however many arrive within one window.
        using var dir = new TempDir();
        using var buffer = new TelemetryBuffer(dir.File("t.db"),
            new TelemetryConfig { MinFreeDiskBytes = 0, CommitWindowSeconds = 300, MaxBufferRecords = 300 }, TimeProvider.System);
        for (var i = 0; i < 160; i++)
            await buffer.PostAsync(Health(i));
        await buffer.FlushAsync();
        for (var i = 0; i < 600; i++)
            await buffer.PostAsync(Inference(i));
        await buffer.FlushAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(300, buffer.Count);
        Assert.Equal(0, buffer.Evictions.ByKind.GetValueOrDefault("health"));
        Assert.Equal(460, buffer.Evictions.ByKind["inference"]);
    }

    [Fact]
    public async Task FlushAsync_commits_without_waiting_for_the_window()
    {
        using var dir = new TempDir();
        using var buffer = Open(dir, windowSeconds: 300);
        for (var i = 0; i < 7; i++)
            await buffer.PostAsync(Inference(i));
        await buffer.FlushAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(7, buffer.Count);
    }

    [Fact]
    public async Task Acknowledging_between_small_commits_keeps_every_unacknowledged_record_and_nothing_else()
    {
        // Small commits append to their class's tail segment while acknowledgements empty it: the segment is
        // rewritten in place, and what is left must be exactly what was not acknowledged, also after a reopen.
        using var dir = new TempDir();
        var random = new Random(7);
        var live = new SortedSet<long>();
        using (var buffer = Open(dir, windowSeconds: 0))
        {
            for (var round = 0; round < 200; round++)
            {
                var n = random.Next(1, 6);
                for (var i = 0; i < n; i++)
                    live.Add(await buffer.AppendAsync(Inference(round)));
                if (random.Next(3) == 0)
                {
                    var upTo = live.Count > 0 ? live.ElementAt(random.Next(live.Count)) : 0;
                    buffer.Acknowledge(upTo);
                    live.RemoveWhere(s => s <= upTo);
                }
                if (round % 50 == 49)
                    Assert.Empty(buffer.Check());
            }
            Assert.Equal(live.Count, buffer.Count);
        }
        using var reopened = Open(dir, windowSeconds: 0);
        Assert.Equal(live.Count, reopened.Count);
        Assert.All(live, s => Assert.True(reopened.Contains(s), $"record {s} was lost"));
        Assert.Empty(reopened.Check());
    }

    [Fact]
    public async Task Segments_are_stored_compressed_and_a_file_of_the_uncompressed_format_still_reads()
    {
        using var dir = new TempDir();
        using (var buffer = Open(dir, windowSeconds: 0))
        {
            await Task.WhenAll(Enumerable.Range(0, 50).Select(i => buffer.AppendAsync(Inference(i))));
            await buffer.AppendAsync(Alarm("last"));
        }
        using (var db = new LiteDatabase(new ConnectionString { Filename = dir.File("t.db"), Connection = ConnectionType.Direct }))
        {
            var segments = db.GetCollection("segments");
            var all = segments.FindAll().ToList();
            Assert.Contains(all, d => d["z"].IsBinary && d["n"].AsInt32 > d["z"].AsBinary.Length * 2);
            // Rewrite every segment the way builds before compression stored them.
            foreach (var doc in all)
            {
                var records = SegmentCodec.Load(doc);
                doc.Remove("z");
                doc.Remove("n");
                doc["b"] = SegmentCodec.Pack(records);
                segments.Update(doc);
            }
        }
        using var reopened = Open(dir, windowSeconds: 0);
        Assert.Equal(51, reopened.Count);
        Assert.Empty(reopened.Check());
        var batch = reopened.TakeBatch(100, long.MaxValue)!;
        Assert.Equal(Enumerable.Range(1, 51).Select(i => (long)i), batch.Records.Select(r => r.Seq));
        Assert.Equal(51, reopened.Acknowledge(51));
        Assert.Empty(reopened.Check());
    }
}
