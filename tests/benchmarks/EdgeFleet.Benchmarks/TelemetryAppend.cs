using System.Diagnostics;
using System.Globalization;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Durable group-committed appends (the agent's <see cref="TelemetryBuffer"/>: every append completes only
/// after the fsync that covers it) against two baselines in the same run, both without any fsync:
/// plain LiteDB inserts of one document per record (each insert its own commit, as the spine's buffer did),
/// and plain LiteDB InsertBulk of 1,000 documents per call, LiteDB's fastest path.
/// </summary>
public static class TelemetryAppend
{
    public static async Task<int> RunAsync(int records, int producers)
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-bench-telemetry-").FullName;
        try
        {
            var template = Record(0);
            var body = TelemetryBatchCodec.Body(template);
            var durable = await DurableAsync(Path.Combine(dir, "durable.db"), records, producers);
            var posted = await PostedAsync(Path.Combine(dir, "posted.db"), records);
            var single = PlainSingle(Path.Combine(dir, "single.db"), Math.Min(records, 20_000), body);
            var bulk = PlainBulk(Path.Combine(dir, "bulk.db"), records, body);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                telemetry-append: {records} records of {body.Length} bytes, {producers} concurrent producers
                  durable group commit (fsync per group): {durable.Rate,10:N0} records/s, {durable.Commits} commits, {records / (double)durable.Commits:F0} records per commit (commit window 0: each producer waits for its fsync)
                  posted, then flushed (the inference loop's way, default commit window): {posted.Rate,10:N0} records/s, {posted.Commits} commits, {records / (double)posted.Commits:F0} records per commit
                  plain LiteDB, one insert per record:   {single,10:N0} records/s (no fsync)   durable/plain ratio {durable.Rate / single:F1}
                  plain LiteDB, InsertBulk of 1000:      {bulk,10:N0} records/s (no fsync)   durable/bulk ratio  {durable.Rate / bulk:F2}
                  target >= 50,000 durable records/s: {(Math.Min(durable.Rate, posted.Rate) >= 50_000 ? "met" : "NOT met")} (both ways)
                """));
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static TelemetryRecord Record(int i) => new()
    {
        Ts = DateTimeOffset.UnixEpoch.AddSeconds(1_800_000_000 + i),
        Kind = TelemetryKind.Inference,
        Inference = new InferenceSample { Model = "vibration-classifier", Version = "1.0.0", Label = "bearing-wear", Confidence = 0.93f, LatencyMicros = 180 + (i % 50) },
    };

    private static async Task<(double Rate, int Commits)> DurableAsync(string path, int records, int producers)
    {
        var config = new TelemetryConfig { MaxBufferRecords = records * 2L, MaxBufferBytes = 1L << 30, MinFreeDiskBytes = 0, CommitWindowSeconds = 0 };
        using var buffer = new TelemetryBuffer(path, config, TimeProvider.System);
        var commits = 0;
        buffer.Committed += () => Interlocked.Increment(ref commits);
        var next = -1;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, producers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < records)
                await buffer.AppendAsync(Record(i));
        })));
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (buffer.Count != records || buffer.Check().Count > 0)
            throw new InvalidOperationException($"the buffer holds {buffer.Count} of {records} records: {string.Join("; ", buffer.Check())}");
        return (records / seconds, commits);
    }

    /// <summary>One producer posts every record without waiting (backpressure only), then waits for the flush.</summary>
    private static async Task<(double Rate, int Commits)> PostedAsync(string path, int records)
    {
        var config = new TelemetryConfig { MaxBufferRecords = records * 2L, MaxBufferBytes = 1L << 30, MinFreeDiskBytes = 0 };
        using var buffer = new TelemetryBuffer(path, config, TimeProvider.System);
        var commits = 0;
        buffer.Committed += () => Interlocked.Increment(ref commits);
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < records; i++)
            await buffer.PostAsync(Record(i));
        await buffer.FlushAsync();
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (buffer.Count != records || buffer.Check().Count > 0)
            throw new InvalidOperationException($"the buffer holds {buffer.Count} of {records} records: {string.Join("; ", buffer.Check())}");
        return (records / seconds, commits);
    }

    private static double PlainSingle(string path, int records, byte[] body)
    {
        using var db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct });
        var collection = db.GetCollection("records");
        var started = Stopwatch.GetTimestamp();
        for (var i = 1; i <= records; i++)
            collection.Insert(new BsonDocument { ["_id"] = (long)i, ["body"] = body });
        return records / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    private static double PlainBulk(string path, int records, byte[] body)
    {
        using var db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct });
        var collection = db.GetCollection("records");
        var started = Stopwatch.GetTimestamp();
        for (var first = 1; first <= records; first += 1000)
            collection.InsertBulk(Enumerable.Range(first, Math.Min(1000, records - first + 1)).Select(i => new BsonDocument { ["_id"] = (long)i, ["body"] = body }));
        return records / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }
}
