using System.Net;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The same refusals as <see cref="BrokerSecurityTests"/>, enforced by a real Mosquitto set up with the shipped
/// packaging/mosquitto script, whose per-device accounts the fleet keeps through dynamic security.
/// </summary>
[Collection("processes")]
public sealed class MosquittoSecurityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-mosquitto-security-").FullName;
    private readonly Mosquitto _mosquitto = new();
    private readonly Fleet _fleet;

    public MosquittoSecurityTests() => _fleet = new Fleet(_dir, _mosquitto);

    private async Task<(SigningKey Key, string Password)> EnrollAsync(string deviceId, SigningKey? key = null, string? token = null)
    {
        key ??= SigningKey.Generate();
        using var response = await _fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
        {
            ["token"] = token ?? await _fleet.EnrollmentToken(),
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        }, apiKey: "");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var enrolled = JsonNode.Parse(body)!;
        Assert.Equal("password", enrolled["brokerAuth"]!.GetValue<string>());
        return (key, enrolled["brokerPassword"]!.GetValue<string>());
    }

    private MqttClientOptions Options(string clientId, string? username, string? password)
    {
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _mosquitto.Port).WithClientId(clientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithTimeout(TimeSpan.FromSeconds(10));
        if (username is not null)
            options = options.WithCredentials(username, password);
        return options.Build();
    }

    private async Task<MqttClientConnectResultCode> ConnectResultAsync(string clientId, string? username, string? password)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        return (await client.ConnectAsync(Options(clientId, username, password))).ResultCode;
    }

    private async Task<IMqttClient> ConnectAsync(string deviceId, string password)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await client.ConnectAsync(Options(deviceId, deviceId, password))).ResultCode);
        return client;
    }

    [Fact]
    public async Task Only_an_enrolled_device_with_its_own_id_and_password_gets_in_and_refusals_are_logged()
    {
        var (victimKey, victim) = await EnrollAsync("victim");
        var (_, intruder) = await EnrollAsync("intruder");
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("stranger", null, null));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("stranger", "stranger", "guess"));
        // Another device's id with the intruder's own password; the intruder's account under the victim's client id.
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("victim", "victim", intruder));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("victim", "intruder", intruder));
        // A device token is no use to Mosquitto, nor is a password with a changed character.
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("victim", "victim", DeviceToken.Create(victimKey, "victim", DateTimeOffset.UtcNow, TimeSpan.FromMinutes(5))));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("victim", "victim", victim[..^1] + (victim[^1] == 'A' ? 'B' : 'A')));
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectResultAsync("victim", "victim", victim));
        // Mosquitto logs each refusal (without the client id it refused).
        Wait.Until(() => _mosquitto.Output.Split('\n').Count(l => l.Contains("disconnected, not authorised", StringComparison.Ordinal)) >= 6,
            TimeSpan.FromSeconds(5), () => _mosquitto.Output);
        Assert.DoesNotContain(victim, _fleet.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_device_publishes_and_subscribes_only_under_its_own_prefix()
    {
        var (_, snoopPassword) = await EnrollAsync("snoop");
        using var snoop = await ConnectAsync("snoop", snoopPassword);
        var all = await snoop.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("ef/v1/+/telemetry/ack").Build());
        var other = await snoop.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("ef/v1/victim/#").Build());
        var own = await snoop.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("ef/v1/snoop/telemetry/ack").Build());
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, all.Items.Single().ResultCode);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, other.Items.Single().ResultCode);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS0, own.Items.Single().ResultCode);

        // Telemetry as another device, and a fleet-to-device topic of its own: dropped; its own telemetry is stored.
        await snoop.PublishAsync(Message("ef/v1/victim/telemetry", Batch("victim")));
        await snoop.PublishAsync(Message("ef/v1/snoop/state/desired", [1, 2, 3]));
        await snoop.PublishAsync(Message("ef/v1/snoop/telemetry", Batch("snoop")));
        await Wait.ForAsync(async () => await _fleet.Device("snoop") is { } d && d["device"]!["telemetryRecords"]!.GetValue<long>() == 1 ? d : null,
            TimeSpan.FromSeconds(15), () => _fleet.Output);
        Assert.Null(await _fleet.Device("victim"));
    }

    [Fact]
    public async Task Revoking_disables_the_account_and_disconnects_and_a_retried_enrollment_rekeys_it()
    {
        var token = await _fleet.EnrollmentToken();
        var key = SigningKey.Generate();
        var (_, first) = await EnrollAsync("lost-unit", key, token);
        // A lost response: the device retries with the same key and token and gets a new password; the old one stops working.
        var (_, second) = await EnrollAsync("lost-unit", key, token);
        Assert.NotEqual(first, second);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("lost-unit", "lost-unit", first));
        using var device = await ConnectAsync("lost-unit", second);
        var disconnected = new TaskCompletionSource();
        device.DisconnectedAsync += _ =>
        {
            disconnected.TrySetResult();
            return Task.CompletedTask;
        };
        Assert.Equal(HttpStatusCode.NoContent, (await _fleet.Send(HttpMethod.Post, "/api/devices/lost-unit/revoke")).StatusCode);
        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("lost-unit", "lost-unit", second));
    }

    [Fact]
    public async Task An_enrollment_under_the_fleets_account_or_any_account_not_a_devices_leaves_that_account_alone()
    {
        // The fleet's own dynamic-security admin: refused before the fleet asks Mosquitto anything.
        using var key = SigningKey.Generate();
        using (var response = await PostEnrollAsync(Mosquitto.AdminUser, key))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal(EnrollErrors.ReservedDeviceId, JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!.GetValue<string>());
        }
        // An account an operator made by hand, outside the reserved namespace: the fleet will not re-key it.
        using (var ctrl = ChildProcess.Start("mosquitto_ctrl", "mosquitto_ctrl", ["-h", "127.0.0.1", "-p", $"{_mosquitto.Port}", "-u", Mosquitto.AdminUser,
            "-P", _mosquitto.AdminPassword, "dynsec", "createClient", "grafana", "-p", "grafana-secret"]))
            Assert.True(ctrl.WaitForExit(TimeSpan.FromSeconds(15)) == 0, ctrl.Output);
        using (var response = await PostEnrollAsync("grafana", key))
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
            Assert.Contains("not an EdgeFleet device account", body, StringComparison.Ordinal);
        }
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectResultAsync("grafana", "grafana", "grafana-secret"));
        // The fleet's own login still works, and the fleet stays connected.
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectResultAsync("edgefleet-check", Mosquitto.AdminUser, _mosquitto.AdminPassword));
        await Task.Delay(1000);
        var health = (await _fleet.Health())!;
        Assert.Equal("ok", health["status"]!.GetValue<string>());
        Assert.True(health["brokerConnected"]!.GetValue<bool>());
    }

    /// <summary>
    /// A device enrolled by an older fleet has no right to the topics added since (ota/chunk/get); its first hello
    /// to this fleet adds them (Mosquitto applies them to the open connection), and it can then fetch artifacts through the broker.
    /// </summary>
    [Fact]
    public async Task A_device_enrolled_before_the_chunk_topics_gets_them_at_its_first_hello()
    {
        var (_, password) = await EnrollAsync("old-unit");
        using (var ctrl = ChildProcess.Start("mosquitto_ctrl", "mosquitto_ctrl", ["-h", "127.0.0.1", "-p", $"{_mosquitto.Port}", "-u", Mosquitto.AdminUser,
            "-P", _mosquitto.AdminPassword, "dynsec", "removeRoleACL", "edgefleet-device-old-unit", "publishClientSend", "ef/v1/old-unit/ota/chunk/get"]))
            Assert.True(ctrl.WaitForExit(TimeSpan.FromSeconds(15)) == 0, ctrl.Output);
        var request = new MqttApplicationMessageBuilder().WithTopic("ef/v1/old-unit/ota/chunk/get").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithPayload(WireReader.Write(new ChunkRequest { DeviceId = "old-unit", Sha256 = new string('a', 64), Offset = 0, Length = 10 }, WireJsonContext.Default.ChunkRequest))
            .Build();
        using var after = await ConnectAsync("old-unit", password);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await after.PublishAsync(request)).ReasonCode);
        var hello = WireReader.Write(new HelloMessage
        {
            DeviceId = "old-unit", AgentVersion = "0.0.9", HardwareProfile = "x86-64-generic", BootId = "b1", StartedAt = DateTimeOffset.UtcNow,
        }, WireJsonContext.Default.HelloMessage);
        await after.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("ef/v1/old-unit/hello").WithPayload(hello)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Wait.Until(() => _fleet.Output.Contains("Mosquitto role of device old-unit: added 1 topic rights", StringComparison.Ordinal),
            TimeSpan.FromSeconds(15), () => _fleet.Output);
        var frames = new System.Collections.Concurrent.ConcurrentQueue<byte[]>();
        after.ApplicationMessageReceivedAsync += e =>
        {
            frames.Enqueue(System.Buffers.BuffersExtensions.ToArray(e.ApplicationMessage.Payload));
            return Task.CompletedTask;
        };
        await after.SubscribeAsync("ef/v1/old-unit/ota/chunk/data", MqttQualityOfServiceLevel.AtMostOnce);
        Assert.Equal(MqttClientPublishReasonCode.Success, (await after.PublishAsync(request)).ReasonCode);
        Wait.Until(() => !frames.IsEmpty, TimeSpan.FromSeconds(10), () => _fleet.Output);
        Assert.Equal(ChunkStatus.NotAllowed, ChunkFrame.TryRead(frames.Single(), out _)!.Value.Status);
    }

    [Fact]
    public async Task A_device_cannot_take_the_fleets_client_id_on_mosquitto()
    {
        using var key = SigningKey.Generate();
        using (var response = await PostEnrollAsync("edgefleet-fleet-host-1", key))
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        // With its own valid account, under a client id in the fleet's namespace: Mosquitto binds the account to its id.
        var (_, password) = await EnrollAsync("pump-7");
        Assert.NotEqual(MqttClientConnectResultCode.Success, await ConnectResultAsync("edgefleet-fleet-host-1", "pump-7", password));
        await Task.Delay(500);
        Assert.True((await _fleet.Health())!["brokerConnected"]!.GetValue<bool>());
    }

    [Fact]
    public void The_setup_script_refuses_a_fleet_account_outside_the_reserved_namespace()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-mosquitto-setup-").FullName;
        using var setup = ChildProcess.Start("setup-mosquitto", Path.Combine(Repo.Root, "packaging/mosquitto/setup-mosquitto.sh"),
            ["--conf-dir", Path.Combine(dir, "conf.d"), "--state-dir", Path.Combine(dir, "state"), "--admin", "fleetadmin",
             "--password-file", Path.Combine(dir, "pw")]);
        Assert.Equal(2, setup.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Contains("must start with 'edgefleet'", setup.Output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(dir, "state")));
        Directory.Delete(dir, recursive: true);
    }

    private Task<HttpResponseMessage> PostEnrollAsync(string deviceId, SigningKey key) =>
        _fleet.EnrollmentToken().ContinueWith(token => _fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
        {
            ["token"] = token.Result,
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        }, apiKey: ""), TaskScheduler.Default).Unwrap();

    private static MqttApplicationMessage Message(string topic, byte[] payload) =>
        new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build();

    private static byte[] Batch(string device) => WireReader.Write(
        TelemetryBatchCodec.CreateBatch(device, "s", [new TelemetryRecord { Seq = 1, Ts = DateTimeOffset.UtcNow, Kind = TelemetryKind.Event, Message = "hi" }]),
        WireJsonContext.Default.TelemetryBatch);

    public void Dispose()
    {
        _fleet.Dispose();
        _mosquitto.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
