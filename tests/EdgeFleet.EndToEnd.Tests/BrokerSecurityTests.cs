using System.Buffers;
using System.Net;
using EdgeFleet.EndToEnd.Tests.Harness;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Raw MQTT clients and HTTP calls against the fleet: enrollment, device tokens, revocation, topic ACLs,
/// operator roles, garbage payloads.
/// </summary>
[Collection("processes")]
public sealed class BrokerSecurityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-security-").FullName;
    private readonly Fleet _fleet;
    private readonly Dictionary<string, SigningKey> _keys = [];

    public BrokerSecurityTests() => _fleet = new Fleet(_dir);

    /// <summary>Enrolls a device with a fresh key through the real API, as the agent does.</summary>
    private async Task<SigningKey> EnrollAsync(string deviceId)
    {
        var key = SigningKey.Generate();
        var response = await PostEnrollAsync(deviceId, key, await _fleet.EnrollmentToken());
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        _keys[deviceId] = key;
        return key;
    }

    private Task<HttpResponseMessage> PostEnrollAsync(string deviceId, SigningKey key, string token) =>
        _fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
        {
            ["token"] = token,
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        }, apiKey: "");

    private static string Token(SigningKey key, string deviceId, TimeSpan? lifetime = null, DateTimeOffset? now = null) =>
        DeviceToken.Create(key, deviceId, now ?? DateTimeOffset.UtcNow, lifetime ?? TimeSpan.FromMinutes(5));

    private MqttClientOptions Options(string clientId, string? username, string? password)
    {
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _fleet.BrokerPort).WithClientId(clientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500);
        if (username is not null)
            options = options.WithCredentials(username, password);
        return options.Build();
    }

    /// <summary>Connects an enrolled device (enrolling it first if needed) with a valid token.</summary>
    private async Task<IMqttClient> ConnectAsync(string deviceId)
    {
        var key = _keys.TryGetValue(deviceId, out var known) ? known : await EnrollAsync(deviceId);
        var client = new MqttClientFactory().CreateMqttClient();
        var result = await client.ConnectAsync(Options(deviceId, deviceId, Token(key, deviceId)));
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        return client;
    }

    private async Task<MqttClientConnectResultCode> ConnectResultAsync(string clientId, string? username, string? password) =>
        await ConnectResultAsync(Options(clientId, username, password));

    [Fact]
    public async Task Devices_without_a_valid_token_of_their_own_are_refused_and_the_attempt_is_logged()
    {
        var victim = await EnrollAsync("victim");
        var intruder = await EnrollAsync("intruder");
        using var stranger = SigningKey.Generate();
        var now = DateTimeOffset.UtcNow;
        // Not enrolled at all, with or without a token.
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("stranger", null, null));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync("stranger", "stranger", Token(stranger, "stranger")));
        // Another device's id with the intruder's own valid token, or a token it signed for the victim.
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", Token(intruder, "intruder")));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", Token(intruder, "victim")));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "intruder", Token(intruder, "intruder")));
        // Forged (unknown key), expired, minted for a whole day, issued in the future, garbage, none.
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", Token(stranger, "victim")));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", Token(victim, "victim", TimeSpan.FromMinutes(5), now.AddHours(-1))));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", Token(victim, "victim", TimeSpan.FromHours(24))));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", Token(victim, "victim", TimeSpan.FromMinutes(5), now.AddHours(2))));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", "eft1.garbage.garbage"));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", null));
        // A token whose body was changed after signing (subject swapped in).
        var good = Token(victim, "victim");
        var forgedBody = System.Buffers.Text.Base64Url.EncodeToString("{\"sub\":\"victim\",\"iat\":1,\"exp\":99999999999}"u8);
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("victim", "victim", "eft1." + forgedBody + good[good.LastIndexOf('.')..]));
        // The real one gets in.
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectResultAsync("victim", "victim", good));

        Assert.True((await _fleet.Health())!["brokerDenied"]!.GetValue<long>() >= 11);
        Wait.Until(() => _fleet.Output.Contains("Refused MQTT connection from client victim: token expired", StringComparison.Ordinal), TimeSpan.FromSeconds(5), () => _fleet.Output);
        Wait.Until(() => _fleet.Output.Contains("Refused MQTT connection from client victim: token signature does not verify", StringComparison.Ordinal)
            && _fleet.Output.Contains("Refused MQTT connection from client stranger: device is not enrolled", StringComparison.Ordinal), TimeSpan.FromSeconds(5), () => _fleet.Output);
        Assert.DoesNotContain(good, _fleet.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_revoked_device_is_disconnected_at_once_and_refused_from_then_on()
    {
        using var device = await ConnectAsync("lost-unit");
        var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>();
        device.DisconnectedAsync += e =>
        {
            disconnected.TrySetResult(e);
            return Task.CompletedTask;
        };
        // A viewer may not revoke; an operator may.
        var viewer = await CreateApiKeyAsync("auditor", "viewer");
        Assert.Equal(HttpStatusCode.Forbidden, (await _fleet.Send(HttpMethod.Post, "/api/devices/lost-unit/revoke", apiKey: viewer)).StatusCode);
        var operatorKey = await CreateApiKeyAsync("field ops", "operator");
        Assert.Equal(HttpStatusCode.NoContent, (await _fleet.Send(HttpMethod.Post, "/api/devices/lost-unit/revoke", apiKey: operatorKey)).StatusCode);

        var gone = await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, gone.Reason);
        Assert.Equal(MqttClientConnectResultCode.Banned, await ConnectResultAsync("lost-unit", "lost-unit", Token(_keys["lost-unit"], "lost-unit")));
        // Its token no longer opens the HTTP API either, and it cannot enroll again under that id.
        Assert.Equal(HttpStatusCode.Unauthorized, (await _fleet.Send(HttpMethod.Get, $"/api/artifacts/{new string('0', 64)}", apiKey: Token(_keys["lost-unit"], "lost-unit"))).StatusCode);
        var again = await PostEnrollAsync("lost-unit", SigningKey.Generate(), await _fleet.EnrollmentToken());
        Assert.Equal(HttpStatusCode.Forbidden, again.StatusCode);
        Assert.Contains("device-revoked", await again.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.NotNull((await _fleet.Device("lost-unit"))!["device"]!["revokedAt"]);

        // The audit log says who did it.
        var audit = JsonNode.Parse(await (await _fleet.Send(HttpMethod.Get, "/api/audit?target=lost-unit", apiKey: viewer)).Content.ReadAsStringAsync())!.AsArray();
        var revoke = audit.Single(e => e!["action"]!.GetValue<string>() == "device.revoke")!;
        Assert.StartsWith("key:", revoke["actor"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains(audit, e => e!["action"]!.GetValue<string>() == "device.enroll");
    }

    [Fact]
    public async Task Enrollment_tokens_are_one_time_and_bad_enrollments_get_clear_reasons()
    {
        var token = await _fleet.EnrollmentToken();
        using var key = SigningKey.Generate();
        Assert.Equal(HttpStatusCode.OK, (await PostEnrollAsync("cam-1", key, token)).StatusCode);
        // The same device retrying after a lost response is fine; a second device with the token is not.
        Assert.Equal(HttpStatusCode.OK, (await PostEnrollAsync("cam-1", key, token)).StatusCode);
        await AssertRefusedAsync(PostEnrollAsync("cam-2", SigningKey.Generate(), token), HttpStatusCode.Forbidden, "token-used");
        // Someone else claiming an enrolled id.
        await AssertRefusedAsync(PostEnrollAsync("cam-1", SigningKey.Generate(), await _fleet.EnrollmentToken()), HttpStatusCode.Conflict, "device-id-taken");
        await AssertRefusedAsync(PostEnrollAsync("cam-3", SigningKey.Generate(), "efe_made-up"), HttpStatusCode.Forbidden, "invalid-token");
        await AssertRefusedAsync(PostEnrollAsync("Not/Valid", SigningKey.Generate(), await _fleet.EnrollmentToken()), HttpStatusCode.BadRequest, "malformed");
        await AssertRefusedAsync(_fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject { ["token"] = "x", ["deviceId"] = "cam-4", ["publicKey"] = "AAAA" }, apiKey: ""),
            HttpStatusCode.BadRequest, "malformed");
        using (var garbage = new HttpClient())
            Assert.Equal(HttpStatusCode.BadRequest, (await garbage.PostAsync(new Uri($"{_fleet.Url}/api/enroll"), new StringContent("{not json", System.Text.Encoding.UTF8, "application/json"))).StatusCode);
        // Tokens come only from operators; the secret is never logged.
        Assert.Equal(HttpStatusCode.Unauthorized, (await _fleet.Send(HttpMethod.Post, "/api/enrollment-tokens", new JsonObject(), apiKey: "")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await _fleet.Send(HttpMethod.Post, "/api/enrollment-tokens", new JsonObject(), apiKey: "efk_000000000000_wrong")).StatusCode);
        Assert.DoesNotContain(token, _fleet.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(_fleet.AdminKey, _fleet.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Roles_limit_what_an_api_key_may_do_and_revoked_keys_stop_working()
    {
        var viewer = await CreateApiKeyAsync("dashboard", "viewer");
        Assert.Equal(HttpStatusCode.OK, (await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: viewer)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await _fleet.Send(HttpMethod.Post, "/api/enrollment-tokens", new JsonObject(), apiKey: viewer)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await _fleet.Send(HttpMethod.Post, "/api/api-keys", new JsonObject { ["name"] = "x", ["role"] = "admin" }, apiKey: viewer)).StatusCode);
        var operatorKey = await CreateApiKeyAsync("ops", "operator");
        Assert.Equal(HttpStatusCode.Forbidden, (await _fleet.Send(HttpMethod.Get, "/api/api-keys", apiKey: operatorKey)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: "")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _fleet.Send(HttpMethod.Get, "/api/health", apiKey: "")).StatusCode);
        // A device token opens artifact downloads and nothing else.
        await EnrollAsync("sensor-9");
        var deviceToken = Token(_keys["sensor-9"], "sensor-9");
        Assert.Equal(HttpStatusCode.NotFound, (await _fleet.Send(HttpMethod.Get, $"/api/artifacts/{new string('0', 64)}", apiKey: deviceToken)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: deviceToken)).StatusCode);

        var id = viewer.Split('_')[1];
        Assert.Equal(HttpStatusCode.NoContent, (await _fleet.Send(HttpMethod.Delete, $"/api/api-keys/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: viewer)).StatusCode);
        // The console logger writes asynchronously: wait for the line rather than expect it at once.
        Wait.Until(() => _fleet.Output.Contains($"Refused API credential of key:{id} for /api/devices: API key was revoked", StringComparison.Ordinal),
            TimeSpan.FromSeconds(5), () => _fleet.Output);
    }

    private async Task<string> CreateApiKeyAsync(string name, string role)
    {
        var response = await _fleet.Send(HttpMethod.Post, "/api/api-keys", new JsonObject { ["name"] = name, ["role"] = role });
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return JsonNode.Parse(await response.Content.ReadAsStringAsync())!["key"]!.GetValue<string>();
    }

    private static async Task AssertRefusedAsync(Task<HttpResponseMessage> call, HttpStatusCode status, string error)
    {
        using var response = await call;
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{response.StatusCode}: {body}");
        Assert.Equal(error, JsonNode.Parse(body)!["error"]!.GetValue<string>());
    }

    private static MqttApplicationMessage Message(string topic, byte[] payload) =>
        new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build();

    private static byte[] ValidBatch(string device) => WireReader.Write(
        TelemetryBatchCodec.CreateBatch(device, "s", [new TelemetryRecord { Seq = 1, Ts = DateTimeOffset.UtcNow, Kind = TelemetryKind.Event, Message = "hi" }]),
        WireJsonContext.Default.TelemetryBatch);

    [Fact]
    public async Task A_device_cannot_publish_as_another_device()
    {
        using var intruder = await ConnectAsync("intruder");
        var result = await intruder.PublishAsync(Message("ef/v1/victim/telemetry", ValidBatch("victim")));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
        await Task.Delay(500);
        Assert.Null(await _fleet.Device("victim"));
        Assert.True((await _fleet.Health())!["brokerDenied"]!.GetValue<long>() >= 1);
    }

    [Fact]
    public async Task Acks_go_to_their_own_device_only_and_device_messages_to_the_fleet_only()
    {
        long Clients() => _fleet.Health().Result!["brokerClients"]!.GetValue<long>();
        var before = Clients(); // the fleet's own client
        using var sender = await ConnectAsync("sender");
        using var bystander = await ConnectAsync("bystander");
        Wait.Until(() => Clients() == before + 2, TimeSpan.FromSeconds(10), () => $"brokerClients {Clients()}, expected {before + 2}");
        var received = new System.Collections.Concurrent.ConcurrentQueue<(string Client, string Topic)>();
        foreach (var (client, id) in new[] { (sender, "sender"), (bystander, "bystander") })
        {
            client.ApplicationMessageReceivedAsync += e =>
            {
                received.Enqueue((id, e.ApplicationMessage.Topic));
                return Task.CompletedTask;
            };
            // Everything under its own prefix, its own publishes included.
            await client.SubscribeAsync($"ef/v1/{id}/#", MqttQualityOfServiceLevel.AtLeastOnce);
        }

        for (var seq = 1; seq <= 3; seq++)
        {
            var batch = WireReader.Write(TelemetryBatchCodec.CreateBatch("sender", "s",
                [new TelemetryRecord { Seq = seq, Ts = DateTimeOffset.UtcNow, Kind = TelemetryKind.Event, Message = "hi" }]), WireJsonContext.Default.TelemetryBatch);
            var result = await sender.PublishAsync(Message("ef/v1/sender/telemetry", batch));
            Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode); // handled by the fleet, not "no subscribers"
        }
        Wait.Until(() => received.Count(r => r.Topic == "ef/v1/sender/telemetry/ack") == 3, TimeSpan.FromSeconds(10), () => string.Join(", ", received));
        await Task.Delay(300);
        Assert.All(received, r => Assert.Equal(("sender", "ef/v1/sender/telemetry/ack"), r)); // no echo of its telemetry, nothing for the bystander
        Assert.Equal(3, (await _fleet.Device("sender"))!["device"]!["telemetryRecords"]!.GetValue<long>());

        await bystander.DisconnectAsync();
        Wait.Until(() => Clients() == before + 1, TimeSpan.FromSeconds(10), () => $"brokerClients {Clients()}, expected {before + 1}");
    }

    [Fact]
    public async Task Simulated_devices_with_the_shared_keepalive_reconnect_and_deliver_everything_once()
    {
        long Clients() => _fleet.Health().Result!["brokerClients"]!.GetValue<long>();
        var before = Clients();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{_fleet.HttpPort}") };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", _fleet.AdminKey);
        await using var sim = await EdgeFleet.Cli.Sim.SimulatedFleet.EnrollAsync(http,
            new EdgeFleet.Cli.Sim.SimOptions { Devices = 20, Rate = 50, BatchRecords = 10, Prefix = "keepalive", SharedKeepAlive = true }, CancellationToken.None);
        await sim.ConnectAsync(CancellationToken.None);
        Wait.Until(() => Clients() == before + 20, TimeSpan.FromSeconds(10), () => $"brokerClients {Clients()}");
        await sim.RunAsync(TimeSpan.FromSeconds(2), CancellationToken.None);
        await sim.DisconnectAsync(CancellationToken.None);
        Wait.Until(() => Clients() == before, TimeSpan.FromSeconds(10), () => $"brokerClients {Clients()} after disconnecting");
        await sim.ConnectAsync(CancellationToken.None); // same ids, keys and streams
        Wait.Until(() => Clients() == before + 20, TimeSpan.FromSeconds(10), () => $"brokerClients {Clients()} after reconnecting");
        await sim.RunAsync(TimeSpan.FromSeconds(3), CancellationToken.None); // the ping loop reaches all 20 within 2 s
        Assert.True(await sim.DrainAsync(TimeSpan.FromSeconds(30), CancellationToken.None));
        Assert.Equal(0, sim.PingsFailed);
        Assert.Equal(20, sim.ConnectedCount);
        long stored = 0;
        foreach (var device in sim.Devices)
            stored += (await _fleet.Device(device.Id))!["device"]!["telemetryRecords"]!.GetValue<long>();
        Assert.Equal(sim.Sent, stored);
    }

    [Fact]
    public async Task A_device_cannot_subscribe_to_other_devices_topics()
    {
        using var snoop = await ConnectAsync("snoop");
        var all = await snoop.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("ef/v1/+/telemetry/ack").Build());
        var own = await snoop.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("ef/v1/snoop/telemetry/ack").Build());
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, all.Items.Single().ResultCode);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS0, own.Items.Single().ResultCode);
    }

    [Fact]
    public async Task Invalid_client_ids_and_wrong_service_passwords_are_refused()
    {
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, await ConnectResultAsync("Not/A/Device", null, null));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync("x", "edgefleet-service", "guess"));
        Assert.True((await _fleet.Health())!["brokerDenied"]!.GetValue<long>() >= 2);
    }

    private static async Task<MqttClientConnectResultCode> ConnectResultAsync(MqttClientOptions options)
    {
        // MQTT 5: a refused CONNECT comes back as a result with the broker's reason code.
        using var client = new MqttClientFactory().CreateMqttClient();
        return (await client.ConnectAsync(options)).ResultCode;
    }

    [Fact]
    public async Task Garbage_on_a_device_topic_is_rejected_and_the_fleet_carries_on()
    {
        using var device = await ConnectAsync("noisy");
        await device.PublishAsync(Message("ef/v1/noisy/telemetry", [0xff, 0x00, 0x13, 0x37]));
        await device.PublishAsync(Message("ef/v1/noisy/hello", "{\"v\":1}"u8.ToArray()));
        await device.PublishAsync(Message("ef/v1/noisy/telemetry", new byte[Protocol.MaxPayloadBytes + 10]));
        var ackTopic = "ef/v1/noisy/telemetry/ack";
        var acked = new TaskCompletionSource<TelemetryAck>();
        device.ApplicationMessageReceivedAsync += e =>
        {
            var ack = WireReader.Read(e.ApplicationMessage.Payload.ToArray(), WireJsonContext.Default.TelemetryAck, "noisy");
            if (ack.Ok)
                acked.TrySetResult(ack.Message!);
            return Task.CompletedTask;
        };
        await device.SubscribeAsync(ackTopic, MqttQualityOfServiceLevel.AtLeastOnce);
        await device.PublishAsync(Message("ef/v1/noisy/telemetry", ValidBatch("noisy")));

        var ackMessage = await acked.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, ackMessage.AckedSeq);
        var rejected = (await _fleet.Health())!["messagesRejected"]!;
        Assert.Equal(2, rejected["Malformed"]!.GetValue<long>());
        Assert.Equal(1, rejected["TooLarge"]!.GetValue<long>());
    }

    [Fact]
    public async Task The_api_answers_bad_and_unknown_device_ids_clearly()
    {
        Assert.Equal(HttpStatusCode.BadRequest, (await _fleet.Get("/api/devices/NOT..valid!")).StatusCode);
        var unknown = await _fleet.Get("/api/devices/never-seen");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("UnknownDevice", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    public void Dispose()
    {
        foreach (var key in _keys.Values)
            key.Dispose();
        _fleet.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
