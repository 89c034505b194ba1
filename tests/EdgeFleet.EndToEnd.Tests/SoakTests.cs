using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using EdgeFleet.Cli.Sim;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// A compressed soak: a real agent classifying at 50 times the demo's rate (200 windows a second against 4) and a
/// fleet service taking telemetry from it and from 1,000 simulated devices, both sampled (resident memory, open
/// descriptors, bytes written, disk use) while they run. After a warm-up, the late samples must not have grown
/// from the early ones beyond small bounds: the lines are flat. EDGEFLEET_SOAK_SECONDS sets the length (120 s in
/// CI; docs/benchmarks.md records a 30-minute run, about 25 hours of the demo's traffic).
/// </summary>
[Collection("processes")]
public sealed class SoakTests(DemoModel model, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<DemoModel>
{
    private static int Seconds => int.TryParse(Environment.GetEnvironmentVariable("EDGEFLEET_SOAK_SECONDS"), out var n) ? n : 120;

    private const int AgentRate = 200;

    [Fact]
    public async Task An_agent_and_a_fleet_with_1000_simulated_devices_run_with_flat_memory_descriptors_disk_and_write_rate()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-soak-").FullName;
        using var fleet = new Fleet(Path.Combine(dir, "fleet"));
        using var agent = new Agent(Path.Combine(dir, "agents"), "soak-pump", fleet, model.Path, "normal", aot: File.Exists(Repo.AotAgent), configure: c =>
        {
            c["input"]!["rateHz"] = AgentRate;
            // The field's commit window (10 s) and health every second; latency windows every 5 s.
            c["telemetry"] = new JsonObject { ["healthIntervalSeconds"] = 1, ["latencyWindowSeconds"] = 5 };
        });
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        using var http = fleet.AdminClient();
        await using var sim = await SimulatedFleet.EnrollAsync(http, new SimOptions { Devices = 1000, Rate = 1, BatchRecords = 10, Prefix = "soak" }, CancellationToken.None);
        await sim.ConnectAsync(CancellationToken.None);
        await Wait.ForAsync(async () => await fleet.Device("soak-pump") is { } d && d["device"]!["telemetryRecords"]!.GetValue<long>() > 0 ? d : null,
            TimeSpan.FromSeconds(60), Explain);

        var run = sim.RunAsync(TimeSpan.FromSeconds(Seconds), CancellationToken.None);
        var interval = TimeSpan.FromSeconds(Math.Max(2, Seconds / 60.0));
        var agentSamples = new List<ProcessSample>();
        var fleetSamples = new List<ProcessSample>();
        var clock = Stopwatch.StartNew();
        while (!run.IsCompleted)
        {
            Assert.False(agent.Exited, Explain());
            agentSamples.Add(ProcessSample.Take(agent.Pid, agent.StateDirectory, clock.Elapsed));
            fleetSamples.Add(ProcessSample.Take(fleet.Pid, Path.Combine(dir, "fleet"), clock.Elapsed));
            await Task.WhenAny(run, Task.Delay(interval));
        }
        await run;
        Assert.True(await sim.DrainAsync(TimeSpan.FromSeconds(60), CancellationToken.None), "the simulated devices' telemetry was not all acknowledged:\n" + Explain());
        var agentStored = (await fleet.Device("soak-pump"))!["device"]!["telemetryRecords"]!.GetValue<long>();
        Assert.True(agentStored >= AgentRate * Seconds / 2, $"only {agentStored} of the agent's records stored");

        output.WriteLine($"{Seconds} s: agent {AgentRate} results/s ({agentStored} records stored), 1,000 simulated devices ({sim.Sent} records), {agentSamples.Count} samples");
        var agentRules = new Flatness(agentSamples, output, "agent");
        agentRules.Rss(relative: 0.15, absoluteMb: 8);
        agentRules.OpenFiles(slack: 4);
        agentRules.Disk(relative: 0.5, absoluteMb: 2);
        agentRules.WriteRate(relative: 0.5, absoluteKbPerSecond: 64);
        var fleetRules = new Flatness(fleetSamples, output, "fleet");
        fleetRules.Rss(relative: 0.2, absoluteMb: 48);
        fleetRules.OpenFiles(slack: 16);
        fleetRules.WriteRate(relative: 0.5, absoluteKbPerSecond: 1024);
        fleetRules.Report("disk (stores every record)", s => s.DiskBytes / 1e6, "MB");
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Early vs late halves of the samples after the first quarter (warm-up), with the trend per hour for the record.</summary>
    private sealed class Flatness(List<ProcessSample> samples, Xunit.Abstractions.ITestOutputHelper output, string name)
    {
        private readonly List<ProcessSample> _early = samples.Skip(samples.Count / 4).Take((samples.Count - samples.Count / 4) / 2).ToList();
        private readonly List<ProcessSample> _late = samples.Skip(samples.Count / 4 + (samples.Count - samples.Count / 4) / 2).ToList();

        public void Rss(double relative, double absoluteMb)
        {
            var (early, late) = Report("RSS", s => s.RssBytes / 1e6, "MB");
            Assert.True(late <= (early * (1 + relative)) + absoluteMb, $"{name} resident memory grew from {early:F1} MB to {late:F1} MB");
        }

        public void OpenFiles(int slack)
        {
            var (early, late) = (_early.Max(s => s.OpenFiles), _late.Max(s => s.OpenFiles));
            Report("open files", s => s.OpenFiles, "");
            Assert.True(late <= early + slack, $"{name} open descriptors grew from {early} to {late}");
        }

        public void Disk(double relative, double absoluteMb)
        {
            var (early, late) = (_early.Max(s => s.DiskBytes) / 1e6, _late.Max(s => s.DiskBytes) / 1e6);
            Report("disk", s => s.DiskBytes / 1e6, "MB");
            Assert.True(late <= Math.Max(early * (1 + relative), early + absoluteMb), $"{name} disk use grew from {early:F1} MB to {late:F1} MB");
        }

        public void WriteRate(double relative, double absoluteKbPerSecond)
        {
            static double Rate(List<ProcessSample> s) => (s[^1].WrittenBytes - s[0].WrittenBytes) / 1e3 / Math.Max(0.001, (s[^1].At - s[0].At).TotalSeconds);
            var (early, late) = (Rate(_early), Rate(_late));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {name} write rate: early {early:F1} kB/s, late {late:F1} kB/s"));
            Assert.True(late <= (early * (1 + relative)) + absoluteKbPerSecond, $"{name} write rate grew from {early:F1} kB/s to {late:F1} kB/s");
        }

        /// <summary>Prints early and late means and the least-squares trend per hour; returns the means.</summary>
        public (double Early, double Late) Report(string what, Func<ProcessSample, double> value, string unit)
        {
            var window = _early.Concat(_late).ToList();
            var (early, late) = (_early.Average(value), _late.Average(value));
            var xs = window.Select(s => s.At.TotalHours).ToList();
            var ys = window.Select(value).ToList();
            var (mx, my) = (xs.Average(), ys.Average());
            var slope = xs.Zip(ys).Sum(p => (p.First - mx) * (p.Second - my)) / Math.Max(1e-12, xs.Sum(x => (x - mx) * (x - mx)));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {name} {what}: first {value(samples[0]):F1}{unit}, early {early:F1}{unit}, late {late:F1}{unit}, trend {slope:+0.0;-0.0}{unit}/h"));
            return (early, late);
        }
    }
}
