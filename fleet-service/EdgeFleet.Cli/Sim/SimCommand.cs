using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli.Sim;

/// <summary>
/// <c>edgefleet sim --devices N --rate R [--duration S] [--batch B] [--prefix P] [--ota-failure-rate F] [--shared-keepalive] [--json]</c>:
/// a fleet of simulated devices for load and rollout tests. Runs until Ctrl-C or for <c>--duration</c>
/// seconds, printing throughput every 5 s, then waits for the fleet to acknowledge what was sent.
/// </summary>
public static class SimCommand
{
    public static async Task<int> RunAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "devices", "rate", "duration", "batch", "prefix", "ota-failure-rate", "shared-keepalive", "json"]);
        var options = new SimOptions
        {
            Devices = args.GetInt("devices", 100),
            Rate = Double(args, "rate", 1),
            BatchRecords = args.GetInt("batch", 50),
            Prefix = args.Get("prefix") ?? "sim",
            OtaFailureRate = Double(args, "ota-failure-rate", 0),
            SharedKeepAlive = args.Has("shared-keepalive"),
        };
        if (options.Devices is < 1 or > 100_000 || options.Rate < 0 || options.BatchRecords is < 1 or > 1000 || options.OtaFailureRate is < 0 or > 1)
            throw new UsageException("--devices 1..100000, --rate >= 0, --batch 1..1000, --ota-failure-rate 0..1");
        var duration = args.Get("duration") is { } d ? TimeSpan.FromSeconds(double.Parse(d, CultureInfo.InvariantCulture)) : Timeout.InfiniteTimeSpan;
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        using var http = FleetHttp.Create(args);
        var clock = Stopwatch.StartNew();
        await using var fleet = await SimulatedFleet.EnrollAsync(http, options, stop.Token).ConfigureAwait(false);
        Console.Error.WriteLine($"enrolled {options.Devices} devices in {clock.Elapsed.TotalSeconds:0.0} s");
        clock.Restart();
        await fleet.ConnectAsync(stop.Token).ConfigureAwait(false);
        Console.Error.WriteLine($"connected {fleet.ConnectedCount} in {clock.Elapsed.TotalSeconds:0.0} s; sending {options.Rate * options.Devices:0} records/s");
        clock.Restart();
        var run = fleet.RunAsync(duration == Timeout.InfiniteTimeSpan ? TimeSpan.MaxValue : duration, stop.Token);
        long lastSent = 0;
        var lastAt = TimeSpan.Zero;
        while (!run.IsCompleted)
        {
            await Task.WhenAny(run, Task.Delay(5000, CancellationToken.None)).ConfigureAwait(false);
            var sent = fleet.Sent;
            var at = clock.Elapsed;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{at.TotalSeconds,6:0} s  sent {sent,10}  acked {fleet.Acked,10}  {(sent - lastSent) / Math.Max(0.001, (at - lastAt).TotalSeconds),8:0} rec/s  connected {fleet.ConnectedCount}"));
            (lastSent, lastAt) = (sent, at);
        }
        try
        {
            await run.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        var elapsed = clock.Elapsed;
        var drained = await fleet.DrainAsync(TimeSpan.FromSeconds(30), CancellationToken.None).ConfigureAwait(false);
        var summary = new JsonObject
        {
            ["devices"] = options.Devices,
            ["connected"] = fleet.ConnectedCount,
            ["seconds"] = Math.Round(elapsed.TotalSeconds, 1),
            ["sent"] = fleet.Sent,
            ["acked"] = fleet.Acked,
            ["sentPerSecond"] = Math.Round(fleet.Sent / elapsed.TotalSeconds),
            ["skippedTurns"] = fleet.SkippedTurns,
            ["otaReports"] = fleet.Devices.Sum(x => x.OtaReports),
            ["allAcknowledged"] = drained,
        };
        Console.WriteLine(args.Has("json") ? summary.ToJsonString() : $"sent {fleet.Sent}, acknowledged {fleet.Acked}{(drained ? "" : " (not all acknowledged within 30 s)")}");
        return drained ? 0 : 1;
    }

    private static double Double(CommandLine args, string name, double fallback) =>
        args.Get(name) is { } v ? (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) ? x : throw new UsageException($"--{name} '{v}' is not a number")) : fallback;
}
