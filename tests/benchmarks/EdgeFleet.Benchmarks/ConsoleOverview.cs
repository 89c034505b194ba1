using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// The web console's overview with a large fleet: a store holding <c>devices</c> registered devices (half of them
/// seen recently, two model versions, tags) and a running rollout, served by a fleet process; a logged-in session
/// fetches <c>/console</c> and the devices page, and, as the baseline in the same run, the JSON API's device list
/// (<c>/api/devices</c>: the same store read, serialized instead of summarized). Server time is the page's
/// <c>Server-Timing</c>; client time is the whole request over loopback.
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- console-overview 10000 20</c>.
/// </summary>
public static partial class ConsoleOverview
{
    public static async Task<int> RunAsync(int devices, int runs)
    {
        var fleetDll = Path.Combine(Repo.Root, "fleet-service/EdgeFleet.Fleet/bin/Release/net10.0/edgefleet-fleet.dll");
        if (!File.Exists(fleetDll))
        {
            Console.Error.WriteLine($"build the fleet first: dotnet build -c Release fleet-service/EdgeFleet.Fleet ({fleetDll})");
            return 2;
        }
        var dir = Directory.CreateTempSubdirectory("edgefleet-console-").FullName;
        Process? fleet = null;
        try
        {
            var clock = Stopwatch.StartNew();
            await SeedAsync(Path.Combine(dir, "fleet.db"), devices);
            var seeded = clock.Elapsed;
            var httpPort = FleetIngest.FreePort();
            fleet = FleetIngest.StartFleet(fleetDll, dir, httpPort, FleetIngest.FreePort(), [], new Dictionary<string, string>());
            using var api = await FleetIngest.ConnectApiAsync(dir, httpPort);
            (await api.PostAsJsonAsync("/api/users", new JsonObject { ["username"] = "bench", ["role"] = "Viewer", ["password"] = "benchmark password" })).EnsureSuccessStatusCode();
            using var session = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer() }) { BaseAddress = api.BaseAddress };
            var login = await session.GetStringAsync("/console/login");
            var token = Token().Match(login).Groups[1].Value;
            using (var signIn = await session.PostAsync("/console/login", new FormUrlEncodedContent([new("username", "bench"), new("password", "benchmark password"), new("__RequestVerificationToken", token)])))
            {
                if (signIn.StatusCode != HttpStatusCode.Redirect)
                    throw new InvalidOperationException($"login failed: {signIn.StatusCode}");
            }

            var overview = await TimeAsync(session, "/console", runs, expect: $"id=\"total\">{devices}<");
            var devicesPage = await TimeAsync(session, "/console/devices?status=online&sort=-seen", runs, expect: "devices match");
            var apiList = await TimeAsync(api, "/api/devices", runs, expect: "\"device\"");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                console-overview: {devices} devices (seeded in {seeded.TotalSeconds:F1} s), median of {runs} after 3 warm-up requests
                  /console (overview)          server {overview.Server,7:F1} ms   client {overview.Client,7:F1} ms   {overview.Bytes,9:N0} bytes   (target: server < 1000 ms: {(overview.Server < 1000 ? "met" : "NOT met")})
                  /console/devices (page 1)    server {devicesPage.Server,7:F1} ms   client {devicesPage.Client,7:F1} ms   {devicesPage.Bytes,9:N0} bytes
                  baseline /api/devices (JSON)                   client {apiList.Client,7:F1} ms   {apiList.Bytes,9:N0} bytes
                  overview / baseline (client): {overview.Client / apiList.Client:F2}
                """));
            return 0;
        }
        finally
        {
            if (fleet is not null)
            {
                fleet.Kill(entireProcessTree: true);
                await fleet.WaitForExitAsync();
                fleet.Dispose();
            }
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Registers the devices straight into the store the fleet will open: hellos, reported models, tags, and a running rollout.</summary>
    private static async Task SeedAsync(string path, int devices)
    {
        using var store = new LiteDbFleetStore(path);
        var now = DateTimeOffset.UtcNow;
        for (var i = 0; i < devices; i++)
        {
            var id = $"dev-{i:D5}";
            var seen = i % 2 == 0 ? now : now.AddHours(-2); // half online
            await store.RecordHelloAsync(new HelloMessage
            {
                DeviceId = id,
                AgentVersion = "0.1.0",
                HardwareProfile = i % 3 == 0 ? "jetson-orin-nano" : "x86-64-generic",
                BootId = "b" + i.ToString(CultureInfo.InvariantCulture),
                StartedAt = seen,
                Models = [new ModelRef { Name = "vibration-classifier", Version = i % 10 == 0 ? "2" : "1" }],
            }, seen, CancellationToken.None);
            await store.ChangeTagsAsync(id, new EdgeFleet.Fleet.Devices.TagPatch(new Dictionary<string, string> { ["site"] = $"plant-{i % 20}" }, []), CancellationToken.None);
        }
        var rollout = new EdgeFleet.Fleet.Rollouts.Rollout
        {
            Id = "bench",
            ModelId = "vibration-classifier",
            Version = 2,
            Target = new EdgeFleet.Fleet.Rollouts.RolloutTarget { Selector = "site=plant-1" },
            Phases = [new EdgeFleet.Fleet.Rollouts.RolloutPhase { Percent = 100 }],
            State = EdgeFleet.Fleet.Rollouts.RolloutStates.Paused,
            PhaseStartedAt = now,
            CreatedAt = now,
            CreatedBy = "bench",
            Manifest = System.Text.Json.JsonDocument.Parse("""{"signed": {"artifacts": {"x86-64-generic": {}}}}""").RootElement.Clone(),
            KeySet = System.Text.Json.JsonDocument.Parse("{}").RootElement.Clone(),
            Devices = [.. Enumerable.Range(0, devices / 20).Select(i => new EdgeFleet.Fleet.Rollouts.RolloutDevice { Id = $"dev-{(i * 20) + 1:D5}", Phase = 0, AssignedAt = now, Status = "installed" })],
        };
        await store.CreateRolloutAsync(rollout, CancellationToken.None);
    }

    private static async Task<(double Server, double Client, long Bytes)> TimeAsync(HttpClient http, string path, int runs, string expect)
    {
        var server = new List<double>();
        var client = new List<double>();
        long bytes = 0;
        for (var i = 0; i < runs + 3; i++)
        {
            var sw = Stopwatch.StartNew();
            using var response = await http.GetAsync(path);
            var body = await response.Content.ReadAsStringAsync();
            sw.Stop();
            if (!response.IsSuccessStatusCode || !body.Contains(expect, StringComparison.Ordinal))
                throw new InvalidOperationException($"{path}: {response.StatusCode}, expected '{expect}' in the page");
            if (i < 3)
                continue;
            client.Add(sw.Elapsed.TotalMilliseconds);
            bytes = body.Length;
            if (response.Headers.TryGetValues("Server-Timing", out var values) && ServerTime().Match(values.First()) is { Success: true } m)
                server.Add(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        }
        return (server.Count == 0 ? double.NaN : Median(server), Median(client), bytes);
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    [GeneratedRegex("name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"")]
    private static partial Regex Token();

    [GeneratedRegex("dur=([0-9.]+)")]
    private static partial Regex ServerTime();
}
