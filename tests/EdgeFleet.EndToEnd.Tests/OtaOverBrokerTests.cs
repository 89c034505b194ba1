using System.Security.Cryptography;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Model updates at a site whose devices reach only the broker: the agent runs in its own network namespace, where
/// the fleet's HTTP port cannot be reached, and its update comes through the broker (the embedded one, and a real
/// Mosquitto with per-device accounts); another device asking for that artifact is refused.
/// </summary>
[Collection("processes")]
public sealed class OtaOverBrokerTests(OtaFixture ota) : IClassFixture<OtaFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_site_that_reaches_only_the_broker_gets_its_update_through_it_and_no_other_device_gets_that_artifact(bool mosquitto)
    {
        Assert.True(ImpairedLink.Supported, "the test needs root, /dev/net/tun and iproute2 for the device's network namespace");
        var dir = Directory.CreateTempSubdirectory("edgefleet-ota-mqtt-").FullName;
        using var broker = mosquitto ? new Mosquitto(bind: "0.0.0.0") : null;
        using var fleet = new Fleet(dir, broker, extraArgs: mosquitto ? [] : ["--Fleet:Broker:BindAddress", "*"]);
        using var link = new ImpairedLink();
        // The manifest's artifact URL is a path on the fleet; from the device's namespace that host refuses connections.
        var settings = ota.AgentOta(fleet);
        settings["fleetUrl"] = $"http://{link.HostAddress}:{fleet.HttpPort}";
        using var agent = new Agent(dir, "remote-site", fleet, ota.Factory, "normal", ota: settings, link: link);
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}" + (broker is null ? "" : $"\n--- mosquitto:\n{broker.Output}");
        await Wait.ForAsync(async () => Active(await fleet.Device("remote-site")) == "1.0.0" ? "" : null, Patience, Explain);
        using (var probe = ChildProcess.Start("http-probe", "ip", link.Command("bash", "-c", $"exec 3<>/dev/tcp/{link.HostAddress}/{fleet.HttpPort}")))
            Assert.True(probe.WaitForExit(TimeSpan.FromSeconds(10)) != 0, "the fleet's HTTP port must be out of the device's reach");

        var bytes = await File.ReadAllBytesAsync(ota.Retrained);
        var sha = await fleet.UploadArtifact(bytes);
        await fleet.SetDesired("remote-site", ota.Sign(ota.Manifest(ota.Retrained, 2)), ota.KeySet);
        await Wait.ForAsync(async () => await fleet.Device("remote-site") is { } d && Active(d) == "2" && Ota(d, "state") == "committed" ? d : null,
            Patience, Explain);
        var device = await fleet.Device("remote-site");
        Assert.Equal("mqtt", Ota(device, "transport"));
        var installed = Path.Combine(agent.StateDirectory, "models", "vibration-classifier", "2", "model.onnx");
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(installed))));
        Assert.Contains("through the broker (MQTT)", agent.Output, StringComparison.Ordinal);
        var served = (await fleet.Health())!["chunkBytesServed"]!.GetValue<long>();
        Assert.True(served <= bytes.Length * 1.1, $"the fleet sent {served} bytes for an artifact of {bytes.Length}:\n{Explain()}");
        Assert.True(served >= bytes.Length);

        // Another enrolled device: the artifact of remote-site's update is not named by its own desired state.
        using var other = await ConnectAsync(fleet, broker, "other-site");
        var frames = new System.Collections.Concurrent.ConcurrentQueue<(string Topic, byte[] Payload)>();
        other.ApplicationMessageReceivedAsync += e =>
        {
            frames.Enqueue((e.ApplicationMessage.Topic, System.Buffers.BuffersExtensions.ToArray(e.ApplicationMessage.Payload)));
            return Task.CompletedTask;
        };
        var own = await other.SubscribeAsync("ef/v1/other-site/ota/chunk/data", MqttQualityOfServiceLevel.AtMostOnce);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS0, own.Items.Single().ResultCode);
        // It may not listen to remote-site's answers, nor ask in remote-site's name.
        var foreign = await other.SubscribeAsync("ef/v1/remote-site/ota/chunk/data", MqttQualityOfServiceLevel.AtMostOnce);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, foreign.Items.Single().ResultCode);
        var impersonated = await other.PublishAsync(Request("ef/v1/remote-site/ota/chunk/get", "remote-site", sha));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, impersonated.ReasonCode);

        var asked = await other.PublishAsync(Request("ef/v1/other-site/ota/chunk/get", "other-site", sha));
        Assert.True(asked.IsSuccess, asked.ReasonCode.ToString());
        await Wait.ForAsync(() => Task.FromResult(frames.IsEmpty ? null : ""), TimeSpan.FromSeconds(10), () => "no answer to the chunk request");
        var (topic, payload) = frames.Single();
        var frame = ChunkFrame.TryRead(payload, out var problem);
        Assert.True(frame is not null, problem);
        Assert.Equal(("ef/v1/other-site/ota/chunk/data", ChunkStatus.NotAllowed), (topic, frame!.Value.Status));
        Assert.Contains("not named by device other-site's desired state", frame.Value.Reason, StringComparison.Ordinal);
        Assert.Equal(served, (await fleet.Health())!["chunkBytesServed"]!.GetValue<long>());
    }

    /// <summary>
    /// A cellular site at its worst: 20 kB/s with 5 % of the packets lost each way, the link cut twice for 8 s, and the
    /// agent killed with kill -9 in the middle. The transfer resumes from the bytes on disk each time; the fleet sends
    /// at most 1.1 times the artifact, and the model that becomes active is the signed one.
    /// </summary>
    [Fact]
    public async Task On_a_20_kB_s_lossy_link_cut_twice_and_a_kill_9_the_transfer_resumes_and_sends_at_most_1_1_times_the_artifact()
    {
        Assert.True(ImpairedLink.Supported, "the test needs root, /dev/net/tun and iproute2 for the device's network namespace");
        var dir = Directory.CreateTempSubdirectory("edgefleet-ota-slow-").FullName;
        using var fleet = new Fleet(dir, extraArgs: ["--Fleet:Broker:BindAddress", "*"]);
        using var link = new ImpairedLink();
        var settings = ota.AgentOta(fleet);
        settings["transport"] = "mqtt";
        using var agent = new Agent(dir, "cellular-site", fleet, ota.Factory, "normal", ota: settings, link: link, configure: c =>
        {
            c["input"]!["rateHz"] = 2;
            c["telemetry"]!["maxBatchAgeSeconds"] = 5;
        });
        string Explain() => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}";
        await Wait.ForAsync(async () => Active(await fleet.Device("cellular-site")) == "1.0.0" ? "" : null, Patience, Explain);

        var model = Path.Combine(dir, "wide.onnx");
        await File.WriteAllBytesAsync(model, WideModel(hidden: 10_000));
        var bytes = await File.ReadAllBytesAsync(model);
        var sha = await fleet.UploadArtifact(bytes);
        (link.BytesPerSecond, link.Loss) = (20_000, 0.05);
        var wireBefore = link.BytesDown;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await fleet.SetDesired("cellular-site", ota.Sign(ota.Manifest(model, 2)), ota.KeySet);
        var part = Path.Combine(agent.StateDirectory, "models", "vibration-classifier", "2", "model.onnx.part");
        long Have() => File.Exists(part) ? new FileInfo(part).Length : 0;

        await Wait.ForAsync(() => Task.FromResult(Have() > bytes.Length / 4 ? "" : null), Patience, Explain);
        agent.Kill9();
        var atKill = Have();
        agent.Restart();
        await Wait.ForAsync(() => Task.FromResult(Have() > bytes.Length / 2 ? "" : null), Patience, Explain);
        for (var cut = 0; cut < 2; cut++)
        {
            link.Partitioned = true;
            await Task.Delay(TimeSpan.FromSeconds(8));
            link.Partitioned = false;
            await Task.Delay(TimeSpan.FromSeconds(3));
        }
        await Wait.ForAsync(async () => await fleet.Device("cellular-site") is { } d && Active(d) == "2" && Ota(d, "state") == "committed" ? d : null,
            TimeSpan.FromSeconds(240), Explain);
        var took = clock.Elapsed;
        var wire = link.BytesDown - wireBefore;
        var served = (await fleet.Health())!["chunkBytesServed"]!.GetValue<long>();
        var installed = Path.Combine(agent.StateDirectory, "models", "vibration-classifier", "2", "model.onnx");
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(installed))));
        Assert.Equal("mqtt", Ota(await fleet.Device("cellular-site"), "transport"));
        Console.WriteLine($"ota-slow-link: artifact {bytes.Length} B, fleet sent {served} B ({(double)served / bytes.Length:F3}x), "
            + $"link carried {wire} B down ({(double)wire / bytes.Length:F3}x, IP headers, telemetry acks and retransmissions included), "
            + $"{took.TotalSeconds:F0} s, killed at {atKill} B");
        Assert.True(atKill > 0 && atKill < bytes.Length, $"killed at {atKill} of {bytes.Length} bytes");
        Assert.True(served <= bytes.Length * 1.1, $"the fleet sent {served} bytes for an artifact of {bytes.Length}:\n{Explain()}");
        Assert.True(served >= bytes.Length);
    }

    /// <summary>The demo's interface (8 features in, 3 classes out) with a wide hidden layer: an artifact of about 45 bytes per hidden unit.</summary>
    private static byte[] WideModel(int hidden)
    {
        var random = new Random(5);
        var w1 = new float[8 * hidden];
        var w2 = new float[hidden * 3];
        for (var i = 0; i < w1.Length; i++)
            w1[i] = (float)((random.NextDouble() - 0.5) * 0.1);
        for (var i = 0; i < w2.Length; i++)
            w2[i] = (float)((random.NextDouble() - 0.5) * 0.1);
        return new EdgeFleet.ModelTools.Onnx.OnnxModelBuilder("wide")
            .Input("features", null, 8)
            .Output("probabilities", null, 3)
            .Initializer("w1", w1, 8, hidden)
            .Initializer("w2", w2, hidden, 3)
            .Node("MatMul", ["features", "w1"], ["h"])
            .Node("Relu", ["h"], ["r"])
            .Node("MatMul", ["r", "w2"], ["logits"])
            .Node("Softmax", ["logits"], ["probabilities"], EdgeFleet.ModelTools.Onnx.OnnxModelBuilder.IntAttribute("axis", 1))
            .Metadata("edgefleet.labels", "normal,imbalance,bearing-wear")
            .ToBytes();
    }

    private static MqttApplicationMessage Request(string topic, string device, string sha) => new MqttApplicationMessageBuilder()
        .WithTopic(topic)
        .WithPayload(WireReader.Write(new ChunkRequest { DeviceId = device, Sha256 = sha, Offset = 0, Length = 4096 }, WireJsonContext.Default.ChunkRequest))
        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
        .Build();

    /// <summary>Enrolls a device through the API with a fresh key and connects it as the broker requires (token, or Mosquitto password).</summary>
    private static async Task<IMqttClient> ConnectAsync(Fleet fleet, Mosquitto? broker, string deviceId)
    {
        using var key = SigningKey.Generate();
        using var response = await fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
        {
            ["token"] = await fleet.EnrollmentToken(),
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        }, apiKey: "");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var password = broker is null
            ? DeviceToken.Create(key, deviceId, DateTimeOffset.UtcNow, TimeSpan.FromMinutes(5))
            : JsonNode.Parse(body)!["brokerPassword"]!.GetValue<string>();
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", fleet.BrokerPort).WithClientId(deviceId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithCredentials(deviceId, password).Build();
        Assert.Equal(MqttClientConnectResultCode.Success, (await client.ConnectAsync(options)).ResultCode);
        return client;
    }

    private static string? Active(JsonNode? view) => view?["device"]?["activeModel"]?["version"]?.GetValue<string>();

    private static string? Ota(JsonNode? view, string field) => view?["device"]?["lastOta"]?[field]?.GetValue<string>();
}
