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
        Assert.InRange(served, bytes.Length, (long)(bytes.Length * 1.1));

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
