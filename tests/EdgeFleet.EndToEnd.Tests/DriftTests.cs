using System.Net;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Drift end to end: baselines computed from "normal" inputs go into the model card, the fleet signs them into the
/// release's manifest, real agents (one of them NativeAOT) sketch their inputs and confidence on those bins, and
/// the fleet merges the sketches per site: the site whose machines are out of balance drifts, for enough windows
/// in a row to alert; the healthy site does not.
/// </summary>
public sealed class DriftTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-drift-").FullName;
    private readonly Fleet _fleet;
    private readonly HttpListener _hook = new();
    private readonly List<(string Body, string? Signature)> _received = [];
    private readonly int _hookPort = Repo.FreePort();

    public DriftTests()
    {
        Cli(null, "keys", "init", "--dir", P("keys"));
        // Alert receivers: a webhook (HMAC-signed) on a local listener, and a command that appends what it is given.
        File.WriteAllText(P("hook.secret"), "webhook secret\n");
        File.WriteAllText(P("on-alert.sh"), $"#!/bin/sh\ncat >> '{P("alerts.jsonl")}'\necho >> '{P("alerts.jsonl")}'\n");
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(P("on-alert.sh"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _hook.Prefixes.Add($"http://127.0.0.1:{_hookPort}/");
        _hook.Start();
        _ = ReceiveAsync();
        _fleet = new Fleet(P("fleet"), extraArgs: ["--Fleet:Signing:KeyDirectory", P("keys"), "--Fleet:RolloutTickSeconds", "0.25", "--Fleet:Drift:WindowSeconds", "3",
            "--Fleet:Drift:CheckSeconds", "1", "--Fleet:Drift:SegmentBy", "tag:site", "--Fleet:Drift:AlertWindows", "2",
            "--Fleet:Drift:WebhookUrl", $"http://127.0.0.1:{_hookPort}/hook", "--Fleet:Drift:WebhookSecretFile", P("hook.secret"), "--Fleet:Drift:Command", P("on-alert.sh")]);
        try
        {
            Cli(null, "model", "demo", "--out", P("v1.onnx"), "--seed", "42");
            Cli(null, "model", "samples", "--kind", "demo", "--count", "1000", "--condition", "normal", "--out", P("normal"));
            File.WriteAllText(P("card.json"), """{"owner": "vibration-ml", "intendedUse": "pump vibration", "labels": ["normal", "imbalance", "bearing-wear"]}""");
            Cli(null, "model", "baseline", "--model", P("v1.onnx"), "--data", P("normal"), "--bins", "8", "--card", P("card.json"), "--out", P("card-baselines.json"));
            Cli(null, "model", "validate", "--reference", P("v1.onnx"), "--candidate", P("v1.onnx"), "--data", P("normal"), "--max-samples", "50", "--max-latency-ratio", "100", "--report-out", P("report.json"));
            Cli(_fleet, "model", "register", "--id", "vibration-classifier");
            Cli(_fleet, "model", "push", "--model-id", "vibration-classifier", "--card", P("card-baselines.json"), "--fp32", P("v1.onnx"), "--report", P("report.json"));
            Cli(_fleet, "model", "approve", "--model-id", "vibration-classifier", "--model-version", "1", "--reason", "baseline attached");
        }
        catch
        {
            _fleet.Dispose(); // xunit does not dispose a test class whose constructor threw
            throw;
        }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private async Task ReceiveAsync()
    {
        while (_hook.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _hook.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            using var reader = new StreamReader(context.Request.InputStream);
            var body = await reader.ReadToEndAsync();
            lock (_received)
                _received.Add((body, context.Request.Headers["X-EdgeFleet-Signature"]));
            context.Response.StatusCode = 204;
            context.Response.Close();
        }
    }

    private static string Cli(Fleet? fleet, params string[] args) => FleetCli.Run(0, fleet, null, args);

    [Fact]
    public async Task The_site_whose_machines_drift_alerts_after_consecutive_windows_and_the_healthy_site_does_not()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        var ota = new JsonObject { ["rootPath"] = P("keys/root.json"), ["fleetUrl"] = _fleet.Url, ["probationMinutes"] = 5 };
        void Fast(JsonObject c) => c["input"]!["rateHz"] = 100;
        using var healthy = new Agent(P("agents"), "site-a-1", _fleet, P("v1.onnx"), "normal", aot: true, ota: ota.DeepClone().AsObject(), configure: Fast);
        using var drifting = new Agent(P("agents"), "site-b-1", _fleet, P("v1.onnx"), "imbalance", aot: false, ota: ota.DeepClone().AsObject(), configure: Fast);
        await Wait.ForAsync(async () => (await _fleet.Devices()).Count >= 2 ? "" : null, Patience, () => healthy.Output);
        foreach (var (id, site) in new[] { ("site-a-1", "a"), ("site-b-1", "b") })
        {
            using var tagged = await _fleet.Send(HttpMethod.Patch, $"/api/devices/{id}/tags", new JsonObject { ["set"] = new JsonObject { ["site"] = site } });
            Assert.Equal(HttpStatusCode.OK, tagged.StatusCode);
        }
        using (var rollout = await _fleet.Send(HttpMethod.Post, "/api/rollouts", new JsonObject
        {
            ["id"] = "baseline",
            ["modelId"] = "vibration-classifier",
            ["version"] = 1,
            ["target"] = new JsonObject { ["devices"] = new JsonArray("site-a-1", "site-b-1") },
            ["phases"] = new JsonArray(new JsonObject { ["percent"] = 100 }),
            ["gates"] = new JsonObject { ["quality"] = new JsonObject { ["enabled"] = false } },
        }))
        {
            Assert.Equal(HttpStatusCode.Created, rollout.StatusCode);
        }

        JsonNode? report = null;
        await Wait.ForAsync(async () =>
        {
            using var response = await _fleet.Get("/api/drift?model=vibration-classifier&version=1&by=tag:site");
            report = JsonNode.Parse(await response.Content.ReadAsStringAsync());
            return report?["alerts"]?.AsArray().Count > 0 && Judged(report).Count >= 2 ? "" : null;
        }, Patience, () => $"{report?.ToJsonString()[..Math.Min(4000, report.ToJsonString().Length)]}\n{healthy.Output}");

        var alerts = report!["alerts"]!.AsArray();
        Assert.All(alerts, a => Assert.Equal("b", a!["segment"]!.GetValue<string>()));
        Assert.Contains(alerts, a => a!["windows"]!.GetValue<int>() >= 2);
        // In every window both devices sent, with enough values (the first may have few: the update landed in it),
        // site a's inputs sit on the baseline and site b's do not.
        foreach (var window in Judged(report))
        {
            var cells = window!["cells"]!.AsArray();
            Assert.All(cells.Where(c => c!["segment"]!.GetValue<string>() == "a"), c => Assert.True(c!["psi"]!.GetValue<double>() < 0.25, c.ToJsonString()));
            Assert.Contains(cells, c => c!["segment"]!.GetValue<string>() == "b" && c["level"]!.GetValue<string>() == "alert");
            Assert.Equal(12, cells.Count(c => c!["segment"]!.GetValue<string>() == "*")); // 8 inputs, the confidence and 3 class probabilities, fleet-wide
        }
        Assert.Equal(["rms", "peak", "crest_factor", "kurtosis", "low_band_energy", "mid_band_energy", "high_band_energy", "zero_crossing_rate", "confidence", "p_normal", "p_imbalance", "p_bearing-wear"],
            report["features"]!.AsArray().Select(f => f!["name"]!.GetValue<string>()));
        // The AOT agent read the drift spec from the signed manifest.
        Assert.Contains("Model vibration-classifier v1 is active", healthy.Output, StringComparison.Ordinal);

        // The leader's check opened alerts for site b only, told the webhook (signed) and the command, and an operator acknowledges one.
        JsonArray? active = null;
        await Wait.ForAsync(async () => (active = JsonNode.Parse(await (await _fleet.Get("/api/drift/alerts")).Content.ReadAsStringAsync())!.AsArray()).Count > 0 ? "" : null,
            Patience, () => _fleet.Output[^Math.Min(3000, _fleet.Output.Length)..]);
        Assert.All(active!, a => Assert.Equal(("b", "open"), (a!["segment"]!.GetValue<string>(), a["state"]!.GetValue<string>())));
        (string Body, string? Signature)[] received = [];
        await Wait.ForAsync(() =>
        {
            lock (_received)
                received = [.. _received];
            // The command's shell creates the file before it writes: wait for what it writes.
            return Task.FromResult(received.Length > 0 && File.Exists(P("alerts.jsonl")) && File.ReadAllText(P("alerts.jsonl")).Contains("drift.alert.opened", StringComparison.Ordinal) ? "" : null);
        }, Patience, () => "no webhook or command call");
        var secret = "webhook secret"u8.ToArray();
        Assert.All(received, r => Assert.Equal("sha256=" + Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData(secret, System.Text.Encoding.UTF8.GetBytes(r.Body))), r.Signature));
        Assert.Contains(received, r => r.Body.Contains("\"event\":\"drift.alert.opened\"", StringComparison.Ordinal) && r.Body.Contains("\"segment\":\"b\"", StringComparison.Ordinal));
        Assert.Contains("drift.alert.opened", File.ReadAllText(P("alerts.jsonl")), StringComparison.Ordinal);
        var alertId = active![0]!["id"]!.GetValue<string>();
        using (var ack = await _fleet.Send(HttpMethod.Post, $"/api/drift/alerts/{alertId}/ack"))
            Assert.Equal(HttpStatusCode.OK, ack.StatusCode);
        using (var again = await _fleet.Send(HttpMethod.Post, $"/api/drift/alerts/{alertId}/ack"))
            Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        using (var nope = await _fleet.Send(HttpMethod.Post, "/api/drift/alerts/nope/ack"))
            Assert.Equal(HttpStatusCode.NotFound, nope.StatusCode);
        Assert.Contains("drift.alert.acknowledge", await (await _fleet.Get($"/api/audit?target={alertId}")).Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // The console's drift page shows the same: the alert for site b, PSI per feature and segment.
        var password = "drift viewer password";
        using (var create = ChildProcess.Start("cli", "dotnet", [Repo.CliDll, "users", "create", "--username", "dora", "--role", "viewer", "--fleet", _fleet.Url],
            environment: new Dictionary<string, string> { ["EDGEFLEET_API_KEY"] = _fleet.AdminKey }, stdin: password))
        {
            Assert.Equal(0, create.WaitForExit(TimeSpan.FromSeconds(60)));
        }
        using var console = await ConsoleSession.StartAsync(_fleet, "dora", password);
        var page = await console.GetStringAsync("/console/drift?version=vibration-classifier%401&by=tag%3Asite&hours=1");
        Assert.Contains("<table id=\"active-alerts\">", page, StringComparison.Ordinal);
        Assert.Contains("acknowledged by key:", page, StringComparison.Ordinal);
        Assert.Contains("<table id=\"alerts\">", page, StringComparison.Ordinal);
        Assert.Contains("<th class=\"num\">b</th>", page, StringComparison.Ordinal);
        Assert.Contains("aria-label=\"PSI of rms\"", page, StringComparison.Ordinal);
        var artifacts = Path.Combine(Repo.Root, "artifacts", "console-screenshots");
        Directory.CreateDirectory(artifacts);
        File.WriteAllText(Path.Combine(artifacts, "drift.html"), page); // the page as served (self-contained: inline CSS and SVG)

        // Bad queries say why.
        using var noModel = await _fleet.Get("/api/drift");
        Assert.Equal(HttpStatusCode.BadRequest, noModel.StatusCode);
        using var unknown = await _fleet.Get("/api/drift?model=vibration-classifier&version=9");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        using var badSegment = await _fleet.Get("/api/drift?model=vibration-classifier&version=1&by=colour");
        Assert.Equal(HttpStatusCode.BadRequest, badSegment.StatusCode);
    }

    /// <summary>Windows with both sites' sketches and enough values in every cell to be judged.</summary>
    private static List<JsonNode> Judged(JsonNode report) =>
        [.. report["windows"]!.AsArray().OfType<JsonNode>().Where(w => w["devices"]!.GetValue<int>() == 2
            && w["cells"]!.AsArray().All(c => c!["level"]!.GetValue<string>() is not ("few" or "empty")))];

    public void Dispose()
    {
        _fleet.Dispose();
        _hook.Close();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
