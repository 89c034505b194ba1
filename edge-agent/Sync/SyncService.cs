using System.Security.Cryptography.X509Certificates;
using System.Buffers;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Identity;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.Agent.Sync;

/// <summary>
/// Keeps the agent connected to the fleet's broker and drains the telemetry buffer into it.
/// On every (re)connect: subscribe to the ack topic, publish hello and the retained reported state.
/// Then send a batch (highest priority first, oldest first within a priority, Brotli-compressed), wait
/// for the fleet's ack, repeat. A batch is sent again after a reconnect or an ack timeout; the fleet stores
/// each sequence number once. A daily byte budget, when set, holds ordinary records back once only its
/// reserve is left, and everything once it is spent.
/// </summary>
public sealed partial class SyncService : BackgroundService, Ota.IChunkLink
{
    private readonly AgentConfig _config;
    private readonly DeviceCredentials _credentials;
    private readonly AgentRuntime _runtime;
    private readonly TelemetryBuffer _buffer;
    private readonly ILogger<SyncService> _log;
    private readonly IMqttClient _client;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly System.Threading.Channels.Channel<OtaStatusMessage> _statuses =
        System.Threading.Channels.Channel.CreateBounded<OtaStatusMessage>(new System.Threading.Channels.BoundedChannelOptions(64)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest,
        });
    private volatile bool _stateDirty = true;
    private long _batchSentAt;
    private int _attempt;
    private bool _overBudget;

    public SyncService(AgentConfig config, DeviceCredentials credentials, AgentRuntime runtime, TelemetryBuffer buffer, ILogger<SyncService> log)
    {
        _credentials = credentials;
        _config = config;
        _runtime = runtime;
        _buffer = buffer;
        _log = log;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        _buffer.Committed += Wake;
        _runtime.StateChanged += () =>
        {
            _stateDirty = true;
            Wake();
        };
    }

    /// <summary>True while connected to the broker (for health and tests).</summary>
    public bool Connected => _client.IsConnected;

    private int _connectionEpoch;

    /// <summary>Subscribed on the current connection: a chunk request sent before would have its answer lost.</summary>
    private volatile bool _chunksReady;

    bool Ota.IChunkLink.Connected => _client.IsConnected && _chunksReady;

    /// <inheritdoc />
    public int ConnectionEpoch => Volatile.Read(ref _connectionEpoch);

    /// <summary>Chunk frames wait here for the transfer; a full queue drops the oldest (the transfer asks again).</summary>
    private readonly System.Threading.Channels.Channel<byte[]> _chunkFrames =
        System.Threading.Channels.Channel.CreateBounded<byte[]>(new System.Threading.Channels.BoundedChannelOptions(64)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest,
            SingleReader = true,
        });

    /// <inheritdoc />
    public System.Threading.Channels.ChannelReader<byte[]> ChunkFrames => _chunkFrames.Reader;

    /// <inheritdoc />
    public async Task<bool> RequestChunkAsync(ChunkRequest request, CancellationToken ct)
    {
        if (!((Ota.IChunkLink)this).Connected)
            return false;
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(Topics.For(_runtime.DeviceId, TopicKind.OtaChunkRequest))
            .WithPayload(WireReader.Write(request, WireJsonContext.Default.ChunkRequest))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtMostOnce)
            .Build();
        try
        {
            await _client.PublishAsync(message, ct).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException)
        {
            return false; // the connection dropped: asked again on the next one
        }
    }

    /// <summary>Raised with the raw payload of a valid <c>state/desired</c> message.</summary>
    public event Action<byte[]>? DesiredReceived;

    /// <summary>
    /// Queues an <c>ota/status</c> step for the broker. Steps are progress reports, not records: when offline
    /// the oldest are dropped, and the retained reported state carries the outcome.
    /// </summary>
    public void PublishStatus(OtaStatusMessage status)
    {
        _statuses.Writer.TryWrite(status);
        if (status.State is OtaState.Committed or OtaState.RolledBack or OtaState.Rejected or OtaState.Failed)
        {
            // How an update ended is a record, not just a progress report: it goes through the buffer.
            var record = new TelemetryRecord { Ts = status.At, Kind = TelemetryKind.OtaStatus, Ota = status };
            _ = _buffer.AppendAsync(record).ContinueWith(t => Log.RecordLost(_log, "ota-status", t.Exception!.GetBaseException().Message),
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
        Wake();
    }

    /// <summary>Called when new telemetry was appended, so a full batch goes out without waiting.</summary>
    public void Wake()
    {
        if (_wake.CurrentCount == 0)
            _wake.Release();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!_client.IsConnected)
                {
                    await ConnectAsync(stoppingToken).ConfigureAwait(false);
                    _attempt = 0;
                }
                if (_stateDirty)
                {
                    _stateDirty = false;
                    await PublishAsync(Topics.For(_runtime.DeviceId, TopicKind.StateReported),
                        WireReader.Write(_runtime.Reported(), WireJsonContext.Default.ReportedState), retain: true, stoppingToken).ConfigureAwait(false);
                }
                while (_statuses.Reader.TryPeek(out var status))
                {
                    await PublishAsync(Topics.For(_runtime.DeviceId, TopicKind.OtaStatus),
                        WireReader.Write(status, WireJsonContext.Default.OtaStatusMessage), retain: false, stoppingToken).ConfigureAwait(false);
                    _statuses.Reader.TryRead(out _);
                }
                await DrainOnceAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Adapter.MqttConnectingFailedException
                or InvalidOperationException or OperationCanceledException or IOException or System.Net.Sockets.SocketException
                or TelemetryBufferException)
            {
                var delay = Backoff.Next(_attempt++, _config.Broker.MinReconnectSeconds, _config.Broker.MaxReconnectSeconds);
                Log.Disconnected(_log, _config.Broker.EffectiveHost, _config.Broker.EffectivePort, e.Message, delay.TotalSeconds);
                await Task.Delay(delay, stoppingToken).ConfigureAwait(false);
            }
        }
        if (_client.IsConnected)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await _client.DisconnectAsync(new MqttClientDisconnectOptions(), timeout.Token).ConfigureAwait(false);
        }
    }

    /// <summary>TLS to the broker: its certificate checked against <c>fleetCaFile</c> (or the system's CAs), and the device's own for mutual TLS.</summary>
    private void Tls(MqttClientTlsOptionsBuilder tls)
    {
        var trust = FleetTrust.From(_config.FleetCaFile);
        tls.UseTls().WithTargetHost(_config.Broker.EffectiveHost)
            .WithCertificateValidationHandler(e => trust.Validate(e.Certificate, e.Chain, e.SslPolicyErrors));
        if (_config.Broker.ClientCertificateFile is { } certificate)
            tls.WithClientCertificates([X509Certificate2.CreateFromPemFile(certificate, _config.Broker.ClientKeyFile)]);
    }

    private async Task ConnectAsync(CancellationToken ct, bool retried = false)
    {
        _chunksReady = false;
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(_config.Broker.EffectiveHost, _config.Broker.EffectivePort)
            .WithClientId(_runtime.DeviceId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(true)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (_config.Broker.Tls == true)
            builder = builder.WithTlsOptions(Tls);
        if (_credentials.Enrolled)
            builder = builder.WithCredentials(_runtime.DeviceId, _credentials.BrokerPassword(_runtime.Time.GetUtcNow()));
        else if (_config.Broker.Username is { } user)
            builder = builder.WithCredentials(user, _config.Broker.Password);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(15));
        var asked = _runtime.Time.GetTimestamp();
        var result = await _client.ConnectAsync(builder.Build(), timeout.Token).ConfigureAwait(false);
        // Accepted or refused, the embedded broker's answer carries the fleet's time. A token minted on a clock far
        // off is refused as expired or not yet valid; once the clock takes the fleet's time, the next one is valid.
        if (LearnFleetTime(result.UserProperties, asked) && result.ResultCode != MqttClientConnectResultCode.Success && !retried
            && _credentials.Enrolled)
        {
            Log.RetryWithFleetTime(_log, result.ResultCode.ToString());
            await ConnectAsync(ct, retried: true).ConfigureAwait(false);
            return;
        }
        if (result.ResultCode != MqttClientConnectResultCode.Success)
            throw new InvalidOperationException($"broker refused the connection: {result.ResultCode} {result.ReasonString}"
                + (_credentials.Enrolled ? "" : " (this device is not enrolled: run edgefleet-agent enroll)"));
        await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(Topics.For(_runtime.DeviceId, TopicKind.TelemetryAck), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(Topics.For(_runtime.DeviceId, TopicKind.StateDesired), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(Topics.For(_runtime.DeviceId, TopicKind.OtaChunkData), MqttQualityOfServiceLevel.AtMostOnce)
            .Build(), timeout.Token).ConfigureAwait(false);
        Interlocked.Increment(ref _connectionEpoch);
        _chunksReady = true;
        Log.Connected(_log, _config.Broker.EffectiveHost, _config.Broker.EffectivePort, _runtime.DeviceId);
        await PublishAsync(Topics.For(_runtime.DeviceId, TopicKind.Hello),
            WireReader.Write(_runtime.Hello(), WireJsonContext.Default.HelloMessage), retain: false, ct).ConfigureAwait(false);
        _stateDirty = true;
    }

    private async Task DrainOnceAsync(CancellationToken ct)
    {
        var cfg = _config.Telemetry;
        var maxAge = TimeSpan.FromSeconds(cfg.MaxBatchAgeSeconds);
        if (!_buffer.BatchDue(cfg.MaxBatchRecords, maxAge))
        {
            // Nothing due yet: sleep until woken by new telemetry or the oldest record comes of age.
            await _wake.WaitAsync(maxAge, ct).ConfigureAwait(false);
            return;
        }
        var now = _runtime.Time.GetUtcNow();
        var day = DateOnly.FromDateTime(now.UtcDateTime);
        var (minPriority, allowance) = Allowance(day);
        var next = minPriority is { } min ? NextBatch(min, allowance) : null;
        if (next is null && minPriority == TelemetryPriority.Low && cfg.DailyByteBudget > 0)
        {
            // What is left of the ordinary share is too small for the next batch: only the reserve remains.
            minPriority = TelemetryPriority.High;
            next = NextBatch(TelemetryPriority.High, cfg.DailyByteBudget - _buffer.BudgetSpent(day));
        }
        var holdingBack = minPriority is not TelemetryPriority.Low;
        if (holdingBack != _overBudget)
        {
            if (holdingBack)
                Log.OverBudget(_log, _buffer.BudgetSpent(day), cfg.DailyByteBudget);
            else
                Log.BudgetRenewed(_log, cfg.DailyByteBudget);
            _overBudget = holdingBack;
        }
        if (next is not { } send)
        {
            // Out of budget for today, at least for what is waiting: try again at midnight UTC or when woken.
            var midnight = new DateTimeOffset(day.AddDays(1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            await _wake.WaitAsync(TimeSpan.FromMinutes(Math.Min(1, Math.Max(0.01, (midnight - now).TotalMinutes))), ct).ConfigureAwait(false);
            return;
        }
        var (batch, payload) = send;
        await PublishAsync(Topics.For(_runtime.DeviceId, TopicKind.Telemetry), payload, retain: false, ct).ConfigureAwait(false);
        if (cfg.DailyByteBudget > 0)
            _buffer.SpendBudget(day, payload.Length);

        // Timed on the monotonic clock: a step of the wall clock neither cuts the wait short nor stretches it.
        var sent = _runtime.Time.GetTimestamp();
        Volatile.Write(ref _batchSentAt, sent);
        var timeoutAfter = TimeSpan.FromSeconds(cfg.AckTimeoutSeconds);
        while (_buffer.Contains(batch.LastSeq) && _client.IsConnected)
        {
            var left = timeoutAfter - _runtime.Time.GetElapsedTime(sent);
            if (left <= TimeSpan.Zero)
            {
                Log.AckTimeout(_log, batch.FirstSeq, batch.LastSeq);
                return;
            }
            await _wake.WaitAsync(left, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Bytes today's budget still allows a model download: OTA has its own class, which spends the ordinary share
    /// (as low and normal telemetry do) and never the reserve kept for high and critical records.
    /// </summary>
    public long OtaAllowance()
    {
        var cfg = _config.Telemetry;
        if (cfg.DailyByteBudget <= 0)
            return long.MaxValue;
        var ordinary = (long)(cfg.DailyByteBudget * (1 - (cfg.BudgetReservePercent / 100)));
        return Math.Max(0, ordinary - _buffer.BudgetSpent(Today()));
    }

    /// <summary>Counts artifact bytes received against today's budget (urgent ones too).</summary>
    public void SpendOta(long bytes)
    {
        if (_config.Telemetry.DailyByteBudget > 0 && bytes > 0)
            _buffer.SpendBudget(Today(), bytes);
    }

    private DateOnly Today() => DateOnly.FromDateTime(_runtime.Time.GetUtcNow().UtcDateTime);

    /// <summary>
    /// What today's byte budget still allows: everything while the ordinary share lasts, then only high and
    /// critical records until the reserve is spent too (null: nothing).
    /// </summary>
    private (TelemetryPriority? MinPriority, long Bytes) Allowance(DateOnly day)
    {
        var cfg = _config.Telemetry;
        if (cfg.DailyByteBudget <= 0)
            return (TelemetryPriority.Low, long.MaxValue);
        var spent = _buffer.BudgetSpent(day);
        var ordinary = (long)(cfg.DailyByteBudget * (1 - (cfg.BudgetReservePercent / 100)));
        if (spent < ordinary)
            return (TelemetryPriority.Low, ordinary - spent);
        return spent < cfg.DailyByteBudget ? (TelemetryPriority.High, cfg.DailyByteBudget - spent) : (null, 0);
    }

    /// <summary>The next batch and its payload, halved until it fits the allowance and the payload limit.</summary>
    private (TelemetryBatch Batch, byte[] Payload)? NextBatch(TelemetryPriority minPriority, long allowance)
    {
        var cfg = _config.Telemetry;
        for (var max = cfg.MaxBatchRecords; max >= 1; max /= 2)
        {
            var outgoing = _buffer.TakeBatch(max, cfg.MaxBatchBytes, minPriority);
            if (outgoing is null)
                return null;
            var batch = new TelemetryBatch
            {
                DeviceId = _runtime.DeviceId,
                StreamId = _buffer.StreamId,
                FirstSeq = outgoing.Records[0].Seq,
                LastSeq = outgoing.Records[^1].Seq,
                Count = outgoing.Records.Count,
                PendingFrom = outgoing.PendingFrom,
                Encoding = TelemetryBatchCodec.Brotli,
                Records = TelemetryBatchCodec.Encode(outgoing.Records),
            };
            var payload = WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch);
            if (payload.Length <= Math.Min(allowance, Protocol.MaxPayloadBytes))
                return (batch, payload);
            max = Math.Min(max, outgoing.Records.Count);
        }
        return null;
    }

    private async Task PublishAsync(string topic, byte[] payload, bool retain, CancellationToken ct)
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain)
            .Build();
        var result = await _client.PublishAsync(message, ct).ConfigureAwait(false);
        if (!result.IsSuccess)
            throw new InvalidOperationException($"broker refused the publish to {topic}: {result.ReasonCode} {result.ReasonString}");
    }

    /// <summary>Sets the device clock from the fleet's time a broker answer carries; true when the clock's source changed.</summary>
    private bool LearnFleetTime(IReadOnlyCollection<MQTTnet.Packets.MqttUserProperty>? properties, long askedAt)
    {
        var value = properties?.FirstOrDefault(p => p.Name == Protocol.FleetTimeProperty) is { } property
            ? MQTTnet.Packets.MqttUserPropertyExtensions.ReadValueAsString(property) : null;
        return value is not null && DateTimeOffset.TryParse(value, System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.RoundtripKind, out var fleetTime) && LearnFleetTime(fleetTime, askedAt);
    }

    private bool LearnFleetTime(DateTimeOffset fleetTime, long askedAt)
    {
        if (_runtime.Time is not Timekeeping.DeviceClock clock)
            return false;
        var before = clock.State;
        if (!clock.LearnFleetTime(fleetTime, _runtime.Time.GetElapsedTime(askedAt)))
            return false;
        Log.ClockSource(_log, before.ToString(), clock.State.ToString(), clock.Correction.TotalSeconds);
        return true;
    }

    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var topic = e.ApplicationMessage.Topic;
        if (!Topics.TryParse(topic, out var deviceId, out var kind) || deviceId != _runtime.DeviceId || kind is not (TopicKind.TelemetryAck or TopicKind.StateDesired or TopicKind.OtaChunkData))
        {
            Log.IgnoredTopic(_log, topic);
            return Task.CompletedTask;
        }
        var payload = e.ApplicationMessage.Payload;
        var bytes = payload.Length <= Protocol.MaxPayloadBytes ? payload.ToArray() : [];
        if (kind == TopicKind.OtaChunkData)
        {
            _chunkFrames.Writer.TryWrite(bytes);
            return Task.CompletedTask;
        }
        if (kind == TopicKind.StateDesired)
        {
            var desired = WireReader.Read(bytes, WireJsonContext.Default.DesiredState, _runtime.DeviceId);
            if (desired.Ok)
                DesiredReceived?.Invoke(bytes);
            else
                Log.BadDesired(_log, desired.Error, desired.Reason);
            return Task.CompletedTask;
        }
        var ack = WireReader.Read(bytes, WireJsonContext.Default.TelemetryAck, _runtime.DeviceId);
        if (!ack.Ok)
        {
            Log.BadAck(_log, ack.Error, ack.Reason);
            return Task.CompletedTask;
        }
        if (ack.Message!.StreamId != _buffer.StreamId)
        {
            Log.BadAck(_log, WireError.Invalid, $"ack for stream {ack.Message.StreamId}, this buffer is {_buffer.StreamId}");
            return Task.CompletedTask;
        }
        int deleted;
        try
        {
            deleted = _buffer.Acknowledge(ack.Message.AckedSeq, ack.Message.Stored);
        }
        catch (TelemetryBufferException failure)
        {
            // Not deleted now: the records are sent again and the fleet acknowledges them again.
            Log.BadAck(_log, WireError.None, failure.Message);
            return Task.CompletedTask;
        }
        Log.Acked(_log, ack.Message.AckedSeq, deleted);
        if (ack.Message.FleetTime is { } fleetTime)
            LearnFleetTime(fleetTime, Volatile.Read(ref _batchSentAt));
        Wake();
        return Task.CompletedTask;
    }

    public override void Dispose()
    {
        _client.Dispose();
        _wake.Dispose();
        base.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(1011, LogLevel.Warning,
            "Device clock now {State} (was {Before}): {CorrectionSeconds:F1} s from the system clock, as the fleet's time says")]
        public static partial void ClockSource(ILogger logger, string before, string state, double correctionSeconds);

        [LoggerMessage(1012, LogLevel.Information,
            "Broker refused the connection ({Code}) and sent its time, which corrects the device clock: connecting again at once")]
        public static partial void RetryWithFleetTime(ILogger logger, string code);

        [LoggerMessage(1001, LogLevel.Information, "Connected to broker {Host}:{Port} as {DeviceId}")]
        public static partial void Connected(ILogger logger, string host, int port, string deviceId);

        [LoggerMessage(1002, LogLevel.Warning, "Not connected to broker {Host}:{Port} ({Reason}); retrying in {DelaySeconds:F1} s")]
        public static partial void Disconnected(ILogger logger, string host, int port, string reason, double delaySeconds);

        [LoggerMessage(1003, LogLevel.Warning, "No acknowledgement for telemetry {First}..{Last} in time; sending again")]
        public static partial void AckTimeout(ILogger logger, long first, long last);

        [LoggerMessage(1004, LogLevel.Warning, "Ignored an acknowledgement: {Error}: {Reason}")]
        public static partial void BadAck(ILogger logger, WireError error, string reason);

        [LoggerMessage(1005, LogLevel.Debug, "Fleet acknowledged telemetry up to {AckedSeq}; {Deleted} records released")]
        public static partial void Acked(ILogger logger, long ackedSeq, int deleted);

        [LoggerMessage(1007, LogLevel.Warning, "Ignored a desired state: {Error}: {Reason}")]
        public static partial void BadDesired(ILogger logger, WireError error, string reason);

        [LoggerMessage(1008, LogLevel.Warning, "Daily telemetry budget down to its reserve ({Spent} of {Budget} bytes spent): ordinary records stay buffered, high-priority ones use the reserve")]
        public static partial void OverBudget(ILogger logger, long spent, long budget);

        [LoggerMessage(1010, LogLevel.Information, "A new day's telemetry budget ({Budget} bytes): sending everything again")]
        public static partial void BudgetRenewed(ILogger logger, long budget);

        [LoggerMessage(1009, LogLevel.Warning, "A {Kind} record was not buffered: {Reason}")]
        public static partial void RecordLost(ILogger logger, string kind, string reason);

        [LoggerMessage(1006, LogLevel.Warning, "Ignored a message on unexpected topic {Topic}")]
        public static partial void IgnoredTopic(ILogger logger, string topic);
    }
}
