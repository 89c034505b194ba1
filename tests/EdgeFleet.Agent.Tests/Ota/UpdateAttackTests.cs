using EdgeFleet.Agent.Identity;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Ota;
using EdgeFleet.Agent.Sync;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Signing;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Agent.Tests.Ota;

/// <summary>
/// The attack suite against the real OTA service: a real artifact server, real keys, real models. Every case
/// asserts its own error code, that the factory model still serves, and that nothing partial is left.
/// </summary>
public sealed class UpdateAttackTests : IDisposable
{
    private const string Profile = "x86-64-generic";
    private static readonly byte[] Factory = DemoModelTrainer.Train(seed: 42, perClass: 100, epochs: 10).OnnxBytes;
    private static readonly byte[] Retrained = DemoModelTrainer.Train(seed: 43, perClass: 100, epochs: 10).OnnxBytes;
    private readonly TempDir _dir = new();
    private readonly ArtifactServer _server = new();
    private readonly KeyStore _keys;

    public UpdateAttackTests()
    {
        _keys = new KeyStore(_dir.File("keys"));
        _keys.Init(new KeyStore.Options(), DateTimeOffset.UtcNow);
        File.WriteAllBytes(_dir.File("factory.onnx"), Factory);
        File.WriteAllBytes(_dir.File("retrained.onnx"), Retrained);
        _server.Add("files/retrained", Retrained);
    }

    public static TheoryData<string, OtaError> Attacks => new()
    {
        { "body changed after signing", OtaError.BadSignature },
        { "signed by an unknown key", OtaError.UnknownKey },
        { "expired manifest", OtaError.Expired },
        { "version not above the installed one", OtaError.VersionRollback },
        { "artifact only for another profile", OtaError.WrongProfile },
        { "key set not signed by the roots", OtaError.KeySetUntrusted },
        { "server pads the artifact and says so", OtaError.ArtifactTooLong },
        { "server pads the artifact in chunks", OtaError.ArtifactTooLong },
        { "server always closes early", OtaError.ArtifactTruncated },
        { "server sends other bytes", OtaError.HashMismatch },
        { "artifact is not a model", OtaError.ModelLoadFailed },
        { "model differs from the declared schema", OtaError.SchemaMismatch },
        { "model fails its health check", OtaError.HealthCheckFailed },
        { "model is too slow for its budget", OtaError.LatencyBudgetExceeded },
    };

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task Refuses_update(string attack, OtaError expected)
    {
        var manifest = Manifest(version: 2);
        var keySet = File.ReadAllBytes(_keys.KeySetPath);
        byte[] envelope;
        using var stranger = SigningKey.Generate();
        switch (attack)
        {
            case "body changed after signing":
                var node = JsonNode.Parse(Sign(manifest))!;
                node["signed"]!["version"] = 3;
                envelope = JsonSerializer.SerializeToUtf8Bytes(node);
                break;
            case "signed by an unknown key":
                envelope = ManifestBuilder.Sign(manifest, [stranger]);
                break;
            case "expired manifest":
                envelope = Sign(manifest with { IssuedAt = DateTimeOffset.UtcNow.AddDays(-2), Expires = DateTimeOffset.UtcNow.AddMinutes(-1) });
                break;
            case "version not above the installed one":
                envelope = Sign(manifest with { Version = 1 });
                break;
            case "artifact only for another profile":
                envelope = Sign(manifest with { Artifacts = new() { ["jetson-orin-nano"] = manifest.Artifacts[Profile] } });
                break;
            case "key set not signed by the roots":
                keySet = SignedDocuments.Sign(_keys.CurrentKeySet() with { Version = 2, Keys = [stranger.PublicEntry] }, OtaJsonContext.Default.KeySetDocument, [stranger]);
                envelope = ManifestBuilder.Sign(manifest, [stranger]);
                break;
            case "server pads the artifact and says so":
                (_server.Padding, _server.AnnouncePadding) = (4096, true);
                envelope = Sign(manifest);
                break;
            case "server pads the artifact in chunks":
                _server.Padding = 1 << 20;
                envelope = Sign(manifest);
                break;
            case "server always closes early":
                (_server.CutAfterBytes, _server.CutTimes) = (100, 100);
                envelope = Sign(manifest);
                break;
            case "server sends other bytes":
                var other = Retrained.ToArray();
                other[^1] ^= 0xFF;
                _server.Add("files/retrained", other);
                envelope = Sign(manifest);
                break;
            case "artifact is not a model":
                var junk = RandomNumberGenerator.GetBytes(2048);
                _server.Add("files/junk", junk);
                envelope = Sign(manifest with { Artifacts = new() { [Profile] = new ArtifactEntry { Url = "/files/junk", Length = junk.Length, Sha256 = Convert.ToHexStringLower(SHA256.HashData(junk)) } } });
                break;
            case "model differs from the declared schema":
                envelope = Sign(manifest with { Schema = manifest.Schema with { Inputs = [manifest.Schema.Inputs[0] with { Shape = [-1, 16] }] } });
                break;
            case "model fails its health check":
                var s = manifest.HealthCheck.Samples[0];
                envelope = Sign(manifest with { HealthCheck = manifest.HealthCheck with { Samples = [s with { Expected = s.Expected.ToDictionary(kv => kv.Key, kv => kv.Value with { Data = kv.Value.Data.Select(x => x + 0.5).ToArray() }) }] } });
                break;
            case "model is too slow for its budget":
                envelope = Sign(manifest with { HealthCheck = manifest.HealthCheck with { LatencyBudgetMs = 0.000001 } });
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(attack));
        }

        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url);
        var status = await agent.UpdateAsync(envelope, keySet);
        Assert.Equal(expected, status.Error);
        Assert.False(string.IsNullOrWhiteSpace(status.Reason));
        Assert.Equal("1", agent.Host.Current!.Model.Version);
        Assert.False(File.Exists(agent.PointerPath), "a refused update must not touch the pointer");
        Assert.Empty(Directory.GetFiles(agent.ModelsDirectory, "model.onnx*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task A_download_over_the_daily_byte_budget_waits_and_says_so_unless_the_release_is_urgent()
    {
        var keySet = File.ReadAllBytes(_keys.KeySetPath);
        // Half the artifact's size a day: its ordinary share (90 %) cannot hold the download.
        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url, dailyByteBudget: Retrained.Length / 2);
        var waiting = await agent.UpdateAsync(Sign(Manifest(version: 2)), keySet);
        Assert.Equal((OtaState.WaitingForBudget, OtaError.OverBudget), (waiting.State, waiting.Error));
        Assert.Contains($"needs {Retrained.Length} bytes", waiting.Reason, StringComparison.Ordinal);
        Assert.Equal("1", agent.Host.Current!.Model.Version);
        Assert.Empty(Directory.GetFiles(agent.ModelsDirectory, "model.onnx*", SearchOption.AllDirectories));
        Assert.Equal(0, agent.BudgetSpent);

        // An urgent release (signed so) goes ahead, and its bytes still count against the day.
        var urgent = await agent.UpdateAsync(Sign(Manifest(version: 3) with { Urgent = true }), keySet);
        Assert.Equal(OtaState.Committed, urgent.State);
        Assert.Equal("3", agent.Host.Current!.Model.Version);
        Assert.Equal(Retrained.Length, agent.BudgetSpent);
    }

    [Fact]
    public async Task Manifest_signed_by_a_rotated_out_key_is_refused_once_the_new_key_set_is_known()
    {
        var oldSigners = _keys.LoadSigners(null);
        _keys.RotateKeySet(new KeyStore.Options(), DateTimeOffset.UtcNow);
        var newKeySet = File.ReadAllBytes(_keys.KeySetPath);
        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url);
        Assert.Equal(OtaState.Committed, (await agent.UpdateAsync(Sign(Manifest(version: 2)), newKeySet)).State);
        // The old key set is replayed with a manifest its (retired) key signed: the device keeps the newer set.
        var replayed = await agent.UpdateAsync(ManifestBuilder.Sign(Manifest(version: 3), oldSigners), OldKeySet(oldSigners));
        Assert.Equal(OtaError.UnknownKey, replayed.Error);
        Assert.Equal("2", agent.Host.Current!.Model.Version);
        foreach (var k in oldSigners)
            k.Dispose();
    }

    [Fact]
    public async Task Resumes_a_dropped_download_from_the_bytes_on_disk_and_activates()
    {
        (_server.CutAfterBytes, _server.CutTimes) = (Retrained.Length / 2, 1);
        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url);
        var status = await agent.UpdateAsync(Sign(Manifest(version: 2)), File.ReadAllBytes(_keys.KeySetPath));
        Assert.Equal(OtaState.Committed, status.State);
        Assert.Equal([0L, Retrained.Length / 2], _server.RangeStarts);
        Assert.Equal("2", agent.Host.Current!.Model.Version);
        var pointer = JsonNode.Parse(File.ReadAllText(agent.PointerPath))!;
        Assert.Equal(2, pointer["active"]!["version"]!.GetValue<long>());
        Assert.Equal("1", pointer["previous"]!["versionLabel"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_host_that_holds_the_connection_after_the_declared_bytes_does_not_stall_the_update()
    {
        _server.HoldAfterBody = true;
        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var status = await agent.UpdateAsync(Sign(Manifest(version: 2)), File.ReadAllBytes(_keys.KeySetPath));
        Assert.Equal(OtaState.Committed, status.State);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the update took {clock.Elapsed.TotalSeconds:0} s");
    }

    [Fact]
    public async Task A_download_that_stops_making_progress_is_abandoned_and_resumed_from_its_bytes()
    {
        (_server.StallAfterBytes, _server.StallTimes) = (Retrained.Length / 2, 1);
        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url, stallSeconds: 1);
        var status = await agent.UpdateAsync(Sign(Manifest(version: 2)), File.ReadAllBytes(_keys.KeySetPath));
        Assert.Equal(OtaState.Committed, status.State);
        Assert.Equal([0L, Retrained.Length / 2], _server.RangeStarts);
    }

    [Fact]
    public async Task A_newer_desired_state_is_not_blocked_by_a_stalled_download()
    {
        (_server.StallAfterBytes, _server.StallTimes) = (Retrained.Length / 2, 1);
        var keySet = File.ReadAllBytes(_keys.KeySetPath);
        await using var agent = await OtaAgent.StartAsync(_dir, _server.Url, stallSeconds: 300);
        agent.Deliver(Sign(Manifest(version: 2)), keySet);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (_server.RangeStarts.Count == 0 && waited.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(50);
        await Task.Delay(500); // the transfer is now held by the server
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var status = await agent.UpdateAsync(Sign(Manifest(version: 3)), keySet);
        Assert.Equal(OtaState.Committed, status.State);
        Assert.Equal(3, status.Version);
        Assert.Equal("3", agent.Host.Current!.Model.Version);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the newer update waited {clock.Elapsed.TotalSeconds:0} s");
    }

    [Fact]
    public async Task Remembers_the_installed_version_across_restarts_so_a_replay_is_still_a_rollback()
    {
        var keySet = File.ReadAllBytes(_keys.KeySetPath);
        var v2 = Sign(Manifest(version: 2));
        await using (var agent = await OtaAgent.StartAsync(_dir, _server.Url))
            Assert.Equal(OtaState.Committed, (await agent.UpdateAsync(Sign(Manifest(version: 3)), keySet)).State);
        await using (var agent = await OtaAgent.StartAsync(_dir, _server.Url))
        {
            Assert.Equal("3", agent.Host.Current!.Model.Version);
            // An older manifest with a perfectly valid signature: replayed, so refused.
            Assert.Equal(OtaError.VersionRollback, (await agent.UpdateAsync(v2, keySet)).Error);
            Assert.Equal("3", agent.Host.Current!.Model.Version);
        }
    }

    private byte[] OldKeySet(IReadOnlyList<SigningKey> oldSigners)
    {
        using var root = KeyFile.Read(Directory.GetFiles(Path.Combine(_keys.Directory, "root-keys"))[0], null);
        var v1 = new KeySetDocument { Version = 1, IssuedAt = DateTimeOffset.UtcNow, Expires = DateTimeOffset.UtcNow.AddDays(30), Keys = oldSigners.Select(k => k.PublicEntry).ToArray(), Threshold = 1 };
        return SignedDocuments.Sign(v1, OtaJsonContext.Default.KeySetDocument, [root]);
    }

    private ModelManifest Manifest(long version)
    {
        var samples = DemoDataset.Generate(perClass: 1, seed: 7).Features
            .Select(f => new Dictionary<string, TensorValue> { ["features"] = new TensorValue { Shape = [1, 8], Data = f.Select(x => (double)x).ToArray() } }).ToList();
        return ManifestBuilder.Build(new ManifestBuilder.Request
        {
            ModelPath = _dir.File("retrained.onnx"),
            ModelId = "vibration-classifier",
            Version = version,
            Profiles = [Profile],
            Samples = samples,
            UrlTemplate = "/files/retrained",
            LatencyBudgetMs = 1000,
        }, _keys.CurrentKeySet(), DateTimeOffset.UtcNow);
    }

    private byte[] Sign(ModelManifest manifest)
    {
        var signers = _keys.LoadSigners(null);
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

    public void Dispose()
    {
        _server.Dispose();
        _dir.Dispose();
    }

    /// <summary>The agent's OTA pieces, wired as the host wires them, with no broker reachable.</summary>
    private sealed class OtaAgent : IAsyncDisposable
    {
        private readonly OtaService _service;
        private readonly SyncService _sync;
        private readonly TelemetryBuffer _buffer;
        private readonly OtaStore _store;
        private readonly AgentRuntime _runtime;

        private OtaAgent(AgentConfig config)
        {
            _runtime = new AgentRuntime("dev-1", Profile, TimeProvider.System);
            Host = new ModelHost(_runtime);
            _store = new OtaStore(Path.Combine(config.StateDirectory, "ota.db"));
            _buffer = new TelemetryBuffer(Path.Combine(config.StateDirectory, "telemetry.db"), config.Telemetry, TimeProvider.System);
            _sync = new SyncService(config, DeviceCredentials.None, _runtime, _buffer, NullLogger<SyncService>.Instance);
            _service = new OtaService(config, DeviceCredentials.None, _runtime, Host, _store, _sync, NullLogger<OtaService>.Instance);
            ModelsDirectory = Path.Combine(config.StateDirectory, "models");
            PointerPath = Path.Combine(ModelsDirectory, "current.json");
        }

        public ModelHost Host { get; }

        /// <summary>Bytes of today's budget spent (artifact downloads count).</summary>
        public long BudgetSpent => _buffer.BudgetSpent(DateOnly.FromDateTime(DateTime.UtcNow));

        public string ModelsDirectory { get; }

        public string PointerPath { get; }

        public static async Task<OtaAgent> StartAsync(TempDir dir, string fleetUrl, double stallSeconds = 30, long dailyByteBudget = 0)
        {
            var config = new AgentConfig
            {
                StateDirectory = dir.File("state"),
                HardwareProfile = Profile,
                Broker = new BrokerConfig { Host = "127.0.0.1", Port = 1 },
                Model = new ModelConfig { Name = "vibration-classifier", Version = "1", Path = dir.File("factory.onnx") },
                Ota = new OtaConfig { RootPath = Path.Combine(dir.File("keys"), "root.json"), FleetUrl = fleetUrl, MaxDownloadAttempts = 2, DownloadStallSeconds = stallSeconds },
                Telemetry = new TelemetryConfig { DailyByteBudget = dailyByteBudget },
            };
            Directory.CreateDirectory(config.StateDirectory);
            var agent = new OtaAgent(config);
            await agent._service.StartAsync(CancellationToken.None);
            Directory.CreateDirectory(agent.ModelsDirectory);
            return agent;
        }

        /// <summary>Delivers a desired state without waiting.</summary>
        public void Deliver(byte[] manifest, byte[] keySet)
        {
            using var m = JsonDocument.Parse(manifest);
            using var k = JsonDocument.Parse(keySet);
            _service.OnDesired(WireReader.Write(new DesiredState { DeviceId = "dev-1", Manifest = m.RootElement.Clone(), KeySet = k.RootElement.Clone() }, WireJsonContext.Default.DesiredState));
        }

        /// <summary>Delivers a desired state and waits for the update's final status.</summary>
        public async Task<OtaStatusMessage> UpdateAsync(byte[] manifest, byte[] keySet)
        {
            var done = new TaskCompletionSource<OtaStatusMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnStatus(OtaStatusMessage s)
            {
                if (s.State is OtaState.Rejected or OtaState.Failed or OtaState.Committed or OtaState.RolledBack or OtaState.WaitingForBudget)
                    done.TrySetResult(s);
            }
            _service.StatusReported += OnStatus;
            try
            {
                using var m = JsonDocument.Parse(manifest);
                using var k = JsonDocument.Parse(keySet);
                _service.OnDesired(WireReader.Write(new DesiredState { DeviceId = "dev-1", Manifest = m.RootElement.Clone(), KeySet = k.RootElement.Clone() }, WireJsonContext.Default.DesiredState));
                return await done.Task.WaitAsync(TimeSpan.FromSeconds(60));
            }
            finally
            {
                _service.StatusReported -= OnStatus;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _service.StopAsync(CancellationToken.None);
            _service.Dispose();
            _sync.Dispose();
            Host.Dispose();
            _store.Dispose();
            _buffer.Dispose();
        }
    }
}
