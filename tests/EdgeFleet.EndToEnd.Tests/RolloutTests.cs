using System.Net;
using System.Text.Json.Nodes;
using EdgeFleet.Cli.Sim;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Staged rollouts driven by the fleet service against simulated devices (real enrollment, MQTT, OTA reports):
/// the fleet signs with its own key directory, moves devices phase by phase, judges the install gate, pauses or
/// rolls back, and takes operator actions; a restarted fleet carries on.
/// </summary>
[Collection("processes")]
public sealed class RolloutTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-rollout-").FullName;
    private Fleet _fleet;

    public RolloutTests()
    {
        Cli(0, null, "keys", "init", "--dir", P("keys"));
        _fleet = StartFleet();
        try
        {
            // The registry: v1 (what the devices run) and v2, both approved.
            Cli(0, null, "model", "demo", "--out", P("v1.onnx"), "--seed", "42");
            Cli(0, null, "model", "demo", "--out", P("v2.onnx"), "--seed", "43");
            Cli(0, null, "model", "samples", "--kind", "demo", "--count", "20", "--out", P("samples"));
            File.WriteAllText(P("card.json"), """{"owner": "vibration-ml", "intendedUse": "pump vibration", "labels": ["normal", "imbalance", "bearing-wear"]}""");
            Cli(0, _fleet, "model", "register", "--id", "vibration-classifier");
            foreach (var v in (string[])["v1", "v2"])
            {
                Cli(0, null, "model", "validate", "--reference", P($"{v}.onnx"), "--candidate", P($"{v}.onnx"), "--data", P("samples"), "--max-latency-ratio", "100", "--report-out", P($"{v}-report.json"));
                Cli(0, _fleet, "model", "push", "--model-id", "vibration-classifier", "--card", P("card.json"), "--fp32", P($"{v}.onnx"), "--report", P($"{v}-report.json"));
            }
            Cli(0, _fleet, "model", "approve", "--model-id", "vibration-classifier", "--model-version", "1", "--reason", "in the field");
            Cli(0, _fleet, "model", "approve", "--model-id", "vibration-classifier", "--model-version", "2", "--reason", "validated");
        }
        catch
        {
            _fleet.Dispose(); // xunit does not dispose a test class whose constructor threw
            throw;
        }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private Fleet StartFleet(Fleet? reuse = null) => new(P("fleet"), reuse: reuse, extraArgs: ["--Fleet:Signing:KeyDirectory", P("keys"), "--Fleet:RolloutTickSeconds", "0.25"]);

    private static string Cli(int expectedExit, Fleet? fleet, params string[] args) => FleetCli.Run(expectedExit, fleet, null, args);

    private async Task<SimulatedFleet> DevicesAsync(int count, double failureRate = 0, double rate = 0, IReadOnlyDictionary<long, SimModelBehaviour>? behaviours = null)
    {
        using var api = _fleet.AdminClient();
        var sim = await SimulatedFleet.EnrollAsync(api, new SimOptions
        {
            Devices = count,
            Rate = rate,
            BatchRecords = 10,
            Behaviours = behaviours ?? new Dictionary<long, SimModelBehaviour>(),
            Prefix = "r",
            OtaFailureRate = failureRate,
            FailingVersions = new HashSet<long> { 2 }, // v2 does not suit some devices; what it rolls back to does
            SharedKeepAlive = true,
            InitialModel = new ModelRef { Name = "vibration-classifier", Version = "1" },
        }, CancellationToken.None);
        await sim.ConnectAsync(CancellationToken.None);
        await Wait.ForAsync(async () => (await _fleet.Devices()).Count >= count ? "" : null, Patience, () => "devices did not register");
        return sim;
    }

    private async Task<JsonNode> CreateAsync(JsonObject request)
    {
        using var response = await _fleet.Send(HttpMethod.Post, "/api/rollouts", request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, text);
        return JsonNode.Parse(text)!;
    }

    private static JsonObject Rollout(string id, long version, JsonArray phases, double maxFailureRate = 0.05, string onFailure = "pause") => new()
    {
        ["id"] = id,
        ["modelId"] = "vibration-classifier",
        ["version"] = version,
        ["target"] = new JsonObject { ["selector"] = "simulated=true" },
        ["phases"] = phases,
        ["gates"] = new JsonObject { ["maxFailureRate"] = maxFailureRate },
        ["onGateFailure"] = onFailure,
    };

    private static JsonObject Phase(double percent, double soak = 0.5, int minReporting = 1, bool shadow = false) =>
        new() { ["percent"] = percent, ["soakSeconds"] = soak, ["minReporting"] = minReporting, ["shadow"] = shadow };

    /// <summary>Stops the simulated devices' traffic and waits for it to end.</summary>
    private static async Task StopAsync(CancellationTokenSource stop, Task traffic)
    {
        await stop.CancelAsync();
        try
        {
            await traffic;
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task<JsonNode> StatusAsync(string id) => JsonNode.Parse(await (await _fleet.Get($"/api/rollouts/{id}")).Content.ReadAsStringAsync())!;

    private async Task<JsonNode> UntilAsync(string id, Func<JsonNode, bool> condition)
    {
        JsonNode? last = null;
        await Wait.ForAsync(async () => condition(last = await StatusAsync(id)) ? "" : null, Patience, () => $"rollout {id}: {last?.ToJsonString()[..Math.Min(3000, last.ToJsonString().Length)]}\n--- fleet:\n{_fleet.Output[^Math.Min(4000, _fleet.Output.Length)..]}");
        return last!;
    }

    /// <summary>The must-show: 1,000 devices through four phases, every device ending on the new version.</summary>
    [Fact]
    public async Task A_good_version_reaches_1000_devices_through_four_phases()
    {
        await using var sim = await DevicesAsync(1000);
        await CreateAsync(Rollout("good", 2, [Phase(1, minReporting: 5), Phase(10, minReporting: 50), Phase(50), Phase(100)]));
        await UntilAsync("good", s => s["state"]!.GetValue<string>() == "completed");
        // The last phase completes on the devices that reported; the rest are followed until they do.
        var done = await UntilAsync("good", s => s["tally"]!["installed"]!.GetValue<int>() == 1000);

        Assert.Equal(1000, done["eligible"]!.GetValue<int>());
        Assert.Equal(1000, done["tally"]!["installed"]!.GetValue<int>());
        Assert.Equal(0, done["tally"]!["failed"]!.GetValue<int>());
        // Cumulative phase sizes 10, 100, 500, 1000: each phase added the devices ranked next.
        Assert.Equal([10, 90, 400, 500], done["phases"]!.AsArray().Select(p => p!["assigned"]!.GetValue<int>()));
        Assert.Equal(["phase-started", "phase-started", "phase-started", "completed"], done["events"]!.AsArray().Select(e => e!["action"]!.GetValue<string>()));
        // Every device's own record says it runs v2.
        var devices = await _fleet.Devices();
        Assert.Equal(1000, devices.Count(d => d!["device"]?["activeModel"]?["version"]?.GetValue<string>() == "2"));
        // The order is the rollout's hash order: the first phase's devices are the 10 lowest ranks.
        var firstPhase = done["devices"]!.AsArray().Where(d => d!["phase"]!.GetValue<int>() == 0).Select(d => d!["id"]!.GetValue<string>()).Order().ToList();
        static ulong Rank(string id) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(
            System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("good\n" + id)));
        var expected = sim.Devices.Select(d => d.Id).OrderBy(Rank).Take(10).Order().ToList();
        Assert.Equal(expected, firstPhase);
    }

    /// <summary>
    /// Real agents in a rollout: the NativeAOT agent checks the fleet's signature against its pinned root, runs
    /// the health check the fleet computed, and installs the version; the rollout counts it with the simulated devices.
    /// </summary>
    [Fact]
    public async Task Real_agents_verify_and_install_a_release_signed_by_the_fleet()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        await using var sim = await DevicesAsync(30);
        var ota = new JsonObject { ["rootPath"] = P("keys/root.json"), ["fleetUrl"] = _fleet.Url, ["probationMinutes"] = 5 };
        using var agent1 = new Agent(P("agents"), "real-1", _fleet, P("v1.onnx"), "normal", aot: true, ota: ota.DeepClone().AsObject());
        using var agent2 = new Agent(P("agents"), "real-2", _fleet, P("v1.onnx"), "imbalance", aot: false, ota: ota.DeepClone().AsObject());
        await Wait.ForAsync(async () => (await _fleet.Devices()).Count >= 32 ? "" : null, Patience, () => agent1.Output);
        var request = Rollout("real", 2, [Phase(50, minReporting: 5), Phase(100)]);
        request["target"] = new JsonObject { ["devices"] = new JsonArray([.. sim.Devices.Select(d => (JsonNode)d.Id), "real-1", "real-2"]) };
        await CreateAsync(request);
        await UntilAsync("real", s => s["state"]!.GetValue<string>() == "completed" && s["tally"]!["installed"]!.GetValue<int>() == 32);
        foreach (var id in (string[])["real-1", "real-2"])
        {
            var device = await _fleet.Device(id);
            Assert.Equal("2", device!["device"]!["activeModel"]!["version"]!.GetValue<string>());
            Assert.Equal("real", device["device"]!["lastOta"]!["rolloutId"]!.GetValue<string>());
        }
        Assert.Contains("Model vibration-classifier v2 is active", agent1.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_version_that_fails_on_30_percent_of_devices_pauses_in_the_canary_phase_and_an_operator_rolls_it_back()
    {
        await using var sim = await DevicesAsync(200, failureRate: 0.3);
        await CreateAsync(Rollout("canary", 2, [Phase(10, minReporting: 20), Phase(50), Phase(100)], maxFailureRate: 0.1));
        var paused = await UntilAsync("canary", s => s["state"]!.GetValue<string>() == "paused");
        Assert.Equal(1, paused["phase"]!.GetValue<int>());
        Assert.Equal(20, paused["tally"]!["assigned"]!.GetValue<int>()); // nobody beyond the canary was moved
        var gate = paused["events"]!.AsArray().Single(e => e!["action"]!.GetValue<string>() == "gate-failed");
        Assert.Contains("install gate", gate!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        await Task.Delay(1000);
        Assert.Equal(20, (await StatusAsync("canary"))["tally"]!["assigned"]!.GetValue<int>()); // still paused

        // Refusals say why; the rollback needs a reason.
        using (var noReason = await _fleet.Send(HttpMethod.Post, "/api/rollouts/canary/rollback", new JsonObject()))
            Assert.Equal(HttpStatusCode.BadRequest, noReason.StatusCode);
        using (var resumeRunning = await _fleet.Send(HttpMethod.Post, "/api/rollouts/canary/promote", new JsonObject { ["reason"] = "x" }))
            Assert.Equal(HttpStatusCode.OK, resumeRunning.StatusCode); // a paused rollout may be promoted by hand
        Assert.Contains("rolled-back", Cli(0, _fleet, "rollout", "rollback", "--id", "canary", "--reason", "30 % health-check failures"), StringComparison.Ordinal);
        // The canary's devices that installed v2 go back to v1's content, released again as v3.
        var back = await UntilAsync("canary", s => s["devices"]!.AsArray().All(d => d!["status"]!.GetValue<string>() is "reverted" or "failed"));
        Assert.Equal(3, back["reverts"]!["vibration-classifier@1"]!.GetValue<long>());
        var v3 = JsonNode.Parse(Cli(0, _fleet, "model", "show", "--model-id", "vibration-classifier", "--model-version", "3", "--json"))!;
        Assert.Equal("approved", v3["state"]!.GetValue<string>());
        Assert.Contains("released again as v3 to roll back rollout canary", v3["history"]!.AsArray()[^1]!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        var audit = Cli(0, _fleet, "audit", "--target", "canary", "--json");
        Assert.Contains("rollout.rollback", audit, StringComparison.Ordinal);
        Assert.Contains("rollout.create", audit, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_gate_can_roll_back_by_itself_and_an_operator_abort_stops_a_rollout_mid_phase()
    {
        await using var sim = await DevicesAsync(100, failureRate: 0.3);
        await CreateAsync(Rollout("auto", 2, [Phase(20, minReporting: 20), Phase(100)], maxFailureRate: 0.1, onFailure: "rollback"));
        var rolledBack = await UntilAsync("auto", s => s["state"]!.GetValue<string>() == "rolled-back");
        Assert.Equal(["gate-failed", "rolled-back"], rolledBack["events"]!.AsArray().Select(e => e!["action"]!.GetValue<string>()));
        Assert.Equal("rollout-engine", rolledBack["events"]!.AsArray()[^1]!["by"]!.GetValue<string>());

        // A second rollout, aborted in its first phase (a long soak keeps it there): no device beyond it moves.
        await CreateAsync(Rollout("stopped", 2, [Phase(10, soak: 3600), Phase(100)]));
        await UntilAsync("stopped", s => s["tally"]!["assigned"]!.GetValue<int>() == 10);
        Assert.Contains("aborted", Cli(0, _fleet, "rollout", "abort", "--id", "stopped", "--reason", "wrong model picked"), StringComparison.Ordinal);
        await Task.Delay(1000);
        var aborted = await StatusAsync("stopped");
        Assert.Equal("aborted", aborted["state"]!.GetValue<string>());
        Assert.Equal(10, aborted["tally"]!["assigned"]!.GetValue<int>());
        using var resume = await _fleet.Send(HttpMethod.Post, "/api/rollouts/stopped/resume", new JsonObject());
        Assert.Equal(HttpStatusCode.Conflict, resume.StatusCode);
    }

    /// <summary>
    /// A version that installs everywhere but is slower, predicts differently, or keeps failing over to the version
    /// it replaced, is stopped by the quality gates
    /// in its first phase (its devices against those still on v1) and rolled back; one that behaves like v1 goes on.
    /// </summary>
    [Theory]
    [InlineData("latency", "quality gate: p95 latency")]
    [InlineData("outputs", "quality gate: the predicted-class distribution shifted")]
    [InlineData("fallback", "quality gate: the fallback model answered")]
    [InlineData("same", null)]
    public async Task A_latency_regression_or_an_output_shift_is_stopped_by_a_quality_gate_and_rolled_back(string change, string? failure)
    {
        var v2 = change switch
        {
            "latency" => new SimModelBehaviour(LatencyFactor: 3),
            "outputs" => new SimModelBehaviour(Labels: ["bearing-wear", "bearing-wear", "bearing-wear", "normal"]),
            "fallback" => new SimModelBehaviour(FallbackShare: 0.25),
            _ => SimModelBehaviour.Default,
        };
        await using var sim = await DevicesAsync(50, rate: 20, behaviours: new Dictionary<long, SimModelBehaviour> { [2] = v2 });
        using var stop = new CancellationTokenSource();
        var traffic = sim.RunAsync(TimeSpan.FromMinutes(5), stop.Token);
        var request = Rollout("quality", 2, [Phase(20, soak: 4, minReporting: 10), Phase(100)], onFailure: "rollback");
        request["gates"]!["quality"] = new JsonObject { ["minSamples"] = 300 };
        await CreateAsync(request);
        var end = await UntilAsync("quality", s => s["state"]!.GetValue<string>() is "rolled-back" or "completed");
        await StopAsync(stop, traffic);
        var events = end["events"]!.AsArray();
        if (failure is null)
        {
            Assert.Equal("completed", end["state"]!.GetValue<string>());
            Assert.Contains("quality: p95", events.First(e => e!["action"]!.GetValue<string>() == "phase-started")!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
            return;
        }
        Assert.True(end["state"]!.GetValue<string>() == "rolled-back", events.ToJsonString());
        Assert.Equal(1, end["phase"]!.GetValue<int>());
        Assert.Equal(10, end["tally"]!["assigned"]!.GetValue<int>());
        Assert.StartsWith(failure, events.Single(e => e!["action"]!.GetValue<string>() == "gate-failed")!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    /// <summary>
    /// Shadow mode: the first phase's devices run v2 in shadow and keep serving v1; its gates judge the shadow
    /// against the served model on the same inputs. A v2 that predicts differently or runs slower is stopped there
    /// and rolled back (the shadows stop; no device ever served it); one that agrees goes on, and the next phase
    /// makes the shadow devices serve it.
    /// </summary>
    [Theory]
    [InlineData("same", null)]
    [InlineData("outputs", "quality gate (shadow): the top class agreed with the served model's on 0.0 %")]
    [InlineData("latency", "quality gate (shadow): p95 latency")]
    public async Task A_shadow_phase_judges_the_new_version_on_the_same_inputs_before_any_device_serves_it(string change, string? failure)
    {
        var v2 = change switch
        {
            "latency" => new SimModelBehaviour(LatencyFactor: 3),
            "outputs" => new SimModelBehaviour(Labels: ["bearing-wear", "bearing-wear", "bearing-wear", "normal"]),
            _ => SimModelBehaviour.Default,
        };
        await using var sim = await DevicesAsync(50, rate: 20, behaviours: new Dictionary<long, SimModelBehaviour> { [2] = v2 });
        using var stop = new CancellationTokenSource();
        var traffic = sim.RunAsync(TimeSpan.FromMinutes(5), stop.Token);
        var request = Rollout("shadow", 2, [Phase(20, soak: 2, minReporting: 10, shadow: true), Phase(100)], onFailure: "rollback");
        request["gates"]!["quality"] = new JsonObject { ["minSamples"] = 300 };
        await CreateAsync(request);
        // The shadow phase: ten devices run v2 in shadow while every device still serves v1.
        var shadowing = await UntilAsync("shadow", s => s["phases"]![0]!["installed"]!.GetValue<int>() == 10 || s["state"]!.GetValue<string>() != "running");
        Assert.True(shadowing["phases"]![0]!["shadow"]!.GetValue<bool>());
        Assert.Equal(10, sim.Devices.Count(d => d.ShadowModel?.Version == "2"));
        Assert.All(sim.Devices, d => Assert.Equal("1", d.ActiveModel.Version));

        var end = await UntilAsync("shadow", s => s["state"]!.GetValue<string>() is "rolled-back" or "completed");
        await StopAsync(stop, traffic);
        var events = end["events"]!.AsArray();
        if (failure is null)
        {
            Assert.Equal("completed", end["state"]!.GetValue<string>());
            Assert.Contains("shadow agreed with the served model on 100.0 %", events.First(e => e!["action"]!.GetValue<string>() == "phase-started")!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
            var done = await UntilAsync("shadow", s => s["tally"]!["installed"]!.GetValue<int>() == 50);
            // Phase 2 served v2 on 50: the 10 that ran it in shadow and 40 more.
            Assert.Equal([10, 50], done["phases"]!.AsArray().Select(p => p!["assigned"]!.GetValue<int>()));
            Assert.All(sim.Devices, d => Assert.Equal(("2", null), (d.ActiveModel.Version, d.ShadowModel)));
            return;
        }
        Assert.True(end["state"]!.GetValue<string>() == "rolled-back", events.ToJsonString());
        Assert.Equal(1, end["phase"]!.GetValue<int>());
        Assert.StartsWith(failure, events.Single(e => e!["action"]!.GetValue<string>() == "gate-failed")!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        // Nothing to re-release: no device served v2. The shadows stop.
        Assert.Empty(end["reverts"]!.AsObject());
        Assert.All(end["devices"]!.AsArray(), d => Assert.Equal("reverted", d!["status"]!.GetValue<string>()));
        await Wait.ForAsync(() => Task.FromResult(sim.Devices.All(d => d.ShadowModel is null) ? "" : null), Patience, () => "shadows still run");
        Assert.All(sim.Devices, d => Assert.Equal("1", d.ActiveModel.Version));
        var records = await _fleet.Devices();
        Assert.All(records, d => Assert.Equal("1", d!["device"]!["activeModel"]!["version"]!.GetValue<string>()));
    }

    /// <summary>
    /// The NativeAOT agent in a shadow phase: it verifies and health-checks v2 as an update, runs it beside v1 on
    /// the sensor's inputs while serving v1, sends its comparison windows, and serves v2 when the next phase says so.
    /// </summary>
    [Fact]
    public async Task A_real_agent_runs_the_new_version_in_shadow_then_serves_it()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        var ota = new JsonObject { ["rootPath"] = P("keys/root.json"), ["fleetUrl"] = _fleet.Url, ["probationMinutes"] = 5 };
        using var agent = new Agent(P("agents"), "shadow-1", _fleet, P("v1.onnx"), "normal", aot: true, ota: ota,
            configure: c => c["telemetry"]!["latencyWindowSeconds"] = 1);
        await Wait.ForAsync(async () => await _fleet.Device("shadow-1") is not null ? "" : null, Patience, () => agent.Output);
        var request = Rollout("shadow-real", 2, [Phase(100, soak: 3, shadow: true), Phase(100)]);
        request["target"] = new JsonObject { ["devices"] = new JsonArray("shadow-1") };
        // Latency on a shared test machine is noise at these sizes (tens of µs): this test is about the agent's part.
        request["gates"]!["quality"] = new JsonObject { ["minSamples"] = 60, ["maxP95LatencyRatio"] = 10 };
        await CreateAsync(request);

        JsonNode? record = null;
        await Wait.ForAsync(async () => (record = (await _fleet.Device("shadow-1"))?["device"])?["shadowModel"]?["version"]?.GetValue<string>() == "2" ? "" : null,
            Patience, () => $"{record?.ToJsonString()}\n{agent.Output}");
        Assert.Equal("1.0.0", record!["activeModel"]!["version"]!.GetValue<string>()); // serving its factory model, v2 in shadow
        Assert.Contains("Model vibration-classifier v2 runs in shadow", agent.Output, StringComparison.Ordinal);

        var end = await UntilAsync("shadow-real", s => s["state"]!.GetValue<string>() is "completed" or "rolled-back" or "paused" && s["tally"]!["installed"]!.GetValue<int>() == 1);
        Assert.Equal("completed", end["state"]!.GetValue<string>());
        var judged = end["events"]!.AsArray().First(e => e!["action"]!.GetValue<string>() == "phase-started")!["reason"]!.GetValue<string>();
        Assert.Contains("shadow agreed with the served model on", judged, StringComparison.Ordinal);
        await Wait.ForAsync(async () => (record = (await _fleet.Device("shadow-1"))?["device"]) is { } r && r["activeModel"]?["version"]?.GetValue<string>() == "2" && r["shadowModel"] is null ? "" : null,
            Patience, () => $"{record?.ToJsonString()}\n{agent.Output}");
        Assert.Contains("Shadow model vibration-classifier 2 stopped", agent.Output, StringComparison.Ordinal);
        Assert.Contains("Model vibration-classifier v2 is active", agent.Output, StringComparison.Ordinal);
    }

    /// <summary>Devices offline during the rollout: it proceeds on the others, and they catch up when they return.</summary>
    [Fact]
    public async Task A_rollout_proceeds_without_offline_devices_and_they_catch_up_when_they_return()
    {
        await using var sim = await DevicesAsync(60);
        var offline = sim.Devices.Take(6).ToList();
        foreach (var device in offline)
            await device.DisconnectAsync();
        await CreateAsync(Rollout("offline", 2, [Phase(50, minReporting: 20), Phase(100, minReporting: 40)]));
        // It completes once enough devices reported; the online ones all install, the offline ones stay pending.
        await UntilAsync("offline", s => s["state"]!.GetValue<string>() == "completed");
        var completed = await UntilAsync("offline", s => s["tally"]!["installed"]!.GetValue<int>() == 54);
        Assert.Equal(60, completed["tally"]!["assigned"]!.GetValue<int>());
        Assert.Equal(6, completed["tally"]!["pending"]!.GetValue<int>());
        Assert.All(completed["devices"]!.AsArray().Where(d => d!["status"]!.GetValue<string>() == "pending"),
            d => Assert.Contains(d!["id"]!.GetValue<string>(), offline.Select(o => o.Id)));

        // Back online: each says hello, gets its desired state again, installs; the rollout records it.
        var factory = new MQTTnet.MqttClientFactory();
        foreach (var device in offline)
            await device.ConnectAsync(factory, CancellationToken.None);
        var caughtUp = await UntilAsync("offline", s => s["tally"]!["installed"]!.GetValue<int>() == 60);
        Assert.Equal(0, caughtUp["tally"]!["pending"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_restarted_fleet_resumes_the_rollout_where_it_was_and_bad_requests_are_refused()
    {
        await using var sim = await DevicesAsync(100);
        await CreateAsync(Rollout("resumed", 2, [Phase(10, minReporting: 10), Phase(30, soak: 4), Phase(100)]));
        await UntilAsync("resumed", s => s["phase"]!.GetValue<int>() == 2 && s["tally"]!["installed"]!.GetValue<int>() == 30);
        _fleet.Kill9();
        var restarted = StartFleet(reuse: _fleet);
        _fleet.Dispose();
        _fleet = restarted;
        await sim.ConnectAsync(CancellationToken.None);
        await UntilAsync("resumed", s => s["state"]!.GetValue<string>() == "completed");
        var done = await UntilAsync("resumed", s => s["tally"]!["installed"]!.GetValue<int>() == 100);
        Assert.Equal(100, done["tally"]!["installed"]!.GetValue<int>());
        Assert.Equal([10, 20, 70], done["phases"]!.AsArray().Select(p => p!["assigned"]!.GetValue<int>()));

        // Refusals: a draft or unknown version, bad phases, a viewer.
        Cli(0, null, "model", "demo", "--out", P("v3.onnx"), "--seed", "44");
        Cli(0, _fleet, "model", "push", "--model-id", "vibration-classifier", "--card", P("card.json"), "--fp32", P("v3.onnx"));
        foreach (var (request, status, error) in new (JsonObject, HttpStatusCode, string)[]
        {
            (Rollout("draft", 3, [Phase(100)]), HttpStatusCode.Conflict, "NotApproved"),
            (Rollout("nothing", 9, [Phase(100)]), HttpStatusCode.NotFound, "UnknownModelVersion"),
            (Rollout("bad-phases", 2, [Phase(10)]), HttpStatusCode.BadRequest, "InvalidRollout"),
            (Rollout("Bad Id", 2, [Phase(100)]), HttpStatusCode.BadRequest, "InvalidRolloutId"),
        })
        {
            using var response = await _fleet.Send(HttpMethod.Post, "/api/rollouts", request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == status, text);
            Assert.Equal(error, JsonNode.Parse(text)!["error"]!.GetValue<string>());
        }
        var viewer = JsonNode.Parse(Cli(0, _fleet, "api-keys", "create", "--name", "watcher", "--role", "viewer", "--json"))!["key"]!.GetValue<string>();
        using var refused = await _fleet.Send(HttpMethod.Post, "/api/rollouts", Rollout("viewer", 2, [Phase(100)]), apiKey: viewer);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        using var seen = await _fleet.Send(HttpMethod.Get, "/api/rollouts", apiKey: viewer);
        Assert.Equal(HttpStatusCode.OK, seen.StatusCode);
    }

    public void Dispose()
    {
        _fleet.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
