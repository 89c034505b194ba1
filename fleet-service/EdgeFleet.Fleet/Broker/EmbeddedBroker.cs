using System.Security.Cryptography;
using System.Text;
using EdgeFleet.Shared.Wire;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// The MQTT broker inside the fleet service (MQTTnet.Server). It admits the fleet service's own client by
/// its per-process secret and devices by client id = device id, and enforces <see cref="TopicAccess"/>.
/// Device credentials (enrollment, signed tokens) come with the fleet-core work.
/// </summary>
public sealed partial class EmbeddedBroker(BrokerOptions options, BrokerConnection connection, FleetMetrics metrics, ILogger<EmbeddedBroker> log) : IHostedService, IDisposable
{
    private const string ServiceItem = "edgefleet.service";
    private MqttServer? _server;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var serverOptions = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointPort(options.Port)
            .WithMaxPendingMessagesPerClient(10_000)
            .Build();
        _server = new MqttServerFactory().CreateMqttServer(serverOptions);
        _server.ValidatingConnectionAsync += ValidateConnectionAsync;
        _server.InterceptingPublishAsync += InterceptPublishAsync;
        _server.InterceptingSubscriptionAsync += InterceptSubscriptionAsync;
        await _server.StartAsync().ConfigureAwait(false);
        Log.Started(log, options.Port);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
            await _server.StopAsync().ConfigureAwait(false);
    }

    private Task ValidateConnectionAsync(ValidatingConnectionEventArgs e)
    {
        if (e.UserName == BrokerConnection.ServiceUsername)
        {
            if (FixedTimeEquals(e.Password, connection.Password))
            {
                e.SessionItems[ServiceItem] = true;
                return Task.CompletedTask;
            }
            return Deny(e, MqttConnectReasonCode.BadUserNameOrPassword, "wrong service credentials");
        }
        if (!DeviceId.IsValid(e.ClientId))
            return Deny(e, MqttConnectReasonCode.ClientIdentifierNotValid, "client id is not a valid device id");
        return Task.CompletedTask;
    }

    private Task Deny(ValidatingConnectionEventArgs e, MqttConnectReasonCode code, string reason)
    {
        e.ReasonCode = code;
        metrics.CountDenied();
        Log.ConnectionRefused(log, Sanitize(e.ClientId), reason);
        return Task.CompletedTask;
    }

    private Task InterceptPublishAsync(InterceptingPublishEventArgs e)
    {
        if (e.SessionItems.Contains(ServiceItem) || e.ClientId is null)
            return Task.CompletedTask; // the fleet service itself, or a message injected by the server
        var topic = e.ApplicationMessage.Topic;
        if (!TopicAccess.MayPublish(e.ClientId, topic))
        {
            e.ProcessPublish = false;
            e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            metrics.CountDenied();
            Log.PublishDenied(log, e.ClientId, Sanitize(topic));
        }
        return Task.CompletedTask;
    }

    private Task InterceptSubscriptionAsync(InterceptingSubscriptionEventArgs e)
    {
        if (e.SessionItems.Contains(ServiceItem))
            return Task.CompletedTask;
        var filter = e.TopicFilter.Topic;
        if (!TopicAccess.MaySubscribe(e.ClientId, filter))
        {
            e.ProcessSubscription = false;
            e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
            metrics.CountDenied();
            Log.SubscribeDenied(log, e.ClientId, Sanitize(filter));
        }
        return Task.CompletedTask;
    }

    private static bool FixedTimeEquals(string? given, string? expected) =>
        given is not null && expected is not null
        && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(expected));

    /// <summary>Client-supplied text goes into logs only bounded and printable.</summary>
    private static string Sanitize(string? text)
    {
        if (string.IsNullOrEmpty(text))
            return "(empty)";
        var clean = new string(text.Take(128).Select(c => char.IsControl(c) ? '?' : c).ToArray());
        return text.Length > 128 ? clean + "…" : clean;
    }

    public void Dispose() => _server?.Dispose();

    private static partial class Log
    {
        [LoggerMessage(3001, LogLevel.Information, "Embedded MQTT broker listening on port {Port}")]
        public static partial void Started(ILogger logger, int port);

        [LoggerMessage(3002, LogLevel.Warning, "Refused MQTT connection from client {ClientId}: {Reason}")]
        public static partial void ConnectionRefused(ILogger logger, string clientId, string reason);

        [LoggerMessage(3003, LogLevel.Warning, "Dropped publish by {ClientId} to {Topic}: outside its topics")]
        public static partial void PublishDenied(ILogger logger, string clientId, string topic);

        [LoggerMessage(3004, LogLevel.Warning, "Refused subscription by {ClientId} to {Filter}: outside its topics")]
        public static partial void SubscribeDenied(ILogger logger, string clientId, string filter);
    }
}
