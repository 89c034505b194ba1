using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Cli.Sim;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using EdgeFleet.TestServers;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Fleet ingestion on loopback: the fleet service as its own process, <c>edgefleet sim</c>'s devices (real
/// enrollment, MQTT connections with device tokens, Brotli batches) offering more than it can take, and the
/// stored records per second read from the fleet's own counter over the steady part of the run. Then every
/// device's stored count is checked against its acknowledgement (0 duplicates, 0 missing).
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- fleet-ingest both 1000 20 60</c>. The baseline, in
/// the same run: the same store in-process, one batch per transaction, as the fleet stored before group commit.
/// Modes: <c>embedded</c> (embedded broker + LiteDB) and <c>mosquitto-postgres</c> (external Mosquitto + PostgreSQL).
/// </summary>
public static class FleetIngest
{
    public static async Task<int> RunAsync(string mode, int devices, int seconds, double ratePerDevice)
    {
        var root = Repo.Root;
        var fleetDll = Path.Combine(root, "fleet-service/EdgeFleet.Fleet/bin/Release/net10.0/edgefleet-fleet.dll");
        if (!File.Exists(fleetDll))
        {
            Console.Error.WriteLine($"build the fleet first: dotnet build -c Release fleet-service/EdgeFleet.Fleet ({fleetDll})");
            return 2;
        }
        var failures = 0;
        foreach (var m in mode == "both" ? ["embedded", "mosquitto-postgres"] : new[] { mode })
            failures += await RunModeAsync(m, fleetDll, devices, seconds, ratePerDevice) ? 0 : 1;
        return failures == 0 ? 0 : 1;
    }

    private static async Task<bool> RunModeAsync(string mode, string fleetDll, int deviceCount, int seconds, double ratePerDevice)
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-ingest-").FullName;
        var postgres = mode == "mosquitto-postgres" ? new PostgresServer() : null;
        Process? mosquitto = null;
        Process? fleet = null;
        try
        {
            var httpPort = FreePort();
            var mqttPort = FreePort();
            string? connection = null;
            Dictionary<string, string> environment = [];
            List<string> extra = [];
            if (postgres is not null)
            {
                mosquitto = StartMosquitto(dir, mqttPort);
                connection = postgres.CreateDatabase();
                extra.AddRange(["--Fleet:Broker:Mode", "External", "--Fleet:Storage:Provider", "PostgreSql"]);
                environment["Fleet__Storage__ConnectionString"] = connection;
            }
            fleet = StartFleet(fleetDll, dir, httpPort, mqttPort, extra, environment);
            using var http = await ConnectApiAsync(dir, httpPort);

            // Offered a little above the target (60 records/s per device by default), in batches of 60: the simulator
            // shares the two cores, so offering far more than the fleet can take costs the fleet CPU it needs.
            var options = new SimOptions { Devices = deviceCount, Rate = ratePerDevice, BatchRecords = (int)Math.Clamp(ratePerDevice, 1, 1000), Prefix = "bench" };
            await using var sim = await SimulatedFleet.EnrollAsync(http, options, CancellationToken.None);
            await sim.ConnectAsync(CancellationToken.None);
            var run = sim.RunAsync(TimeSpan.FromSeconds(seconds), CancellationToken.None);
            await Task.Delay(TimeSpan.FromSeconds(Math.Min(5, seconds / 4.0)));
            var (startCount, startAt) = (await StoredAsync(http), Stopwatch.GetTimestamp());
            await run;
            var (endCount, endAt) = (await StoredAsync(http), Stopwatch.GetTimestamp());
            var rate = (endCount - startCount) / Stopwatch.GetElapsedTime(startAt, endAt).TotalSeconds;
            var drained = await sim.DrainAsync(TimeSpan.FromSeconds(120), CancellationToken.None);

            var health = (await http.GetFromJsonAsync<JsonNode>("/api/health"))!;
            var list = (await http.GetFromJsonAsync<JsonArray>("/api/devices"))!;
            long stored = 0, acked = 0;
            foreach (var view in list)
            {
                stored += view!["device"]!["telemetryRecords"]!.GetValue<long>();
                acked += view["device"]!["ackedSeq"]!.GetValue<long>();
            }
            var duplicatesStored = stored - acked;
            var baseline = await BaselineAsync(mode, dir, connection, deviceCount);
            var met = rate >= 50_000 && duplicatesStored == 0 && stored == sim.Sent;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"fleet-ingest {mode}: {deviceCount} devices, {seconds} s offered {sim.Sent / (double)seconds:0} rec/s: stored {rate:0} rec/s end to end over MQTT; " +
                $"baseline (same store in-process, one batch per transaction) {baseline:0} rec/s; ratio {rate / baseline:F2}; " +
                $"sent {sim.Sent}, stored {stored}, acknowledged {acked}, stored twice {duplicatesStored}, redelivered {health["telemetryDuplicates"]}, all acknowledged {drained}; " +
                $"target >= 50,000 rec/s with 0 duplicates: {(met ? "met" : "NOT met")}"));
            return met;
        }
        finally
        {
            Stop(fleet);
            Stop(mosquitto);
            postgres?.Dispose();
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>The same store, in this process, storing 1,000 devices' batches one transaction each for a few seconds.</summary>
    private static async Task<double> BaselineAsync(string mode, string dir, string? connection, int devices)
    {
        using IFleetStore store = connection is null ? new LiteDbFleetStore(Path.Combine(dir, "baseline.db")) : await PostgresFleetStore.OpenAsync(connection, CancellationToken.None);
        var records = Enumerable.Range(0, 100).Select(i => new TelemetryRecord
        {
            Ts = DateTimeOffset.UtcNow,
            Kind = TelemetryKind.Inference,
            Inference = new InferenceSample { Model = "vibration-classifier", Version = "1.0.0", Label = "normal", Confidence = 0.9f, LatencyMicros = 180 },
        }).ToList();
        var clock = Stopwatch.StartNew();
        long storedRecords = 0;
        for (var round = 0; clock.Elapsed < TimeSpan.FromSeconds(5); round++)
        {
            for (var d = 0; d < devices && clock.Elapsed < TimeSpan.FromSeconds(5); d++)
            {
                var batch = records.Select((r, i) => r with { Seq = (round * 100L) + i + 1 }).ToList();
                await store.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch($"base-{mode}-{d}", "s", batch), batch, DateTimeOffset.UtcNow, CancellationToken.None);
                storedRecords += batch.Count;
            }
        }
        return storedRecords / clock.Elapsed.TotalSeconds;
    }

    /// <summary>The fleet service as its own process on loopback ports, data in <paramref name="dir"/>, logging warnings only.</summary>
    internal static Process StartFleet(string fleetDll, string dir, int httpPort, int mqttPort, IEnumerable<string> extraArgs, IReadOnlyDictionary<string, string> environment)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(fleetDll)! };
        foreach (var a in new[] { fleetDll, "--urls", $"http://127.0.0.1:{httpPort}", "--Fleet:Broker:Port", $"{mqttPort}",
            "--Fleet:Storage:Path", Path.Combine(dir, "fleet.db"), "--Fleet:Storage:ArtifactsPath", Path.Combine(dir, "artifacts"),
            "--Fleet:Security:AdminKeyPath", Path.Combine(dir, "admin.key"), "--Logging:LogLevel:Default", "Warning" }.Concat(extraArgs))
            info.ArgumentList.Add(a);
        foreach (var (name, value) in environment)
            info.Environment[name] = value;
        var fleet = Process.Start(info)!;
        fleet.OutputDataReceived += (_, _) => { };
        fleet.ErrorDataReceived += (_, _) => { };
        fleet.BeginOutputReadLine();
        fleet.BeginErrorReadLine();
        return fleet;
    }

    /// <summary>An API client with the admin key, once the fleet is healthy.</summary>
    internal static async Task<HttpClient> ConnectApiAsync(string dir, int httpPort)
    {
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromSeconds(60) };
        await WaitHealthyAsync(http, dir);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(Path.Combine(dir, "admin.key"))).Trim());
        return http;
    }

    internal static async Task<long> StoredAsync(HttpClient http) =>
        (await http.GetFromJsonAsync<JsonNode>("/api/health"))!["telemetryStored"]!.GetValue<long>();

    private static async Task WaitHealthyAsync(HttpClient http, string dir)
    {
        for (var i = 0; i < 300; i++)
        {
            try
            {
                if ((await http.GetFromJsonAsync<JsonNode>("/api/health"))?["brokerConnected"]?.GetValue<bool>() == true && File.Exists(Path.Combine(dir, "admin.key")))
                    return;
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(200);
        }
        throw new InvalidOperationException("the fleet service did not become healthy");
    }

    private static readonly string[] MosquittoPaths = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"];

    private static Process StartMosquitto(string dir, int port)
    {
        var config = Path.Combine(dir, "mosquitto.conf");
        File.WriteAllText(config, $"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n");
        var binary = MosquittoPaths.FirstOrDefault(File.Exists) ?? throw new InvalidOperationException("mosquitto is not installed");
        var p = Process.Start(new ProcessStartInfo(binary, ["-c", config]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        Thread.Sleep(500);
        return p;
    }

    internal static void Stop(Process? p)
    {
        if (p is null)
            return;
        if (!p.HasExited)
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(10_000);
        }
        p.Dispose();
    }

    internal static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
