using System.Security.Cryptography;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Fleet.Telemetry;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Signing;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Fleet.Tests;

/// <summary>
/// Artifacts through the broker, at the fleet's entrance for device messages (the router): a device gets the bytes
/// of the artifacts its desired state names and nothing else, each refusal says why, and garbage is answered.
/// </summary>
public sealed class ChunkServerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-chunks-").FullName;
    private readonly LiteDbFleetStore _store;
    private readonly FleetMetrics _metrics = new();
    private readonly ReplyQueue _replies = new();
    private readonly TelemetryIngest _ingest;
    private readonly DeviceMessageRouter _router;
    private readonly ArtifactStore _artifacts;
    private readonly KeyStore _keys;

    public ChunkServerTests()
    {
        _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));
        _artifacts = new ArtifactStore(Path.Combine(_dir, "artifacts"));
        _ingest = new TelemetryIngest(_store, _replies, _metrics, TimeProvider.System, NullLogger<TelemetryIngest>.Instance);
        _router = new DeviceMessageRouter(_store, _ingest, _replies, _metrics, TimeProvider.System, NullLogger<DeviceMessageRouter>.Instance,
            new ChunkServer(_store, _artifacts, _metrics));
        _keys = new KeyStore(Path.Combine(_dir, "keys"));
        _keys.Init(new KeyStore.Options(), DateTimeOffset.UtcNow);
    }

    private static readonly byte[] ModelA = DemoModelTrainer.Train(seed: 1, perClass: 20, epochs: 2).OnnxBytes;
    private static readonly byte[] ModelB = DemoModelTrainer.Train(seed: 2, perClass: 20, epochs: 2).OnnxBytes;

    private async Task<string> PutAsync(byte[] bytes)
    {
        using var stream = new MemoryStream(bytes);
        return (await _artifacts.PutAsync(stream, 1 << 30, default)).Sha256;
    }

    /// <summary>A desired state whose signed manifest names <paramref name="model"/>.</summary>
    private byte[] Desired(string device, byte[] model, long version)
    {
        var path = Path.Combine(_dir, $"model-{version}.onnx");
        File.WriteAllBytes(path, model);
        var samples = DemoDataset.Generate(perClass: 1, seed: 7).Features
            .Select(f => new Dictionary<string, TensorValue> { ["features"] = new TensorValue { Shape = [1, 8], Data = f.Select(x => (double)x).ToArray() } })
            .ToList();
        var manifest = ManifestBuilder.Build(new ManifestBuilder.Request
        {
            ModelPath = path, ModelId = "m", Version = version, Profiles = ["x86-64-generic"], Samples = samples,
        }, _keys.CurrentKeySet(), DateTimeOffset.UtcNow);
        var signers = _keys.LoadSigners(null);
        var signed = ManifestBuilder.Sign(manifest, signers);
        foreach (var k in signers)
            k.Dispose();
        using var envelope = System.Text.Json.JsonDocument.Parse(signed);
        using var keySet = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(_keys.KeySetPath));
        return WireReader.Write(new DesiredState { DeviceId = device, Manifest = envelope.RootElement.Clone(), KeySet = keySet.RootElement.Clone() },
            WireJsonContext.Default.DesiredState);
    }

    private async Task<(string Topic, ChunkFrame Frame)> AskAsync(string device, string sha, long offset, int length)
    {
        var request = new ChunkRequest { DeviceId = device, Sha256 = sha, Offset = offset, Length = length };
        return await AskRawAsync(device, WireReader.Write(request, WireJsonContext.Default.ChunkRequest));
    }

    private async Task<(string Topic, ChunkFrame Frame)> AskRawAsync(string device, byte[] payload)
    {
        await _router.HandleAsync(Topics.For(device, TopicKind.OtaChunkRequest), payload, default);
        var reply = await _replies.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        var frame = ChunkFrame.TryRead(reply.Payload, out var problem);
        Assert.True(frame is not null, problem);
        return (reply.Topic, frame!.Value);
    }

    [Fact]
    public async Task A_device_gets_the_bytes_of_the_artifact_its_desired_state_names_in_any_range()
    {
        var sha = await PutAsync(ModelA);
        await _store.SetDesiredAsync("d1", Desired("d1", ModelA, 2), default);
        var assembled = new MemoryStream();
        for (long offset = 0; offset < ModelA.Length; offset += 1000)
        {
            var (topic, frame) = await AskAsync("d1", sha, offset, 1000);
            Assert.Equal("ef/v1/d1/ota/chunk/data", topic);
            Assert.Equal((ChunkStatus.Data, sha, offset, (long)ModelA.Length), (frame.Status, frame.Sha256, frame.Offset, frame.Total));
            assembled.Write(frame.Body.Span);
        }
        Assert.Equal(ModelA, assembled.ToArray()); // the last chunk is shorter: the artifact's end, not padding
        var (_, past) = await AskAsync("d1", sha, ModelA.Length, 10);
        Assert.Equal(ChunkStatus.BadRequest, past.Status);
        Assert.Contains("past the artifact's end", past.Reason, StringComparison.Ordinal);
        Assert.Equal(ModelA.Length, _metrics.ChunkBytesServed);
    }

    [Fact]
    public async Task Another_artifact_another_device_s_or_an_unknown_one_is_refused_with_its_reason()
    {
        var a = await PutAsync(ModelA);
        var b = await PutAsync(ModelB);
        await _store.SetDesiredAsync("d1", Desired("d1", ModelA, 2), default);
        await _store.SetDesiredAsync("d2", Desired("d2", ModelB, 2), default);

        // d1 asks for the artifact of d2's rollout: it exists, but d1's desired state does not name it.
        var (topic, other) = await AskAsync("d1", b, 0, 1000);
        Assert.Equal(("ef/v1/d1/ota/chunk/data", ChunkStatus.NotAllowed), (topic, other.Status));
        Assert.Contains("not named by device d1's desired state", other.Reason, StringComparison.Ordinal);
        Assert.True(other.Body.Length < 600);
        // A device with no desired state gets nothing.
        Assert.Equal(ChunkStatus.NotAllowed, (await AskAsync("d3", a, 0, 1000)).Frame.Status);

        // The desired state moves on: what it names now is allowed, what it named before no longer.
        await _store.SetDesiredAsync("d1", Desired("d1", ModelB, 3), default);
        Assert.Equal(ChunkStatus.Data, (await AskAsync("d1", b, 0, 1000)).Frame.Status);
        Assert.Equal(ChunkStatus.NotAllowed, (await AskAsync("d1", a, 0, 1000)).Frame.Status);

        // Named, but the fleet lost the file.
        File.Delete(Path.Combine(_dir, "artifacts", b));
        var (_, lost) = await AskAsync("d1", b, 0, 1000);
        Assert.Equal(ChunkStatus.Unknown, lost.Status);
        Assert.Equal(4, _metrics.ChunksRefused);
    }

    [Theory]
    [InlineData("{\"v\":1}")]
    [InlineData("not json")]
    [InlineData("{\"v\":1,\"deviceId\":\"d1\",\"sha256\":\"ABC\",\"offset\":0,\"length\":10}")]
    [InlineData("{\"v\":1,\"deviceId\":\"d1\",\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"offset\":-1,\"length\":10}")]
    [InlineData("{\"v\":1,\"deviceId\":\"d1\",\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"offset\":0,\"length\":1000000}")]
    [InlineData("{\"v\":1,\"deviceId\":\"d2\",\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"offset\":0,\"length\":10}")]
    public async Task A_malformed_request_is_answered_with_the_reason_and_counted(string payload)
    {
        var (topic, frame) = await AskRawAsync("d1", System.Text.Encoding.UTF8.GetBytes(payload));
        Assert.Equal(("ef/v1/d1/ota/chunk/data", ChunkStatus.BadRequest), (topic, frame.Status));
        Assert.False(string.IsNullOrWhiteSpace(frame.Reason));
        Assert.Equal(1, _metrics.Rejected.Values.Sum());
        Assert.Equal(0, _metrics.ChunkBytesServed);
    }

    [Fact]
    public async Task A_device_may_ask_only_on_its_own_topic_and_never_publish_the_fleet_s_answers()
    {
        Assert.True(TopicAccess.MayPublish("d1", "ef/v1/d1/ota/chunk/get"));
        Assert.False(TopicAccess.MayPublish("d1", "ef/v1/d2/ota/chunk/get"));
        Assert.False(TopicAccess.MayPublish("d1", "ef/v1/d1/ota/chunk/data"));
        Assert.False(TopicAccess.MayPublish("d1", "ef/v1/d2/ota/chunk/data"));
        Assert.True(TopicAccess.MaySubscribe("d1", "ef/v1/d1/ota/chunk/data"));
        Assert.False(TopicAccess.MaySubscribe("d1", "ef/v1/d2/ota/chunk/data"));
        await Task.CompletedTask;
    }

    public void Dispose()
    {
        _ingest.StopAsync(default).GetAwaiter().GetResult();
        _ingest.Dispose();
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
