using System.Diagnostics;
using System.Globalization;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Flash wear of the telemetry buffer on an idle device: bytes written to storage (/proc/self/io
/// write_bytes, counted by the kernel when a page is dirtied) per record, with the agent's load at the
/// demo's rate: inference records at <c>rateHz</c>, a health record every 10 s, drift and latency windows
/// every 60 s, and a sync loop that takes a batch every second and acknowledges it (online), or none
/// (offline). Each scenario runs twice in one process: with a commit per append (commit window 0, the
/// baseline) and with the agent's default commit window.
/// </summary>
public static class TelemetryWear
{
    public static async Task<int> RunAsync(double seconds, double rateHz, double? window)
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-bench-wear-").FullName;
        try
        {
            var defaults = new TelemetryConfig();
            defaults = defaults with { CommitWindowSeconds = window ?? defaults.CommitWindowSeconds };
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"telemetry-wear: {seconds:F0} s per run, {rateHz} inference records/s, storage {dir}"));
            var rows = new List<string>();
            foreach (var online in new[] { true, false })
            {
                var baseline = await RunOnceAsync(Path.Combine(dir, $"base-{online}.db"), defaults with { CommitWindowSeconds = 0 }, seconds, rateHz, online);
                var batched = await RunOnceAsync(Path.Combine(dir, $"window-{online}.db"), defaults, seconds, rateHz, online);
                var mode = online ? "online (acked every 1 s)" : "offline (nothing acked)";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                      {mode}:
                        commit per append:          {baseline.PerRecord,8:N0} bytes written per record ({baseline.Records} records, {baseline.Written / 1024.0:N0} KiB, {baseline.Written / seconds / 1024:N1} KiB/s, {baseline.Commits} commits)
                        commit window {defaults.CommitWindowSeconds,4:0.#} s:        {batched.PerRecord,8:N0} bytes written per record ({batched.Records} records, {batched.Written / 1024.0:N0} KiB, {batched.Written / seconds / 1024:N1} KiB/s, {batched.Commits} commits)
                        ratio {batched.PerRecord / baseline.PerRecord:F3}; mean record body {batched.MeanBody:F0} bytes; target <= 1,024 bytes per record: {(batched.PerRecord <= 1024 ? "met" : "NOT met")}
                    """));
            }
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(long Records, long Written, double PerRecord, int Commits, double MeanBody)> RunOnceAsync(
        string path, TelemetryConfig config, double seconds, double rateHz, bool online)
    {
        using var buffer = new TelemetryBuffer(path, config, TimeProvider.System);
        var commits = 0;
        buffer.Committed += () => Interlocked.Increment(ref commits);
        // Opening writes the file's first pages: that is not what an idle device pays per record.
        await buffer.AppendAsync(Health(0));
        buffer.Acknowledge(buffer.LastSeq);
        commits = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var before = WrittenBytes();
        long records = 0, bodies = 0;
        var sync = online ? SyncAsync(buffer, stop.Token) : Task.CompletedTask;
        var started = Stopwatch.GetTimestamp();
        var period = TimeSpan.FromSeconds(1 / rateHz);
        for (var i = 0L; !stop.IsCancellationRequested; i++)
        {
            var due = started + (long)(i * period.TotalSeconds * Stopwatch.Frequency);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(wait, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            var batch = new List<TelemetryRecord> { Inference(i) };
            var second = (long)(i / rateHz);
            if (i % (long)Math.Max(1, rateHz * 10) == 0)
                batch.Add(Health(second));
            if (i % (long)Math.Max(1, rateHz * 60) == 0)
                batch.Add(Sketch(second));
            foreach (var record in batch)
            {
                await buffer.PostAsync(record);
                bodies += TelemetryBatchCodec.Body(record).Length;
                records++;
            }
        }
        await buffer.FlushAsync();
        await sync;
        var written = WrittenBytes() - before;
        return (records, written, written / (double)records, commits, bodies / (double)records);
    }

    private static async Task SyncAsync(TelemetryBuffer buffer, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (buffer.TakeBatch(200, 512 * 1024) is { } batch)
                buffer.Acknowledge(batch.Records[^1].Seq);
        }
    }

    private static TelemetryRecord Inference(long i) => new()
    {
        Ts = DateTimeOffset.UtcNow,
        Kind = TelemetryKind.Inference,
        Inference = new InferenceSample { Model = "vibration-classifier", Version = "1.0.0", Label = "normal", Confidence = 0.9f + (i % 10 / 100f), LatencyMicros = 150 + (i % 70) },
    };

    private static TelemetryRecord Health(long second) => new()
    {
        Ts = DateTimeOffset.UtcNow,
        Kind = TelemetryKind.Health,
        Health = new HealthSample { UptimeSeconds = second, RssBytes = 48_000_000 + second, BufferedRecords = 12, BufferedBytes = 4096 },
    };

    private static TelemetryRecord Sketch(long second) => new()
    {
        Ts = DateTimeOffset.UtcNow,
        Kind = TelemetryKind.Event,
        Message = $"window {second}: " + new string('x', 600),
    };

    private static long WrittenBytes() => File.Exists("/proc/self/io") ? EdgeFleet.Agent.Health.ProcessIo.WrittenBytes()
        : throw new InvalidOperationException("this benchmark needs /proc/self/io (Linux with I/O accounting)");
}
