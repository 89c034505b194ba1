using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// A device behind a bad network: the agent runs in its own network namespace and reaches the fleet through an
/// emulated link (<see cref="ImpairedLink"/>) that loses 30 % of the packets each way with a 2 s round trip, while
/// the fleet (and its embedded broker) is killed and restarted mid-batch; then the link is cut for longer than the
/// inference records' time to live and the buffer's capacity, and comes back. Every record the agent accepted is
/// stored once or was evicted by policy and reported; the priorities and time to live hold; the agent is back
/// within its reconnect backoff.
/// </summary>
[Collection("processes")]
public sealed partial class NetworkChaosTests(DemoModel model, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<DemoModel>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(180);

    /// <summary>Seconds of each phase (EDGEFLEET_CHAOS_SECONDS; the partition is this plus the records' 18 s time to live).</summary>
    private static int PhaseSeconds => int.TryParse(Environment.GetEnvironmentVariable("EDGEFLEET_CHAOS_SECONDS"), out var n) ? n : 30;

    private const double MaxReconnectSeconds = 5;

    [GeneratedRegex(@"retrying in (\d+(?:\.\d+)?) s")]
    private static partial Regex RetryLine();

    [Fact]
    public async Task Through_loss_latency_a_restarted_broker_and_a_long_partition_nothing_accepted_is_lost_or_stored_twice()
    {
        Assert.True(ImpairedLink.Supported, "the chaos test needs root, /dev/net/tun and iproute2");
        var dir = Directory.CreateTempSubdirectory("edgefleet-chaos-").FullName;
        string[] fleetArgs = ["--Fleet:Broker:BindAddress", "*"];
        var fleet = new Fleet(dir, extraArgs: fleetArgs);
        using var link = new ImpairedLink();
        using var agent = new Agent(dir, "remote-pump", fleet, model.Path, "normal", link: link, configure: c =>
        {
            c["logLevel"] = "Debug";
            c["input"]!["rateHz"] = 50;
            c["broker"]!["maxReconnectSeconds"] = MaxReconnectSeconds;
            c["telemetry"] = new JsonObject
            {
                ["maxBatchAgeSeconds"] = 0.2,
                ["healthIntervalSeconds"] = 1,
                ["commitWindowSeconds"] = 0.5,
                // Hours of partition compressed into seconds: a buffer of 600 records (12 s of results at 50 a second)
                // and an 18 s time to live for health records.
                ["maxBufferRecords"] = 600,
                ["ttlHours"] = new JsonObject { ["inference"] = 168, ["health"] = 0.005 },
            };
        });
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output[^Math.Min(agent.Output.Length, 60_000)..]}";
        try
        {
            await Wait.ForAsync(async () => await fleet.Device("remote-pump") is { } d && Stored(d) >= 100 ? d : null, Patience, Explain);

            // 30 % loss each way and a 2 s round trip; halfway through, the fleet and its broker die and come back.
            var lossy = DateTimeOffset.UtcNow;
            link.Loss = 0.3;
            link.Delay = TimeSpan.FromSeconds(1);
            await Task.Delay(TimeSpan.FromSeconds(PhaseSeconds / 2.0));
            fleet.Kill9();
            await Task.Delay(TimeSpan.FromSeconds(3));
            fleet = new Fleet(dir, reuse: fleet, extraArgs: fleetArgs);
            await Task.Delay(TimeSpan.FromSeconds(PhaseSeconds / 2.0));
            var throughLoss = Stored((await fleet.Device("remote-pump"))!);

            // Cut for longer than the time to live and than the buffer holds, then a clean link again.
            link.Partitioned = true;
            var cut = DateTimeOffset.UtcNow;
            await Task.Delay(TimeSpan.FromSeconds(PhaseSeconds + 18));
            var beforeHeal = Stored((await fleet.Device("remote-pump"))!);
            (link.Loss, link.Delay, link.Partitioned) = (0, TimeSpan.Zero, false);
            var healedAt = DateTimeOffset.UtcNow;
            var healed = Stopwatch.StartNew();
            await Wait.ForAsync(async () => Stored((await fleet.Device("remote-pump"))!) > beforeHeal ? "" : null, Patience, Explain);
            var recovery = healed.Elapsed;

            // Drained: the fleet's watermark passes everything the agent accepted until now.
            var accepted = Accepted(agent.Output);
            var target = accepted.Max();
            var device = await Wait.ForAsync(async () => (await fleet.Device("remote-pump"))?["device"] is { } d && d["ackedSeq"]!.GetValue<long>() >= target
                && d["ackedSeq"]!.GetValue<long>() == d["telemetryRecords"]!.GetValue<long>() + d["skippedRecords"]!.GetValue<long>()
                // The report of the partition's last evictions is appended at the next health tick, after the heal.
                && d["evictedRecords"]!.GetValue<long>() >= d["skippedRecords"]!.GetValue<long>() ? d : null, Patience, Explain);
            agent.Kill9();

            var stored = await fleet.Telemetry("remote-pump");
            var watermark = device["ackedSeq"]!.GetValue<long>();
            var storedSeqs = stored.Select(r => r.Seq).ToHashSet();
            Assert.Equal(stored.Count, storedSeqs.Count);
            Assert.Equal(0, device["conflictingRecords"]!.GetValue<long>());
            // Every accepted record up to the watermark is stored, or is one of the gaps the device reported evicting.
            var missing = accepted.Where(s => s <= watermark && !storedSeqs.Contains(s)).ToList();
            var skipped = device["skippedRecords"]!.GetValue<long>();
            Assert.True(missing.Count <= skipped, $"{missing.Count} accepted records missing, {skipped} reported as evicted");
            var report = stored.Where(r => r.Evictions is not null).MaxBy(r => r.Seq)!.Evictions!; // cumulative: the newest tells all
            Assert.True(skipped <= report.Records, $"{skipped} gaps, {report.Records} evictions reported; missing: {Ranges(missing)}");
            // Priorities: the buffer made room by evicting inference results (low), never health records (normal);
            // time to live: health records went only when 18 s old.
            Assert.Equal(report.OverCapacity, report.ByKind.GetValueOrDefault("inference"));
            Assert.Equal(report.Expired, report.ByKind.GetValueOrDefault("health"));
            Assert.True(report.OverCapacity > 0 && report.Expired > 0, $"{report.OverCapacity} evicted for capacity, {report.Expired} expired");
            var health = stored.Where(r => r.Health is not null).Select(r => r.Ts).Order().ToList();
            TimeSpan LongestSilence(DateTimeOffset from, DateTimeOffset to)
            {
                List<DateTimeOffset> span = [from, .. health.Where(t => t > from && t < to), to];
                return span.Zip(span.Skip(1), (a, b) => b - a).Max();
            }
            // (Through the lossy phase health records may wait longer than their time to live, and go.) The bound is
            // loose because a loaded machine's disk can stall a commit, and every producer behind it, for seconds (8.7 s
            // seen in CI); records expired before their 18 s would leave most of the last 15 s empty.
            var stall = TimeSpan.FromSeconds(10);
            Assert.True(LongestSilence(health[0], lossy) < stall, "health records missing on a good link");
            Assert.True(LongestSilence(healedAt.AddSeconds(-15), healedAt) < stall, "health records younger than their time to live missing");
            Assert.DoesNotContain(health, t => t > cut.AddSeconds(1) && t < healedAt.AddSeconds(-20));

            // Reconnect backoff bounded: no wait longer than its ceiling, and back within it once the link healed.
            var waits = RetryLine().Matches(agent.Output).Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
            Assert.NotEmpty(waits);
            Assert.True(waits.Max() <= MaxReconnectSeconds + 0.05, $"a reconnect waited {waits.Max()} s");
            Assert.True(recovery < TimeSpan.FromSeconds(MaxReconnectSeconds + 15), $"back after {recovery.TotalSeconds:F1} s");

            var (forwarded, dropped) = link.Counts;
            var redelivered = (await fleet.Health())!["telemetryDuplicates"];
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"records offered (accepted) {accepted.Count}, stored {stored.Count} ({throughLoss} by the end of the lossy phase), " +
                $"evicted by policy {report.Records} ({report.Expired} expired, {report.OverCapacity} over capacity), missing {missing.Count} (all reported gaps), " +
                $"stored twice 0, redelivered and dropped by the fleet {redelivered}, " +
                $"reconnect waits max {waits.Max():F1} s over {waits.Count} retries, recovery after the partition {recovery.TotalSeconds:F1} s, " +
                $"packets forwarded {forwarded}, dropped {dropped}"));
        }
        finally
        {
            fleet.Dispose();
        }
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task A_rollout_through_a_lossy_link_completes_after_the_fleet_is_killed_mid_rollout()
    {
        Assert.True(ImpairedLink.Supported, "the chaos test needs root, /dev/net/tun and iproute2");
        var dir = Directory.CreateTempSubdirectory("edgefleet-chaos-rollout-").FullName;
        string P(string name) => Path.Combine(dir, name);
        Cli(null, "keys", "init", "--dir", P("keys"));
        using var link = new ImpairedLink();
        // The API listens on the link too: the device downloads its model from the fleet through it.
        string[] fleetArgs = ["--Fleet:Broker:BindAddress", "*", "--Fleet:Signing:KeyDirectory", P("keys"), "--Fleet:RolloutTickSeconds", "0.25"];
        var fleet = new Fleet(P("fleet"), httpAddress: "0.0.0.0", extraArgs: fleetArgs);
        try
        {
            Cli(null, "model", "demo", "--out", P("v1.onnx"), "--seed", "42");
            Cli(null, "model", "demo", "--out", P("v2.onnx"), "--seed", "43");
            Cli(null, "model", "samples", "--kind", "demo", "--count", "20", "--out", P("samples"));
            File.WriteAllText(P("card.json"), """{"owner": "vibration-ml", "intendedUse": "pump vibration", "labels": ["normal", "imbalance", "bearing-wear"]}""");
            Cli(fleet, "model", "register", "--id", "vibration-classifier");
            foreach (var v in (string[])["v1", "v2"])
            {
                Cli(null, "model", "validate", "--reference", P($"{v}.onnx"), "--candidate", P($"{v}.onnx"), "--data", P("samples"),
                    "--max-latency-ratio", "100", "--report-out", P($"{v}-report.json"));
                Cli(fleet, "model", "push", "--model-id", "vibration-classifier", "--card", P("card.json"), "--fp32", P($"{v}.onnx"), "--report", P($"{v}-report.json"));
                Cli(fleet, "model", "approve", "--model-id", "vibration-classifier", "--model-version", v[1..], "--reason", "validated");
            }
            var ota = new JsonObject { ["rootPath"] = P("keys/root.json"), ["fleetUrl"] = $"http://{link.HostAddress}:{fleet.HttpPort}", ["probationMinutes"] = 5 };
            using var agent = new Agent(P("agents"), "remote-pump", fleet, P("v1.onnx"), "normal", ota: ota, link: link,
                configure: c => c["broker"]!["maxReconnectSeconds"] = MaxReconnectSeconds);
            string Explain() => $"fleet:\n{fleet.Output[^Math.Min(fleet.Output.Length, 20_000)..]}\n--- agent:\n{agent.Output[^Math.Min(agent.Output.Length, 40_000)..]}";
            await Wait.ForAsync(async () => await fleet.Device("remote-pump") is { } d && Stored(d) > 0 ? d : null, Patience, Explain);

            // 30 % loss each way and a 2 s round trip; the rollout starts, and the fleet dies once the device is at it.
            link.Loss = 0.3;
            link.Delay = TimeSpan.FromSeconds(1);
            var started = Stopwatch.StartNew();
            Cli(fleet, "rollout", "create", "--id", "through-loss", "--model-id", "vibration-classifier", "--model-version", "2",
                "--devices", "remote-pump", "--phases", "100%", "--quality", "off");
            await Wait.ForAsync(async () => (await fleet.Device("remote-pump"))?["device"]?["lastOta"] is { } o && o["version"]?.GetValue<long>() == 2 ? "" : null,
                Patience, Explain);
            var seenAt = started.Elapsed;
            fleet.Kill9();
            await Task.Delay(TimeSpan.FromSeconds(3));
            fleet = new Fleet(P("fleet"), reuse: fleet, extraArgs: fleetArgs);

            var rollout = await Wait.ForAsync(async () =>
            {
                using var response = await fleet.Get("/api/rollouts/through-loss");
                var view = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
                return view["state"]?.GetValue<string>() == "completed" ? view : null;
            }, 2 * Patience, Explain); // through 30 % loss the download, probation and report took 3 minutes on a loaded CI machine
            Assert.Equal(1, rollout["tally"]!["installed"]!.GetValue<int>());
            // The live "committed" report may have gone out as the fleet died; the outcome also comes through the buffer.
            await Wait.ForAsync(async () => (await fleet.Device("remote-pump"))?["device"]?["lastOta"]?["state"]?.GetValue<string>() == "committed" ? "" : null,
                Patience, Explain);
            Assert.Contains("model vibration-classifier v2 is active", agent.Output, StringComparison.OrdinalIgnoreCase);
            var (forwarded, dropped) = link.Counts;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"rollout through 30 % loss and a 2 s round trip: the device reported v2 after {seenAt.TotalSeconds:F1} s, the fleet was killed then, " +
                $"and the rollout completed {started.Elapsed.TotalSeconds:F1} s after it was created; packets forwarded {forwarded}, dropped {dropped}"));
        }
        finally
        {
            fleet.Dispose();
        }
        Directory.Delete(dir, recursive: true);
    }

    private static string Cli(Fleet? fleet, params string[] args) => FleetCli.Run(0, fleet, null, args);

    private static string Ranges(IEnumerable<long> seqs) =>
        string.Join(", ", seqs.Order().Aggregate(new List<(long From, long To)>(), (list, s) =>
        {
            if (list.Count > 0 && list[^1].To == s - 1)
                list[^1] = (list[^1].From, s);
            else
                list.Add((s, s));
            return list;
        }).Select(r => r.From == r.To ? $"{r.From}" : $"{r.From}..{r.To}"));

    private static long Stored(JsonNode view) => view["device"]!["telemetryRecords"]!.GetValue<long>();

    private static HashSet<long> Accepted(string log)
    {
        var accepted = new HashSet<long>();
        TelemetryTests.CollectAccepted(log, accepted);
        return accepted;
    }
}
