using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Cli.Sim;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Many connections on one fleet instance (embedded broker + LiteDB, its own process): ingest throughput of a
/// fixed set of busy devices while only they are connected (the baseline, measured before and after), and
/// while thousands more devices are connected and idle (enrolled for real, device tokens, keep-alive 60 s,
/// subscribed to their ack and desired-state topics as agents are). The figure is the ratio of the two.
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- fleet-connections 10000 100 20</c>.
/// </summary>
public static class FleetConnections
{
    public static async Task<int> RunAsync(int totalDevices, int busyDevices, int seconds, double ratePerDevice, bool sharedKeepAlive = true)
    {
        var fleetDll = Path.Combine(Repo.Root, "fleet-service/EdgeFleet.Fleet/bin/Release/net10.0/edgefleet-fleet.dll");
        if (!File.Exists(fleetDll))
        {
            Console.Error.WriteLine($"build the fleet first: dotnet build -c Release fleet-service/EdgeFleet.Fleet ({fleetDll})");
            return 2;
        }
        var dir = Directory.CreateTempSubdirectory("edgefleet-connections-").FullName;
        Process? fleet = null;
        try
        {
            var httpPort = FleetIngest.FreePort();
            var mqttPort = FleetIngest.FreePort();
            var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(fleetDll)! };
            foreach (var a in new[] { fleetDll, "--urls", $"http://127.0.0.1:{httpPort}", "--Fleet:Broker:Port", $"{mqttPort}",
                "--Fleet:Storage:Path", Path.Combine(dir, "fleet.db"), "--Fleet:Storage:ArtifactsPath", Path.Combine(dir, "artifacts"),
                "--Fleet:Security:AdminKeyPath", Path.Combine(dir, "admin.key"), "--Logging:LogLevel:Default", "Warning" })
                info.ArgumentList.Add(a);
            fleet = Process.Start(info)!;
            fleet.OutputDataReceived += (_, _) => { };
            fleet.ErrorDataReceived += (_, _) => { };
            fleet.BeginOutputReadLine();
            fleet.BeginErrorReadLine();
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromSeconds(60) };
            await FleetIngest.WaitHealthyAsync(http, dir);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(Path.Combine(dir, "admin.key"))).Trim());

            var batch = (int)Math.Clamp(ratePerDevice / 5, 1, 1000);
            var clock = Stopwatch.StartNew();
            await using var busy = await SimulatedFleet.EnrollAsync(http, new SimOptions { Devices = busyDevices, Rate = ratePerDevice, BatchRecords = batch, Prefix = "busy" }, CancellationToken.None);
            var idle = await SimulatedFleet.EnrollAsync(http, new SimOptions { Devices = totalDevices - busyDevices, Rate = 0, Prefix = "idle", Concurrency = 128, SharedKeepAlive = sharedKeepAlive }, CancellationToken.None);
            var enrolled = clock.Elapsed;
            await busy.ConnectAsync(CancellationToken.None);
            await MeasureAsync(http, busy, 3); // warm-up: JIT, LiteDB file growth, connection pools

            var before = await MeasureAsync(http, busy, seconds);
            var rssBefore = RssMiB(fleet);
            clock.Restart();
            await idle.ConnectAsync(CancellationToken.None);
            var connectTime = clock.Elapsed;
            await Task.Delay(TimeSpan.FromSeconds(5));
            var clients = await BrokerClientsAsync(http);
            var connectedIdle = idle.ConnectedCount;
            var loaded = await MeasureAsync(http, busy, seconds);
            var rssLoaded = RssMiB(fleet);
            var clientsAfterRun = await BrokerClientsAsync(http);
            var pingsFailed = idle.PingsFailed;
            await idle.DisposeAsync();
            await WaitForClientsAsync(http, busyDevices + 1, TimeSpan.FromSeconds(60));
            var after = await MeasureAsync(http, busy, seconds);

            var drained = await busy.DrainAsync(TimeSpan.FromSeconds(120), CancellationToken.None);
            var list = (await http.GetFromJsonAsync<JsonArray>("/api/devices?selector=simulated"))!;
            long stored = 0, acked = 0;
            foreach (var view in list)
            {
                stored += view!["device"]!["telemetryRecords"]!.GetValue<long>();
                acked += view["device"]!["ackedSeq"]!.GetValue<long>();
            }
            var baseline = (before + after) / 2;
            var ratio = loaded / baseline;
            var allConnected = clients >= totalDevices + 1 && clientsAfterRun >= totalDevices + 1 && connectedIdle == totalDevices - busyDevices && pingsFailed == 0;
            var met = ratio >= 0.90 && allConnected && stored == busy.Sent && stored == acked;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"fleet-connections: {totalDevices} devices enrolled in {enrolled.TotalSeconds:0} s; {busyDevices} busy offering {busyDevices * ratePerDevice:0} rec/s in batches of {batch}; " +
                $"{totalDevices - busyDevices} idle ({(sharedKeepAlive ? "pinged by one loop" : "MQTTnet keep-alive per client")}) connected in {connectTime.TotalSeconds:0.0} s ({(totalDevices - busyDevices) / connectTime.TotalSeconds:0}/s); " +
                $"broker clients {clients} before and {clientsAfterRun} after the loaded run, idle pings unanswered {pingsFailed}; " +
                $"stored with {busyDevices} connections {before:0} rec/s before and {after:0} after (baseline {baseline:0}), with {totalDevices} connections {loaded:0} rec/s; " +
                $"ratio {ratio:F3}; fleet RSS {rssBefore:0} MiB -> {rssLoaded:0} MiB; " +
                $"sent {busy.Sent}, stored {stored}, acknowledged {acked}, all acknowledged {drained}; " +
                $"target: {totalDevices} connected and ratio >= 0.90: {(met ? "met" : "NOT met")}"));
            return met ? 0 : 1;
        }
        finally
        {
            FleetIngest.Stop(fleet);
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Runs the busy devices for <paramref name="seconds"/> + 4 s; the figure is the fleet's stored counter over the middle <paramref name="seconds"/>.</summary>
    private static async Task<double> MeasureAsync(HttpClient http, SimulatedFleet busy, int seconds)
    {
        var run = busy.RunAsync(TimeSpan.FromSeconds(seconds + 4), CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var (startCount, startAt) = (await FleetIngest.StoredAsync(http), Stopwatch.GetTimestamp());
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        var (endCount, endAt) = (await FleetIngest.StoredAsync(http), Stopwatch.GetTimestamp());
        await run;
        return (endCount - startCount) / Stopwatch.GetElapsedTime(startAt, endAt).TotalSeconds;
    }

    private static async Task<long> BrokerClientsAsync(HttpClient http) =>
        (await http.GetFromJsonAsync<JsonNode>("/api/health"))!["brokerClients"]!.GetValue<long>();

    private static async Task WaitForClientsAsync(HttpClient http, long count, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (await BrokerClientsAsync(http) > count && clock.Elapsed < timeout)
            await Task.Delay(500);
    }

    private static double RssMiB(Process process)
    {
        foreach (var line in File.ReadLines($"/proc/{process.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        }
        return double.NaN;
    }
}
