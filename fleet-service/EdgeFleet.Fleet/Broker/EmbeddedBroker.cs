using System.Collections;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using EdgeFleet.Fleet.Broker.Listener;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// The MQTT broker inside the fleet service (MQTTnet.Server). It admits the fleet service's own client by
/// its per-process secret and a device only with client id = user name = its id and a valid device token
/// (<see cref="DeviceAuthenticator"/>), enforces <see cref="TopicAccess"/>, and disconnects a device the
/// moment it is revoked.
/// </summary>
/// <remarks>
/// Device messages do not travel through the broker's routing: MQTTnet matches every publish against every
/// subscribed session, so with 10,000 devices connected each message would cost 10,000 checks (and a copy of
/// the session list). A device's publish is handed to the <see cref="DeviceMessageRouter"/> in the device's
/// own connection (its PUBACK follows once the message is handled, so a full ingest queue slows only the
/// devices sending), and an ack goes straight into the device's session (<see cref="TryDeliverAsync"/>).
/// </remarks>
public sealed partial class EmbeddedBroker(BrokerOptions options, TlsOptions tls, BrokerConnection connection, DeviceAuthenticator authenticator,
    DeviceRevocation revocation, DeviceMessageRouter router, FleetMetrics metrics, TimeProvider time, ILogger<EmbeddedBroker> log)
    : IHostedService, IDisposable
{
    private const string ServiceItem = "edgefleet.service";
    private MqttServer? _server;
    private GuardedTcpServerAdapter? _listener;

    private X509Certificate2Collection? _clientCa;

    /// <summary>Connected clients by id, with their session's items (which identify the session).</summary>
    private readonly ConcurrentDictionary<string, IDictionary> _connected = new(StringComparer.Ordinal);

    /// <summary>Sessions looked up for direct delivery; an entry whose items are not the connected session's is stale.</summary>
    private readonly ConcurrentDictionary<string, MqttSessionStatus> _sessions = new(StringComparer.Ordinal);

    private long _sessionsListedAt;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var builder = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointPort(options.Port)
            .WithMaxPendingMessagesPerClient(10_000);
        var (v4, v6) = options.DeviceListener(tls.Enabled);
        if (tls.Enabled)
        {
            // Devices come in over TLS; the plain listener stays for the fleet's own loopback client.
            builder = builder.WithDefaultEndpointBoundIPAddress(IPAddress.Loopback).WithDefaultEndpointBoundIPV6Address(IPAddress.IPv6Loopback)
                .WithEncryptedEndpoint().WithEncryptedEndpointPort(options.TlsPort)
                .WithEncryptedEndpointBoundIPAddress(v4).WithEncryptedEndpointBoundIPV6Address(v6);
            _clientCa = tls.LoadClientCa();
        }
        else
        {
            builder = builder.WithDefaultEndpointBoundIPAddress(v4).WithDefaultEndpointBoundIPV6Address(v6);
        }
        var serverOptions = builder.Build();
        if (tls.Enabled)
            serverOptions.TlsEndpointOptions.CertificateProvider = new LoadedCertificate(tls.LoadCertificate());
        if (_clientCa is not null)
        {
            // Ask for a certificate; a device without one still connects and authenticates with a token.
            serverOptions.TlsEndpointOptions.ClientCertificateRequired = true;
            serverOptions.TlsEndpointOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                certificate is null || DeviceCertificates.ChainsTo(new X509Certificate2(certificate), _clientCa);
        }
        _listener = new GuardedTcpServerAdapter(new ListenerLimits(options.MaxPendingConnections, TimeSpan.FromSeconds(options.ConnectTimeoutSeconds),
            new PacketLimits(options.MaxConnectBytes, options.MaxPacketBytes)), metrics, log);
        _server = new MqttServerFactory().CreateMqttServer(serverOptions, [_listener]);
        _server.ValidatingConnectionAsync += ValidateConnectionAsync;
        _server.InterceptingPublishAsync += InterceptPublishAsync;
        _server.InterceptingSubscriptionAsync += InterceptSubscriptionAsync;
        _server.ClientConnectedAsync += e =>
        {
            _connected[e.ClientId] = e.SessionItems;
            metrics.ClientConnected();
            return Task.CompletedTask;
        };
        _server.ClientDisconnectedAsync += e =>
        {
            // A session taken over by a new connection reports its end after the new one has connected.
            _connected.TryRemove(KeyValuePair.Create(e.ClientId, e.SessionItems));
            _sessions.TryRemove(e.ClientId, out _);
            metrics.ClientDisconnected();
            return Task.CompletedTask;
        };
        revocation.Subscribe(DisconnectAsync);
        await _server.StartAsync().ConfigureAwait(false);
        Log.Started(log, tls.Enabled ? $"TLS on {Where(v4, v6)} port {options.TlsPort}{(_clientCa is null ? "" : " (client certificates accepted)")}, plain on loopback port {options.Port}" : $"{Where(v4, v6)} port {options.Port}");
    }

    private static string Where(IPAddress v4, IPAddress v6) =>
        string.Join(" and ", new[] { v4, v6 }.Where(a => !a.Equals(IPAddress.None)).Select(a => a.ToString()))
        + (IPAddress.IsLoopback(v4) && (v6.Equals(IPAddress.None) || IPAddress.IsLoopback(v6))
            ? " (loopback only: set Fleet:Broker:BindAddress for devices on other hosts)" : "");

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
            await _server.StopAsync().ConfigureAwait(false);
    }

    private async Task DisconnectAsync(string deviceId, CancellationToken ct)
    {
        if (_server is null)
            return;
        foreach (var client in await _server.GetClientsAsync().ConfigureAwait(false))
        {
            if (client.Id == deviceId)
            {
                await client.DisconnectAsync(new MqttServerClientDisconnectOptions
                {
                    ReasonCode = MqttDisconnectReasonCode.NotAuthorized,
                    ReasonString = "device revoked",
                }).ConfigureAwait(false);
                Log.RevokedDisconnected(log, deviceId);
            }
        }
    }

    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs e)
    {
        // Every answer carries the fleet's time: a device whose clock is off (1970 after a power cut, hours ahead)
        // learns it here, refused or not, and its next token is valid.
        e.ResponseUserProperties ??= [];
        e.ResponseUserProperties.Add(new MQTTnet.Packets.MqttUserProperty(Protocol.FleetTimeProperty,
            Encoding.ASCII.GetBytes(time.GetUtcNow().ToString("O", System.Globalization.CultureInfo.InvariantCulture)).AsMemory()));
        if (e.UserName == BrokerConnection.ServiceUsername)
        {
            if (FixedTimeEquals(e.Password, connection.Password))
                e.SessionItems[ServiceItem] = true;
            else
                Deny(e, MqttConnectReasonCode.BadUserNameOrPassword, "wrong service credentials");
            return;
        }
        if (_clientCa is not null && e.ChannelAdapter.ClientCertificate is { } certificate)
        {
            await ValidateCertificateAsync(e, new X509Certificate2(certificate)).ConfigureAwait(false);
            return;
        }
        if (e.UserName is not null && !string.Equals(e.UserName, e.ClientId, StringComparison.Ordinal))
        {
            Deny(e, MqttConnectReasonCode.BadUserNameOrPassword, $"user name {LogText.Sanitize(e.UserName)} is not the client id");
            return;
        }
        var result = await authenticator.AuthenticateAsync(e.ClientId, e.Password, CancellationToken.None).ConfigureAwait(false);
        if (!result.Valid)
        {
            Deny(e, result.Error switch
            {
                DeviceAuthError.InvalidDeviceId => MqttConnectReasonCode.ClientIdentifierNotValid,
                DeviceAuthError.Revoked => MqttConnectReasonCode.Banned,
                DeviceAuthError.UnknownDevice => MqttConnectReasonCode.NotAuthorized,
                _ => MqttConnectReasonCode.BadUserNameOrPassword,
            }, result.Reason);
        }
    }

    /// <summary>Mutual TLS: the certificate (already chained to the device CA) names the device; it must be enrolled and not revoked.</summary>
    private async Task ValidateCertificateAsync(ValidatingConnectionEventArgs e, X509Certificate2 certificate)
    {
        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (!string.Equals(name, e.ClientId, StringComparison.Ordinal))
        {
            Deny(e, MqttConnectReasonCode.NotAuthorized, $"client certificate is for '{LogText.Sanitize(name)}', not this client id");
            return;
        }
        var result = await authenticator.CheckEnrolledAsync(e.ClientId, CancellationToken.None).ConfigureAwait(false);
        if (!result.Valid)
        {
            Deny(e, result.Error == DeviceAuthError.Revoked ? MqttConnectReasonCode.Banned : MqttConnectReasonCode.NotAuthorized, result.Reason);
            return;
        }
        Log.CertificateAccepted(log, e.ClientId, certificate.Thumbprint);
    }

    private void Deny(ValidatingConnectionEventArgs e, MqttConnectReasonCode code, string reason)
    {
        e.ReasonCode = code;
        metrics.CountDenied();
        Log.ConnectionRefused(log, LogText.Sanitize(e.ClientId), reason);
    }

    private async Task InterceptPublishAsync(InterceptingPublishEventArgs e)
    {
        if (e.SessionItems.Contains(ServiceItem) || e.ClientId is null)
            return; // the fleet service itself, or a message injected by the server
        var topic = e.ApplicationMessage.Topic;
        e.ProcessPublish = false;
        if (!TopicAccess.MayPublish(e.ClientId, topic))
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            metrics.CountDenied();
            Log.PublishDenied(log, e.ClientId, LogText.Sanitize(topic));
            return;
        }
        // Device to fleet, and no one else subscribes to device topics: handled here rather than routed.
        await router.TryHandleAsync(topic, DeviceMessageRouter.CopyPayload(e.ApplicationMessage.Payload)).ConfigureAwait(false);
    }

    /// <summary>
    /// Puts a reply (QoS 0) straight into the connected device's session, without matching it against every
    /// session's subscriptions. False when the device is not connected or its session is not known yet (the
    /// caller then publishes it the ordinary way).
    /// </summary>
    public async ValueTask<bool> TryDeliverAsync(Reply reply)
    {
        if (_server is null || !Topics.TryParse(reply.Topic, out var deviceId, out _) || !_connected.TryGetValue(deviceId, out var items))
            return false;
        if (!_sessions.TryGetValue(deviceId, out var session) || !ReferenceEquals(session.Items, items))
        {
            await ListSessionsAsync().ConfigureAwait(false);
            if (!_sessions.TryGetValue(deviceId, out session) || !ReferenceEquals(session.Items, items))
                return false;
        }
        var message = new MqttApplicationMessage { Topic = reply.Topic, Payload = new System.Buffers.ReadOnlySequence<byte>(reply.Payload), QualityOfServiceLevel = MqttQualityOfServiceLevel.AtMostOnce };
        try
        {
            return session.TryEnqueueApplicationMessage(message, out _);
        }
        catch (ObjectDisposedException)
        {
            return false; // the session ended a moment ago
        }
    }

    /// <summary>Refreshes the session lookup, at most ten times a second (listing costs one object per session).</summary>
    private async Task ListSessionsAsync()
    {
        var last = Interlocked.Read(ref _sessionsListedAt);
        var now = Environment.TickCount64;
        if (now - last < 100 || Interlocked.CompareExchange(ref _sessionsListedAt, now, last) != last)
            return;
        foreach (var session in await _server!.GetSessionsAsync().ConfigureAwait(false))
        {
            if (_connected.TryGetValue(session.Id, out var items) && ReferenceEquals(items, session.Items))
                _sessions[session.Id] = session;
        }
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
            Log.SubscribeDenied(log, e.ClientId, LogText.Sanitize(filter));
        }
        return Task.CompletedTask;
    }

    private static bool FixedTimeEquals(string? given, string? expected) =>
        given is not null && expected is not null
        && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(expected));

    public void Dispose() => _server?.Dispose();

    private static partial class Log
    {
        [LoggerMessage(3006, LogLevel.Information, "Device {DeviceId} connected with client certificate {Thumbprint}")]
        public static partial void CertificateAccepted(ILogger logger, string deviceId, string thumbprint);

        [LoggerMessage(3001, LogLevel.Information, "Embedded MQTT broker listening: {Listeners}")]
        public static partial void Started(ILogger logger, string listeners);

        [LoggerMessage(3002, LogLevel.Warning, "Refused MQTT connection from client {ClientId}: {Reason}")]
        public static partial void ConnectionRefused(ILogger logger, string clientId, string reason);

        [LoggerMessage(3003, LogLevel.Warning, "Dropped publish by {ClientId} to {Topic}: outside its topics")]
        public static partial void PublishDenied(ILogger logger, string clientId, string topic);

        [LoggerMessage(3005, LogLevel.Warning, "Disconnected revoked device {DeviceId}")]
        public static partial void RevokedDisconnected(ILogger logger, string deviceId);

        [LoggerMessage(3004, LogLevel.Warning, "Refused subscription by {ClientId} to {Filter}: outside its topics")]
        public static partial void SubscribeDenied(ILogger logger, string clientId, string filter);
    }
}

/// <summary>The fleet's certificate as loaded from its PEM files.</summary>
internal sealed class LoadedCertificate(X509Certificate2 certificate) : MQTTnet.Certificates.ICertificateProvider
{
    public X509Certificate2 GetCertificate() => certificate;
}
