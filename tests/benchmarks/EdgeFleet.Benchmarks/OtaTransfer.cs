using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using EdgeFleet.Agent.Ota;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Signing;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Artifact transfer on loopback: the same signed artifact fetched by the agent's downloader over HTTP range requests
/// (the baseline) and through the fleet's embedded broker (<see cref="ChunkTransfer"/>, chunk requests on
/// <c>ota/chunk/get</c>), alternating, each into an empty folder and hash-checked. The fleet is its own process;
/// the device is enrolled through the API and authenticates as the agent does (device token).
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- ota-transfer 32 5</c>.
/// </summary>
public static class OtaTransfer
{
    private const string DeviceId = "bench-ota";

    public static async Task<int> RunAsync(int mebibytes, int rounds)
    {
        var fleetDll = Path.Combine(Repo.Root, "fleet-service/EdgeFleet.Fleet/bin/Release/net10.0/edgefleet-fleet.dll");
        if (!File.Exists(fleetDll))
        {
            Console.Error.WriteLine($"build the fleet first: dotnet build -c Release fleet-service/EdgeFleet.Fleet ({fleetDll})");
            return 2;
        }
        var dir = Directory.CreateTempSubdirectory("edgefleet-ota-transfer-").FullName;
        var (httpPort, mqttPort) = (FleetIngest.FreePort(), FleetIngest.FreePort());
        var fleet = FleetIngest.StartFleet(fleetDll, dir, httpPort, mqttPort, [], new Dictionary<string, string>());
        try
        {
            using var api = await FleetIngest.ConnectApiAsync(dir, httpPort);
            var model = Path.Combine(dir, "model.onnx");
            await File.WriteAllBytesAsync(model, WideModel(mebibytes));
            var bytes = await File.ReadAllBytesAsync(model);
            var artifact = await UploadAsync(api, bytes);
            using var key = SigningKey.Generate();
            await EnrollAsync(api, key);
            await SetDesiredAsync(api, dir, model);
            Console.WriteLine($"ota-transfer: artifact {bytes.Length / 1048576.0:F1} MiB, {rounds} rounds each, loopback, embedded broker");

            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
            var origin = new Uri($"http://127.0.0.1:{httpPort}");
            var overHttp = new ArtifactDownloader(http, 1, authorize: _ => new AuthenticationHeaderValue("Bearer", Token(key)),
                mode: EdgeFleet.Agent.Configuration.ArtifactTransportMode.Http);
            await using var link = await BrokerLink.ConnectAsync(mqttPort, key);
            var overBroker = new ArtifactDownloader(http, 1, broker: new ChunkTransfer(link, DeviceId), mode: EdgeFleet.Agent.Configuration.ArtifactTransportMode.Mqtt);

            var httpRates = new List<double>();
            var mqttRates = new List<double>();
            for (var round = 0; round <= rounds; round++)
            {
                foreach (var (name, downloader, rates) in new[] { ("http", overHttp, httpRates), ("mqtt", overBroker, mqttRates) })
                {
                    var folder = Path.Combine(dir, $"{name}-{round}");
                    var clock = Stopwatch.StartNew();
                    var failure = await downloader.DownloadAsync(new Uri(origin, artifact.Url), folder, artifact, null, CancellationToken.None);
                    var seconds = clock.Elapsed.TotalSeconds;
                    if (failure is not null)
                    {
                        Console.Error.WriteLine($"{name} download failed: {failure}");
                        return 1;
                    }
                    Directory.Delete(folder, recursive: true);
                    if (round == 0)
                        continue; // warm-up: JIT, connection set-up, page cache
                    rates.Add(bytes.Length / 1048576.0 / seconds);
                    Console.WriteLine($"  round {round} {name}: {seconds * 1000:F0} ms, {bytes.Length / 1048576.0 / seconds:F1} MiB/s");
                }
            }
            var (h, m) = (Median(httpRates), Median(mqttRates));
            Console.WriteLine($"ota-transfer: median HTTP {h:F1} MiB/s, MQTT {m:F1} MiB/s; MQTT/HTTP throughput ratio {m / h:F3}");
            return 0;
        }
        finally
        {
            FleetIngest.Stop(fleet);
            Directory.Delete(dir, recursive: true);
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string Token(SigningKey key) => DeviceToken.Create(key, DeviceId, DateTimeOffset.UtcNow, TimeSpan.FromMinutes(30));

    private static async Task<ArtifactEntry> UploadAsync(HttpClient api, byte[] bytes)
    {
        using var content = new ByteArrayContent(bytes);
        using var response = await api.PostAsync(new Uri("/api/artifacts", UriKind.Relative), content);
        response.EnsureSuccessStatusCode();
        var body = (await response.Content.ReadFromJsonAsync<JsonNode>())!;
        return new ArtifactEntry { Url = body["url"]!.GetValue<string>(), Sha256 = body["sha256"]!.GetValue<string>(), Length = bytes.Length };
    }

    private static async Task EnrollAsync(HttpClient api, SigningKey key)
    {
        using var tokenResponse = await api.PostAsJsonAsync(new Uri("/api/enrollment-tokens", UriKind.Relative),
            new JsonObject { ["uses"] = 1, ["expiresInHours"] = 1, ["tags"] = new JsonObject() });
        tokenResponse.EnsureSuccessStatusCode();
        var token = (await tokenResponse.Content.ReadFromJsonAsync<JsonNode>())!["token"]!.GetValue<string>();
        using var enroll = await api.PostAsJsonAsync(new Uri("/api/enroll", UriKind.Relative), new JsonObject
        {
            ["token"] = token, ["deviceId"] = DeviceId, ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        });
        enroll.EnsureSuccessStatusCode();
    }

    /// <summary>The device's desired state names the artifact: the fleet serves it through the broker only then.</summary>
    private static async Task SetDesiredAsync(HttpClient api, string dir, string model)
    {
        var keys = new KeyStore(Path.Combine(dir, "keys"));
        keys.Init(new KeyStore.Options(), DateTimeOffset.UtcNow);
        var samples = new List<Dictionary<string, TensorValue>>
        {
            new() { ["features"] = new TensorValue { Shape = [1, 8], Data = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] } },
        };
        var manifest = ManifestBuilder.Build(new ManifestBuilder.Request
        {
            ModelPath = model, ModelId = "bench", Version = 2, Profiles = ["x86-64-generic"], Samples = samples,
        }, keys.CurrentKeySet(), DateTimeOffset.UtcNow);
        var signers = keys.LoadSigners(null);
        var signed = ManifestBuilder.Sign(manifest, signers);
        foreach (var k in signers)
            k.Dispose();
        using var response = await api.PutAsJsonAsync(new Uri($"/api/devices/{DeviceId}/desired", UriKind.Relative),
            new JsonObject { ["manifest"] = JsonNode.Parse(signed), ["keySet"] = JsonNode.Parse(await File.ReadAllBytesAsync(keys.KeySetPath)) });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>The demo's interface with a hidden layer wide enough for the artifact to be about <paramref name="mebibytes"/> MiB.</summary>
    private static byte[] WideModel(int mebibytes)
    {
        var hidden = (int)(mebibytes * 1048576L / (11 * sizeof(float)));
        var random = new Random(3);
        var w1 = new float[8 * hidden];
        var w2 = new float[hidden * 3];
        for (var i = 0; i < w1.Length; i++)
            w1[i] = (float)(random.NextDouble() - 0.5);
        for (var i = 0; i < w2.Length; i++)
            w2[i] = (float)(random.NextDouble() - 0.5);
        return new OnnxModelBuilder("wide")
            .Input("features", null, 8).Output("probabilities", null, 3)
            .Initializer("w1", w1, 8, hidden).Initializer("w2", w2, hidden, 3)
            .Node("MatMul", ["features", "w1"], ["h"]).Node("Relu", ["h"], ["r"]).Node("MatMul", ["r", "w2"], ["logits"])
            .Node("Softmax", ["logits"], ["probabilities"], OnnxModelBuilder.IntAttribute("axis", 1))
            .ToBytes();
    }

    /// <summary>The device's MQTT connection as the agent's sync service keeps it, for the chunk transfer alone.</summary>
    private sealed class BrokerLink : IChunkLink, IAsyncDisposable
    {
        private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();
        private readonly Channel<byte[]> _frames = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(64) { FullMode = BoundedChannelFullMode.DropOldest });

        public static async Task<BrokerLink> ConnectAsync(int port, SigningKey key)
        {
            var link = new BrokerLink();
            link._client.ApplicationMessageReceivedAsync += e =>
            {
                link._frames.Writer.TryWrite(System.Buffers.BuffersExtensions.ToArray(e.ApplicationMessage.Payload));
                return Task.CompletedTask;
            };
            var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithClientId(DeviceId)
                .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithCredentials(DeviceId, Token(key)).Build();
            var result = await link._client.ConnectAsync(options);
            if (result.ResultCode != MqttClientConnectResultCode.Success)
                throw new InvalidOperationException($"the broker refused the device: {result.ResultCode}");
            await link._client.SubscribeAsync(Topics.For(DeviceId, TopicKind.OtaChunkData), MqttQualityOfServiceLevel.AtMostOnce);
            return link;
        }

        public bool Connected => _client.IsConnected;

        public int ConnectionEpoch => 1;

        public ChannelReader<byte[]> ChunkFrames => _frames.Reader;

        public async Task<bool> RequestChunkAsync(ChunkRequest request, CancellationToken ct)
        {
            await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(Topics.For(DeviceId, TopicKind.OtaChunkRequest))
                .WithPayload(WireReader.Write(request, WireJsonContext.Default.ChunkRequest)).Build(), ct);
            return true;
        }

        public async ValueTask DisposeAsync()
        {
            await _client.DisconnectAsync();
            _client.Dispose();
        }
    }
}
