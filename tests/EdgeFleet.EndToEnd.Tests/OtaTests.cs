using System.Security.Cryptography;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.TestServers;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using EdgeFleet.ModelTools.Signing;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>Keys, model files and signed manifests for the OTA scenarios, made with the real signing code.</summary>
public sealed class OtaFixture : IDisposable
{
    public OtaFixture()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-").FullName;
        Keys = new KeyStore(System.IO.Path.Combine(Directory, "keys"));
        Keys.Init(new KeyStore.Options(), DateTimeOffset.UtcNow);
        Factory = Write("factory.onnx", DemoModelTrainer.Train(seed: 42, perClass: 200, epochs: 20).OnnxBytes);
        Retrained = Write("retrained.onnx", DemoModelTrainer.Train(seed: 43, perClass: 200, epochs: 20).OnnxBytes);
        Fragile = Write("fragile.onnx", FragileModel());
        var data = DemoDataset.Generate(perClass: 1, seed: 7);
        Samples = data.Features.Select(f => new Dictionary<string, TensorValue> { ["features"] = new TensorValue { Shape = [1, 8], Data = f.Select(x => (double)x).ToArray() } }).ToList();
    }

    public string Directory { get; }

    public KeyStore Keys { get; }

    public string Factory { get; }

    public string Retrained { get; }

    /// <summary>Passes a health check on all-zero features, throws on real sensor features.</summary>
    public string Fragile { get; }

    public IReadOnlyList<Dictionary<string, TensorValue>> Samples { get; }

    public byte[] KeySet => File.ReadAllBytes(Keys.KeySetPath);

    public JsonObject AgentOta(Fleet fleet, int crashLoopRestarts = 3) => new()
    {
        ["rootPath"] = Keys.RootPath,
        ["fleetUrl"] = fleet.Url,
        ["maxDownloadAttempts"] = 3,
        ["crashLoopRestarts"] = crashLoopRestarts,
        ["probationMinutes"] = 5,
    };

    public ModelManifest Manifest(string modelPath, long version, IReadOnlyList<Dictionary<string, TensorValue>>? samples = null) =>
        ManifestBuilder.Build(new ManifestBuilder.Request
        {
            ModelPath = modelPath,
            ModelId = "vibration-classifier",
            Version = version,
            Profiles = ["x86-64-generic"],
            Samples = samples ?? Samples,
            LatencyBudgetMs = 500,
            RolloutId = $"test-{version}",
        }, Keys.CurrentKeySet(), DateTimeOffset.UtcNow);

    public byte[] Sign(ModelManifest manifest)
    {
        var signers = Keys.LoadSigners(null);
        try
        {
            return ManifestBuilder.Sign(manifest, signers);
        }
        finally
        {
            foreach (var k in signers)
                k.Dispose();
        }
    }

    private string Write(string name, byte[] bytes)
    {
        var path = System.IO.Path.Combine(Directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>probabilities = Softmax(Gather(table, Cast(ReduceMax(features) * 1000))): index 0 for zeros, out of range otherwise.</summary>
    private static byte[] FragileModel()
    {
        var axes = new AttributeProto { Name = "axes", Type = AttributeProto.Types.AttributeType.Ints };
        axes.Ints.Add(1);
        return new OnnxModelBuilder("fragile")
            .Input("features", null, 8)
            .Output("probabilities", null, 3)
            .Initializer("scale", [1000f], 1)
            .Initializer("table", [1f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 1f, 1f, 1f, 1f], 4, 3)
            .Node("ReduceMax", ["features"], ["m"], axes, OnnxModelBuilder.IntAttribute("keepdims", 0))
            .Node("Mul", ["m", "scale"], ["scaled"])
            .Node("Cast", ["scaled"], ["index"], OnnxModelBuilder.IntAttribute("to", 7))
            .Node("Gather", ["table", "index"], ["logits"], OnnxModelBuilder.IntAttribute("axis", 0))
            .Node("Softmax", ["logits"], ["probabilities"], OnnxModelBuilder.IntAttribute("axis", 1))
            .Metadata("edgefleet.labels", "normal,imbalance,bearing-wear")
            .ToBytes();
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}

/// <summary>Signed updates end to end: fleet service, artifact download, activation, refusal and rollback.</summary>
[Collection("processes")]
public class OtaTests(OtaFixture ota) : IClassFixture<OtaFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Installs_a_signed_update_refuses_tampered_and_unhealthy_ones_and_keeps_serving()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-e2e-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "ota-01", fleet, ota.Factory, "normal", ota: ota.AgentOta(fleet));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        await Wait.ForAsync(async () => ActiveVersion(await fleet.Device("ota-01")) == "1.0.0" ? "" : null, Patience, Explain);

        var bytes = await File.ReadAllBytesAsync(ota.Retrained);
        var sha = await fleet.UploadArtifact(bytes);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), sha);
        // The fleet serves ranges, which is what lets a device resume; only to devices and operators.
        using (var anonymous = new HttpClient())
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await anonymous.GetAsync(new Uri($"{fleet.Url}/api/artifacts/{sha}"))).StatusCode);
        using (var http = new HttpClient())
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"{fleet.Url}/api/artifacts/{sha}"))
        {
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fleet.AdminKey);
            request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(100, null);
            using var response = await http.SendAsync(request);
            Assert.Equal(System.Net.HttpStatusCode.PartialContent, response.StatusCode);
            Assert.Equal(bytes[100..], await response.Content.ReadAsByteArrayAsync());
            Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync(new Uri($"{fleet.Url}/api/artifacts/{new string('0', 64)}"))).StatusCode);
        }
        await fleet.SetDesired("ota-01", ota.Sign(ota.Manifest(ota.Retrained, 2)), ota.KeySet);
        await Wait.ForAsync(async () => await fleet.Device("ota-01") is { } d && ActiveVersion(d) == "2" && OtaState(d) == "committed"
            && d["device"]!["lastInference"]?["version"]?.GetValue<string>() == "2" ? "" : null, Patience, Explain);

        // Tampered: the body changed after signing.
        var tampered = JsonNode.Parse(ota.Sign(ota.Manifest(ota.Retrained, 3)))!;
        tampered["signed"]!["healthCheck"]!["tolerance"] = 1000;
        await fleet.SetDesired("ota-01", System.Text.Encoding.UTF8.GetBytes(tampered.ToJsonString()), ota.KeySet);
        await Wait.ForAsync(async () => OtaError(await fleet.Device("ota-01")) == "bad-signature" ? "" : null, Patience, Explain);

        // Signed, but its health check expects other outputs than the model gives.
        var wrong = ota.Manifest(ota.Retrained, 4);
        var sample = wrong.HealthCheck.Samples[0];
        var skewed = sample with { Expected = sample.Expected.ToDictionary(kv => kv.Key, kv => kv.Value with { Data = kv.Value.Data.Select(x => 1 - x).ToArray() }) };
        await fleet.SetDesired("ota-01", ota.Sign(wrong with { HealthCheck = wrong.HealthCheck with { Samples = [skewed] } }), ota.KeySet);
        await Wait.ForAsync(async () => OtaError(await fleet.Device("ota-01")) == "health-check-failed" ? "" : null, Patience, Explain);

        // Validly signed, but for another model (meant for other devices): a mix-and-match, refused.
        await fleet.SetDesired("ota-01", ota.Sign(ota.Manifest(ota.Retrained, 5) with { ModelId = "camera-detector" }), ota.KeySet);
        await Wait.ForAsync(async () => OtaError(await fleet.Device("ota-01")) == "wrong-model" ? "" : null, Patience, Explain);

        // Replay of the installed manifest's older sibling: a rollback, refused.
        await fleet.SetDesired("ota-01", ota.Sign(ota.Manifest(ota.Factory, 1)), ota.KeySet);
        await Wait.ForAsync(async () => OtaError(await fleet.Device("ota-01")) == "version-rollback" ? "" : null, Patience, Explain);

        // How each update ended also travels as a durable telemetry record, not only as a progress report.
        await Wait.ForAsync(async () =>
        {
            var outcomes = (await fleet.Telemetry("ota-01")).Where(r => r.Ota is not null).Select(r => (r.Ota!.Version, r.Ota.State)).ToList();
            return outcomes.Contains((2, EdgeFleet.Shared.Wire.OtaState.Committed)) && outcomes.Contains((4, EdgeFleet.Shared.Wire.OtaState.Rejected)) ? "" : null;
        }, Patience, Explain);

        var device = await fleet.Device("ota-01");
        Assert.Equal("2", ActiveVersion(device));
        Assert.False(agent.Exited, Explain());
        var modelDirs = System.IO.Directory.GetDirectories(Path.Combine(agent.StateDirectory, "models", "vibration-classifier"));
        Assert.Equal(["2"], modelDirs.Select(Path.GetFileName));
    }

    /// <summary>
    /// Deltas end to end: a retrained version arrives as a delta from the model the device runs; a delta that was
    /// damaged in the fleet's store, one made from another base, one made for another target and one from a base the
    /// device does not have each end with the whole artifact installed, the refusal reported with its code, and never
    /// a rebuilt file that is not the signed artifact.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_retrained_version_arrives_as_a_delta_and_every_bad_delta_falls_back_to_the_whole_artifact(bool aot)
    {
        Assert.True(!aot || File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64");
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-delta-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "delta-01", fleet, ota.Factory, "normal", aot: aot, ota: ota.AgentOta(fleet));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        await Wait.ForAsync(async () => ActiveVersion(await fleet.Device("delta-01")) == "1.0.0" ? "" : null, Patience, Explain);
        var factory = await File.ReadAllBytesAsync(ota.Factory);
        var versions = new Dictionary<long, byte[]> { [1] = factory };
        for (var seed = 2; seed <= 6; seed++)
            versions[seed] = EdgeFleet.ModelTools.Demo.DemoModelTrainer.Train(seed: 40 + seed, perClass: 200, epochs: 20).OnnxBytes;
        string Sha(byte[] b) => Convert.ToHexStringLower(SHA256.HashData(b));

        async Task Release(long version, byte[] deltaFrom, byte[] deltaTo, string? claimedBase = null, bool damage = false)
        {
            var path = Path.Combine(dir, $"v{version}.onnx");
            await File.WriteAllBytesAsync(path, versions[version]);
            await fleet.UploadArtifact(versions[version]);
            var delta = EdgeFleet.ModelTools.Onnx.ModelDeltas.Encode(deltaFrom, deltaTo)[0].Bytes;
            var deltaSha = await fleet.UploadArtifact(delta);
            if (damage)
            {
                // The fleet's stored copy changes after the manifest names it (a bad disk, or someone with access to it).
                var stored = Path.Combine(dir, "artifacts", deltaSha);
                var bytes = await File.ReadAllBytesAsync(stored);
                bytes[bytes.Length / 2] ^= 0x40;
                await File.WriteAllBytesAsync(stored, bytes);
            }
            var manifest = ota.Manifest(path, version);
            var artifact = manifest.Artifacts["x86-64-generic"];
            manifest.Artifacts["x86-64-generic"] = artifact with
            {
                Deltas = [new DeltaEntry { BaseSha256 = claimedBase ?? Sha(deltaFrom), Sha256 = deltaSha, Length = delta.Length, Url = $"/api/artifacts/{deltaSha}" }],
            };
            await fleet.SetDesired("delta-01", ota.Sign(manifest), ota.KeySet);
        }

        async Task Installed(long version)
        {
            await Wait.ForAsync(async () => await fleet.Device("delta-01") is { } d && ActiveVersion(d) == $"{version}" && OtaState(d) == "committed" ? d : null,
                Patience, Explain);
            var file = Path.Combine(agent.StateDirectory, "models", "vibration-classifier", $"{version}", "model.onnx");
            Assert.Equal(Sha(versions[version]), Sha(await File.ReadAllBytesAsync(file)));
        }

        // v2 from v1: the delta is used, and the bytes it saved are reported.
        await Release(2, versions[1], versions[2]);
        await Installed(2);
        var saved = (await fleet.Device("delta-01"))!["device"]!["lastOta"]!["bytesSaved"]!.GetValue<long>();
        Assert.True(saved > 0, $"bytesSaved {saved}");
        Assert.Contains("Rebuilt vibration-classifier v2 from a", agent.Output, StringComparison.Ordinal);

        // v3 from v2, but the stored delta was damaged after signing: its SHA-256 refuses it.
        await Release(3, versions[2], versions[3], damage: true);
        string Refusal(long version, string code) => $"update vibration-classifier v{version}: Downloading: {code}: delta refused";
        await Installed(3);
        // v4 with a delta made from another model but labelled with the device's: it rebuilds another file. (A delta
        // from a sibling version could rebuild the right file, as the parts it takes from its base are the ones all
        // versions share; the SHA-256 decides, not the label.)
        await Release(4, await File.ReadAllBytesAsync(ota.Fragile), versions[4], claimedBase: Sha(versions[3]));
        await Installed(4);
        // v5 with a delta from the right base made for another target.
        await Release(5, versions[4], versions[6], claimedBase: Sha(versions[4]));
        await Installed(5);
        // v6 with a delta from a base the device does not have: the whole artifact, nothing to refuse.
        await Release(6, versions[2], versions[6]);
        await Installed(6);
        Assert.True(fleet.Output.Contains(Refusal(3, "hash-mismatch"), StringComparison.Ordinal), Explain());
        Assert.True(fleet.Output.Contains(Refusal(4, "delta-mismatch"), StringComparison.Ordinal)
            || fleet.Output.Contains(Refusal(4, "delta-malformed"), StringComparison.Ordinal), Explain());
        Assert.True(fleet.Output.Contains(Refusal(5, "delta-mismatch"), StringComparison.Ordinal), Explain());
        Assert.DoesNotContain("update vibration-classifier v6: Downloading: delta", fleet.Output, StringComparison.Ordinal);
        Assert.False(agent.Exited, Explain());
    }

    [Fact]
    public async Task The_published_aot_agent_verifies_installs_and_refuses_updates()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-aot-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "ota-aot", fleet, ota.Factory, "normal", aot: true, ota: ota.AgentOta(fleet));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        await fleet.UploadArtifact(await File.ReadAllBytesAsync(ota.Retrained));
        await fleet.SetDesired("ota-aot", ota.Sign(ota.Manifest(ota.Retrained, 2)), ota.KeySet);
        await Wait.ForAsync(async () => await fleet.Device("ota-aot") is { } d && ActiveVersion(d) == "2" && OtaState(d) == "committed" ? "" : null, Patience, Explain);
        using var stranger = SigningKey.Generate();
        await fleet.SetDesired("ota-aot", ManifestBuilder.Sign(ota.Manifest(ota.Retrained, 3), [stranger]), ota.KeySet);
        await Wait.ForAsync(async () => OtaError(await fleet.Device("ota-aot")) == "unknown-key" ? "" : null, Patience, Explain);
        // Restarted, it serves v2 from its pointer and remembers the version floor (LiteDB state under AOT).
        var before = (await fleet.Device("ota-aot"))!["device"]!;
        var (restarts, records) = (before["restarts"]!.GetValue<int>(), before["telemetryRecords"]!.GetValue<long>());
        agent.Kill9();
        agent.Restart();
        await Wait.ForAsync(async () => await fleet.Device("ota-aot") is { } d && d["device"]!["restarts"]!.GetValue<int>() > restarts
            && d["device"]!["telemetryRecords"]!.GetValue<long>() > records + 10 ? "" : null, Patience, Explain);
        Assert.Equal("2", ActiveVersion(await fleet.Device("ota-aot")));
        Assert.Equal("2", (await fleet.Device("ota-aot"))!["device"]!["lastInference"]!["version"]!.GetValue<string>());
        var replay = ota.Sign(ota.Manifest(ota.Factory, 1));
        await fleet.SetDesired("ota-aot", replay, ota.KeySet);
        await Wait.ForAsync(async () => OtaError(await fleet.Device("ota-aot")) == "version-rollback" ? "" : null, Patience, Explain);
    }

    /// <summary>
    /// The published agent's local API while OTA replaces the model three times: two clients send requests back
    /// to back over the Unix socket, and none may fail; answers come from every version in turn.
    /// </summary>
    [Fact]
    public async Task The_aot_agent_serves_its_local_api_through_ota_swaps_without_a_failed_request()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-api-aot-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "api-aot", fleet, ota.Factory, "normal", aot: true, ota: ota.AgentOta(fleet));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        var socket = Path.Combine(agent.StateDirectory, "api.sock");
        using var http = UnixHttp.Client(socket);
        await Wait.ForAsync(async () =>
        {
            try
            {
                return File.Exists(socket) && (await http.GetAsync("/healthz")).IsSuccessStatusCode ? "" : null;
            }
            catch (HttpRequestException)
            {
                return null;
            }
        }, Patience, Explain);
        var models = JsonNode.Parse(await http.GetStringAsync("/v1/models"))!["models"]!.AsArray();
        Assert.Equal("vibration-classifier 1.0.0 active CPU", string.Join(" | ", models.Select(m => $"{m!["name"]} {m["version"]} {m["role"]} {m["executionProviders"]![0]}")));

        const string Request = """{"inputs": {"features": {"shape": [1, 8], "data": [0.8, 1.3, 1.6, 1.5, 0.6, 0.001, 0.001, 0.05]}}}""";
        using var stop = new CancellationTokenSource();
        var failures = new List<string>();
        var versions = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var clients = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            using var client = UnixHttp.Client(socket);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var response = await client.PostAsync("/v1/models/vibration-classifier/infer", new StringContent(Request, System.Text.Encoding.UTF8, "application/json"));
                    var text = await response.Content.ReadAsStringAsync();
                    if (!response.IsSuccessStatusCode)
                    {
                        lock (failures)
                            failures.Add($"{response.StatusCode}: {text}");
                        continue;
                    }
                    versions.AddOrUpdate(JsonNode.Parse(text)!["version"]!.GetValue<string>(), 1, (_, n) => n + 1);
                }
                catch (HttpRequestException e)
                {
                    lock (failures)
                        failures.Add(e.Message);
                }
            }
        })).ToArray();

        await fleet.UploadArtifact(await File.ReadAllBytesAsync(ota.Retrained));
        await fleet.UploadArtifact(await File.ReadAllBytesAsync(ota.Factory));
        foreach (var (version, model) in new[] { (2, ota.Retrained), (3, ota.Factory), (4, ota.Retrained) })
        {
            await fleet.SetDesired("api-aot", ota.Sign(ota.Manifest(model, version)), ota.KeySet);
            await Wait.ForAsync(async () => await fleet.Device("api-aot") is { } d && ActiveVersion(d) == $"{version}" && OtaState(d) == "committed" ? "" : null, Patience, Explain);
            await Wait.ForAsync(() => Task.FromResult(versions.ContainsKey($"{version}") ? "" : null), Patience, Explain);
        }
        stop.Cancel();
        await Task.WhenAll(clients);
        Assert.True(failures.Count == 0, $"{failures.Count} failed requests, first: {failures.FirstOrDefault()}");
        Assert.Equal(["1.0.0", "2", "3", "4"], versions.Keys.Order(StringComparer.Ordinal));

        var metrics = await http.GetStringAsync("/metrics");
        Assert.Matches("edgefleet_inference_requests_total\\{model=\"vibration-classifier\",version=\"4\",source=\"api\"\\} [1-9]", metrics);
        Assert.Matches("edgefleet_inference_requests_total\\{model=\"vibration-classifier\",version=\"4\",source=\"sensor\"\\} [1-9]", metrics);
        Assert.Contains("edgefleet_model_info{model=\"vibration-classifier\",version=\"3\",role=\"fallback\"", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_model_that_crash_loops_the_agent_is_rolled_back_by_itself()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-crash-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "ota-02", fleet, ota.Factory, "normal", ota: ota.AgentOta(fleet, crashLoopRestarts: 3));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        await fleet.UploadArtifact(await File.ReadAllBytesAsync(ota.Retrained));
        await fleet.SetDesired("ota-02", ota.Sign(ota.Manifest(ota.Retrained, 2)), ota.KeySet);
        await Wait.ForAsync(async () => ActiveVersion(await fleet.Device("ota-02")) == "2" ? "" : null, Patience, Explain);

        // Three restarts inside the probation window, as a model that segfaults the runtime would cause.
        var started = DateTime.UtcNow;
        for (var i = 0; i < 3; i++)
        {
            agent.Kill9();
            agent.Restart();
            await Task.Delay(TimeSpan.FromSeconds(1.5));
        }
        await Wait.ForAsync(async () => await fleet.Device("ota-02") is { } d && ActiveVersion(d) == "1.0.0" && OtaState(d) == "rolled-back" && OtaError(d) == "crash-loop" ? "" : null,
            TimeSpan.FromSeconds(30), Explain);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(40));

        // It stays rolled back: the desired v2 is not applied again after another restart.
        agent.Restart();
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.Equal("1.0.0", ActiveVersion(await fleet.Device("ota-02")));
    }

    [Fact]
    public async Task A_model_that_passes_its_health_check_but_fails_on_field_data_is_rolled_back_within_30_s()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-fragile-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "ota-03", fleet, ota.Factory, "imbalance", ota: ota.AgentOta(fleet));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        await Wait.ForAsync(async () => ActiveVersion(await fleet.Device("ota-03")) == "1.0.0" ? "" : null, Patience, Explain);
        await fleet.UploadArtifact(await File.ReadAllBytesAsync(ota.Fragile));
        var zeros = new List<Dictionary<string, TensorValue>> { new() { ["features"] = new TensorValue { Shape = [1, 8], Data = new double[8] } } };
        await fleet.SetDesired("ota-03", ota.Sign(ota.Manifest(ota.Fragile, 2, zeros)), ota.KeySet);
        await Wait.ForAsync(async () => OtaState(await fleet.Device("ota-03")) is "committed" or "rolled-back" ? "" : null, Patience, Explain);
        var committedAt = DateTime.UtcNow;
        await Wait.ForAsync(async () => await fleet.Device("ota-03") is { } d && OtaState(d) == "rolled-back" && OtaError(d) == "inference-failing" && ActiveVersion(d) == "1.0.0" ? "" : null,
            TimeSpan.FromSeconds(30), Explain);
        Assert.True(DateTime.UtcNow - committedAt < TimeSpan.FromSeconds(30));
        await Wait.ForAsync(async () => (await fleet.Device("ota-03"))?["device"]?["lastInference"]?["label"]?.GetValue<string>() == "imbalance" ? "" : null, Patience, Explain);
    }

    /// <summary>
    /// The kill -9 torture: each iteration asks for a new version and kills the agent at a random moment of
    /// the update. On disk the pointer always names a complete model; after restart the agent converges. Every
    /// release offers a delta from the version before it, so kills land in delta downloads and rebuilds too.
    /// EDGEFLEET_OTA_TORTURE sets the iteration count (default 6; the documented long run uses 200).
    /// </summary>
    [Fact]
    public async Task Agent_killed_at_random_moments_of_updates_always_serves_old_or_new_and_converges()
    {
        var iterations = int.TryParse(Environment.GetEnvironmentVariable("EDGEFLEET_OTA_TORTURE"), out var n) ? n : 6;
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-ota-torture-").FullName;
        using var fleet = new Fleet(dir);
        // Crash-loop detection off: this test kills the agent on purpose.
        using var agent = new Agent(dir, "ota-04", fleet, ota.Factory, "normal", ota: ota.AgentOta(fleet, crashLoopRestarts: 1_000_000));
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        var files = new[] { ota.Retrained, ota.Factory };
        var bytes = new[] { await File.ReadAllBytesAsync(files[0]), await File.ReadAllBytesAsync(files[1]) };
        var deltas = new DeltaEntry[2];
        for (var k = 0; k < 2; k++)
        {
            await fleet.UploadArtifact(bytes[k]);
            var delta = EdgeFleet.ModelTools.Onnx.ModelDeltas.Encode(bytes[1 - k], bytes[k])[0].Bytes;
            var deltaSha = await fleet.UploadArtifact(delta);
            deltas[k] = new DeltaEntry
            {
                BaseSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes[1 - k])), Sha256 = deltaSha, Length = delta.Length, Url = $"/api/artifacts/{deltaSha}",
            };
        }
        var manifests = Enumerable.Range(0, iterations).Select(i =>
        {
            var manifest = ota.Manifest(files[i % 2], i + 2);
            manifest.Artifacts["x86-64-generic"] = manifest.Artifacts["x86-64-generic"] with { Deltas = [deltas[i % 2]] };
            return ota.Sign(manifest);
        }).ToList();
        var random = new Random(12345);
        var pointer = Path.Combine(agent.StateDirectory, "models", "current.json");
        await Wait.ForAsync(async () => ActiveVersion(await fleet.Device("ota-04")) == "1.0.0" ? "" : null, Patience, Explain);

        var rebuilt = 0;
        for (var i = 0; i < iterations; i++)
        {
            var version = (i + 2).ToString(System.Globalization.CultureInfo.InvariantCulture);
            await fleet.SetDesired("ota-04", manifests[i], ota.KeySet);
            await Task.Delay(random.Next(0, 2500));
            agent.Kill9();
            AssertServesACompleteModel(pointer, ota.Factory);
            agent.Restart();
            var converged = await Wait.ForAsync(async () => await fleet.Device("ota-04") is { } d && ActiveVersion(d) == version ? d : null, Patience,
                () => $"iteration {i}\n" + Explain());
            rebuilt += converged["device"]?["lastOta"]?["bytesSaved"]?.GetValue<long>() > 0 ? 1 : 0;
            AssertServesACompleteModel(pointer, ota.Factory);
        }
        Assert.Empty(System.IO.Directory.GetFiles(Path.Combine(agent.StateDirectory, "models"), "*.part", SearchOption.AllDirectories));
        Assert.True(rebuilt > 0, "no update came as a delta");
    }

    private static void AssertServesACompleteModel(string pointerPath, string factory)
    {
        if (!File.Exists(pointerPath))
        {
            Assert.True(File.Exists(factory));
            return;
        }
        var pointer = JsonNode.Parse(File.ReadAllText(pointerPath))!;
        foreach (var model in new[] { pointer["active"], pointer["previous"] }.Where(m => m is not null))
        {
            var path = model!["path"]!.GetValue<string>();
            Assert.True(File.Exists(path), $"the pointer names {path}, which is missing");
            if (model["sha256"]?.GetValue<string>() is { } sha)
                Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))));
        }
    }

    private static string? ActiveVersion(JsonNode? view) => view?["device"]?["activeModel"]?["version"]?.GetValue<string>();

    private static string? OtaState(JsonNode? view) => view?["device"]?["lastOta"]?["state"]?.GetValue<string>();

    private static string? OtaError(JsonNode? view) => view?["device"]?["lastOta"]?["error"]?.GetValue<string>();
}
