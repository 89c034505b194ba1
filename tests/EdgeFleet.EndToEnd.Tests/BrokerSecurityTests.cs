using System.Buffers;
using System.Net;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>Raw MQTT clients against the fleet's embedded broker: topic ACLs and garbage payloads.</summary>
[Collection("processes")]
public sealed class BrokerSecurityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-security-").FullName;
    private readonly Fleet _fleet;

    public BrokerSecurityTests() => _fleet = new Fleet(_dir);

    private async Task<IMqttClient> ConnectAsync(string clientId, string? username = null, string? password = null)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _fleet.BrokerPort).WithClientId(clientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500);
        if (username is not null)
            options = options.WithCredentials(username, password);
        await client.ConnectAsync(options.Build());
        return client;
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
        var badId = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _fleet.BrokerPort).WithClientId("Not/A/Device")
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).Build();
        var impostor = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _fleet.BrokerPort).WithClientId("x")
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithCredentials("edgefleet-service", "guess").Build();
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, await ConnectResultAsync(badId));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync(impostor));
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
        _fleet.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
