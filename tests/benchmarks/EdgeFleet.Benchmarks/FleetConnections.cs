using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Cli.Sim;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Many connections on one fleet instance (embedded broker + LiteDB, its own process): ingest throughput of a
/// fixed set of busy devices while only they are connected (the baseline, measured before and after), and
/// while thousands more devices are connected and idle (enrolled for real, device tokens, keep-alive 60 s,
/// subscribed to their ack and desired-state topics as agents are), in alternating rounds. The figure is the
/// median ratio of the two.
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- fleet-connections 10000 100 15 700 3</c>.
/// </summary>
public static class FleetConnections
{
    public static async Task<int> RunAsync(int totalDevices, int busyDevices, int seconds, double ratePerDevice, int rounds, bool sharedKeepAlive)
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
            fleet = FleetIngest.StartFleet(fleetDll, dir, httpPort, mqttPort, [], new Dictionary<string, string>());
            using var http = await FleetIngest.ConnectApiAsync(dir, httpPort);

            var batch = (int)Math.Clamp(ratePerDevice / 5, 1, 1000);
            var clock = Stopwatch.StartNew();
            await using var busy = await SimulatedFleet.EnrollAsync(http, new SimOptions { Devices = busyDevices, Rate = ratePerDevice, BatchRecords = batch, Prefix = "busy" }, CancellationToken.None);
            var idle = await SimulatedFleet.EnrollAsync(http, new SimOptions { Devices = totalDevices - busyDevices, Rate = 0, Prefix = "idle", Concurrency = 128, SharedKeepAlive = sharedKeepAlive }, CancellationToken.None);
            var enrolled = clock.Elapsed;
            await busy.ConnectAsync(CancellationToken.None);
            await MeasureAsync(http, busy, 3); // warm-up: JIT, LiteDB file growth, connection pools

            // Rounds of: busy devices alone, then with every idle device connected; the last baseline closes the
            // series. Each loaded figure is compared with the mean of the baselines just before and after it,
            // so drift over the run (the store growing, a neighbour on the host) cancels out.
            var baselines = new List<double> { await MeasureAsync(http, busy, seconds) };
            var loaded = new List<double>();
            var connectTimes = new List<double>();
            var clientCounts = new List<long>();
            double rssBaseline = RssMiB(fleet), rssLoaded = 0;
            var connectedIdle = int.MaxValue;
            long pingsFailed = 0;
            for (var round = 0; round < rounds; round++)
            {
                clock.Restart();
                await idle.ConnectAsync(CancellationToken.None);
                connectTimes.Add(clock.Elapsed.TotalSeconds);
                await Task.Delay(TimeSpan.FromSeconds(3));
                clientCounts.Add(await BrokerClientsAsync(http));
                connectedIdle = Math.Min(connectedIdle, idle.ConnectedCount);
                var failedBefore = idle.PingsFailed;
                loaded.Add(await MeasureAsync(http, busy, seconds));
                pingsFailed += idle.PingsFailed - failedBefore; // while connected; pings racing a disconnect do not count
                clientCounts.Add(await BrokerClientsAsync(http));
                connectedIdle = Math.Min(connectedIdle, idle.ConnectedCount);
                rssLoaded = Math.Max(rssLoaded, RssMiB(fleet));
                await idle.DisconnectAsync(CancellationToken.None);
                await WaitForClientsAsync(http, busyDevices + 1, TimeSpan.FromSeconds(60));
                baselines.Add(await MeasureAsync(http, busy, seconds));
            }
            await idle.DisposeAsync();

            var drained = await busy.DrainAsync(TimeSpan.FromSeconds(120), CancellationToken.None);
            var list = (await http.GetFromJsonAsync<JsonArray>("/api/devices?selector=simulated"))!;
            long stored = 0, acked = 0;
            foreach (var view in list)
            {
                stored += view!["device"]!["telemetryRecords"]!.GetValue<long>();
                acked += view["device"]!["ackedSeq"]!.GetValue<long>();
            }
            var ratios = loaded.Select((l, i) => l / ((baselines[i] + baselines[i + 1]) / 2)).ToList();
            var ratio = ratios.Order().ElementAt(ratios.Count / 2);
            var allConnected = clientCounts.All(c => c >= totalDevices + 1) && connectedIdle == totalDevices - busyDevices && pingsFailed == 0;
            var met = ratio >= 0.90 && allConnected && stored == busy.Sent && stored == acked;
            static string List(IEnumerable<double> values, string format) => string.Join(" ", values.Select(v => v.ToString(format, CultureInfo.InvariantCulture)));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"fleet-connections: {totalDevices} devices enrolled in {enrolled.TotalSeconds:0} s; {busyDevices} busy offering {busyDevices * ratePerDevice:0} rec/s in batches of {batch}; " +
                $"{totalDevices - busyDevices} idle ({(sharedKeepAlive ? "pinged by one loop" : "MQTTnet keep-alive per client")}) connected {rounds} times in {List(connectTimes, "0.0")} s; " +
                $"broker clients while loaded {string.Join(" ", clientCounts)}, idle pings unanswered while loaded {pingsFailed}; " +
                $"stored rec/s with {busyDevices} connections {List(baselines, "0")}, with {totalDevices} connections {List(loaded, "0")}; " +
                $"ratios {List(ratios, "F3")}, median {ratio:F3}; fleet RSS {rssBaseline:0} MiB -> {rssLoaded:0} MiB; " +
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
