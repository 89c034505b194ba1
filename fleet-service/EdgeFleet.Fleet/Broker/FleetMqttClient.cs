using System.Buffers;
using System.Threading.Channels;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// The fleet service's connection to the broker, embedded or external alike: subscribes to every device's
/// hello, reported state and telemetry, hands each message to the router, and publishes the replies
/// (acks) from a bounded queue so that message handling never waits on its own publishes.
/// </summary>
public sealed partial class FleetMqttClient : BackgroundService
{
    private static readonly TopicKind[] Subscribed = [.. Enum.GetValues<TopicKind>().Where(Topics.IsFromDevice)];
    private readonly BrokerConnection _connection;
    private readonly DeviceMessageRouter _router;
    private readonly IFleetStore _store;
    private readonly ILogger<FleetMqttClient> _log;
    private readonly IMqttClient _client;
    private readonly ReplyQueue _replies;
    private readonly TaskCompletionSource<int> _receiveMaximum = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Received messages wait here for the router. The MQTT client's receive loop only copies a message in
    /// and returns: if it waited for the router (which waits when ingest is full), it would stop reading the
    /// PUBACKs of our own ack publishes on the same connection and both directions would stall. A message
    /// is acknowledged to the broker once handled, so the broker's in-flight limit is the backpressure.
    /// </summary>
    /// <remarks>
    /// One inbox per core, chosen by device id: messages of one device stay in order, different devices are
    /// decoded in parallel.
    /// </remarks>
    private readonly Channel<(string Topic, byte[] Payload, MqttApplicationMessageReceivedEventArgs Received)>[] _inboxes =
        [.. Enumerable.Range(0, Math.Max(1, Environment.ProcessorCount)).Select(_ =>
            Channel.CreateUnbounded<(string, byte[], MqttApplicationMessageReceivedEventArgs)>(new UnboundedChannelOptions { SingleReader = true }))];

    /// <summary>
    /// In the reserved namespace (no device can enroll under it) and random per process, so nothing an anonymous
    /// caller can read (the health endpoint's instance name) tells a client id to collide with.
    /// </summary>
    private readonly string _clientId = DeviceId.ReservedPrefix + "-fleet-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));

    private readonly MosquittoDynamicSecurity? _accounts;
    private readonly EmbeddedBroker? _embedded;

    public FleetMqttClient(BrokerConnection connection, DeviceMessageRouter router, IFleetStore store, ReplyQueue replies, ILogger<FleetMqttClient> log,
        MosquittoDynamicSecurity? accounts = null, EmbeddedBroker? embedded = null)
    {
        _accounts = accounts;
        _embedded = embedded;
        _replies = replies;
        _store = store;
        _connection = connection;
        _router = router;
        _log = log;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
    }

    public bool Connected => _client.IsConnected;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var publisher = PublishRepliesAsync(stoppingToken);
        var handlers = _inboxes.Select(HandleInboxAsync).ToArray();
        var attempt = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!_client.IsConnected)
                {
                    await ConnectAsync(stoppingToken).ConfigureAwait(false);
                    attempt = 0;
                }
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Adapter.MqttConnectingFailedException
                or InvalidOperationException or OperationCanceledException or IOException or System.Net.Sockets.SocketException or BrokerAccountException)
            {
                var delay = TimeSpan.FromSeconds(Math.Min(10, 0.2 * Math.Pow(2, attempt++)) * (0.5 + (Random.Shared.NextDouble() / 2)));
                Log.NotConnected(_log, _connection.ToString(), e.Message, delay.TotalSeconds);
                await Task.Delay(delay, stoppingToken).ConfigureAwait(false);
            }
        }
        foreach (var inbox in _inboxes)
            inbox.Writer.TryComplete();
        await Task.WhenAll(handlers).ConfigureAwait(false);
        await publisher.ConfigureAwait(false);
        if (_client.IsConnected)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await _client.DisconnectAsync(new MqttClientDisconnectOptions(), timeout.Token).ConfigureAwait(false);
        }
    }

    private async Task ConnectAsync(CancellationToken ct)
    {
        if (_accounts is not null)
        {
            // The fleet's own rights on a dynamic-security Mosquitto (before subscribing: granting them
            // disconnects the account's sessions), and revocations the broker missed.
            await _accounts.EnsureServiceAccessAsync(ct).ConfigureAwait(false);
            await _accounts.ReconcileRevokedAsync(_store, ct).ConfigureAwait(false);
        }
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(_connection.Host, _connection.Port)
            .WithClientId(_clientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(true)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (_connection.Username is { } user)
            builder = builder.WithCredentials(user, _connection.Password);
        var result = await _client.ConnectAsync(builder.Build(), ct).ConfigureAwait(false);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
            throw new InvalidOperationException($"broker refused the fleet service: {result.ResultCode} {result.ReasonString}");
        // The broker's Receive Maximum caps our unacknowledged publishes (Mosquitto: 20); above it a broker
        // may drop publishes, and their PUBACKs never come.
        _receiveMaximum.TrySetResult(result.ReceiveMaximum is null or 0 ? ushort.MaxValue : result.ReceiveMaximum.Value);
        // The embedded broker hands device messages to the router itself (EmbeddedBroker.InterceptPublishAsync).
        if (_embedded is null)
        {
            var subscribe = new MqttClientSubscribeOptionsBuilder();
            foreach (var kind in Subscribed)
                subscribe = subscribe.WithTopicFilter(_connection.SharedGroup is { } group ? $"$share/{group}/{Topics.AllDevices(kind)}" : Topics.AllDevices(kind), MqttQualityOfServiceLevel.AtLeastOnce);
            var subscribed = await _client.SubscribeAsync(subscribe.Build(), ct).ConfigureAwait(false);
            if (subscribed.Items.FirstOrDefault(i => (int)i.ResultCode > (int)MqttClientSubscribeResultCode.GrantedQoS2) is { } refused)
            {
                await _client.DisconnectAsync(new MqttClientDisconnectOptions(), ct).ConfigureAwait(false);
                throw new InvalidOperationException($"the broker refused the subscription {refused.TopicFilter.Topic}: {refused.ResultCode}");
            }
        }
        Log.Connected(_log, _connection.ToString());
        // Retained desired states live in the store too: a restarted (embedded) broker has none.
        foreach (var (deviceId, payload) in await _store.ListDesiredAsync(ct).ConfigureAwait(false))
            await PublishDesiredAsync(deviceId, payload, ct).ConfigureAwait(false);
    }

    /// <summary>Publishes a device's desired state, retained, so the device gets it whenever it connects.</summary>
    public async Task PublishDesiredAsync(string deviceId, byte[] payload, CancellationToken ct)
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(Topics.For(deviceId, TopicKind.StateDesired))
            .WithPayload(payload)
            .WithRetainFlag(true)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        await _client.PublishAsync(message, ct).ConfigureAwait(false);
    }

    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var message = e.ApplicationMessage;
        var payload = DeviceMessageRouter.CopyPayload(message.Payload);
        e.AutoAcknowledge = false;
        var inbox = _inboxes[Topics.TryParse(message.Topic, out var device, out _) ? (int)((uint)StringComparer.Ordinal.GetHashCode(device) % (uint)_inboxes.Length) : 0];
        if (!inbox.Writer.TryWrite((message.Topic, payload, e)))
            e.AutoAcknowledge = true; // shutting down: the broker redelivers what we do not handle
        return Task.CompletedTask;
    }

    private async Task HandleInboxAsync(Channel<(string Topic, byte[] Payload, MqttApplicationMessageReceivedEventArgs Received)> inbox)
    {
        await foreach (var (topic, payload, received) in inbox.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
        {
            await _router.TryHandleAsync(topic, payload).ConfigureAwait(false);
            try
            {
                await received.AcknowledgeAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
            {
                // The connection dropped: the broker sends the message again after we reconnect (or not, for
                // a clean session); either way the device resends unacknowledged telemetry.
            }
        }
    }

    /// <summary>
    /// Publishes acks with up to <see cref="RepliesInFlight"/> (or the broker's Receive Maximum, if lower)
    /// awaiting their PUBACK at once: one at a time, the broker's round trip would cap the acks per second.
    /// </summary>
    private async Task PublishRepliesAsync(CancellationToken ct)
    {
        int inFlight;
        try
        {
            inFlight = Math.Min(RepliesInFlight, await _receiveMaximum.Task.WaitAsync(ct).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
            return;
        }
        using var window = new SemaphoreSlim(inFlight);
        try
        {
            await foreach (var reply in _replies.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                if (_embedded is not null && await _embedded.TryDeliverAsync(reply).ConfigureAwait(false))
                    continue;
                await window.WaitAsync(ct).ConfigureAwait(false);
                _ = PublishReplyAsync(reply, window, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        for (var i = 0; i < inFlight; i++)
            await window.WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false);
    }

    private const int RepliesInFlight = 256;

    private async Task PublishReplyAsync(Reply reply, SemaphoreSlim window, CancellationToken ct)
    {
        try
        {
            var message = new MqttApplicationMessageBuilder()
                .WithTopic(reply.Topic)
                .WithPayload(reply.Payload)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtMostOnce)
                .Build();
            await _client.PublishAsync(message, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
        {
            // A lost ack is harmless: the device times out and resends, and the store deduplicates.
            Log.ReplyLost(_log, reply.Topic, e.Message);
        }
        finally
        {
            window.Release();
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(5001, LogLevel.Information, "Fleet service connected to broker {Broker}")]
        public static partial void Connected(ILogger logger, string broker);

        [LoggerMessage(5002, LogLevel.Warning, "Fleet service not connected to broker {Broker} ({Reason}); retrying in {DelaySeconds:F1} s")]
        public static partial void NotConnected(ILogger logger, string broker, string reason, double delaySeconds);

        [LoggerMessage(5004, LogLevel.Warning, "Could not publish reply to {Topic}: {Reason}")]
        public static partial void ReplyLost(ILogger logger, string topic, string reason);
    }
}
