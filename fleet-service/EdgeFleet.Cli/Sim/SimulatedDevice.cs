using System.Buffers;
using System.Text.Json;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.Cli.Sim;

/// <summary>
/// One simulated device: its own Ed25519 key and enrollment, a real MQTT connection authenticated with a
/// device token (or the broker password enrollment issued), telemetry batches with its own sequence numbers and stream, and OTA state reports when the
/// fleet sets a desired model (without running the model: it reports success, or failure at a set rate).
/// </summary>
public sealed class SimulatedDevice : IAsyncDisposable
{
    private static readonly string[] DefaultLabels = ["normal", "imbalance", "misalignment", "bearing-wear"];

    /// <summary>Record bodies per model version and behaviour, made once: a device cycles through its model's.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string Model, string Version, string? Previous, SimModelBehaviour Behaviour), byte[][]> BodyCache = new();

    private static byte[][] BodiesFor(ModelRef model, string? previous, SimModelBehaviour behaviour) => BodyCache.GetOrAdd((model.Name, model.Version, previous, behaviour), key =>
    {
        var labels = key.Behaviour.Labels ?? DefaultLabels;
        // FallbackShare of the records answered by the previous version, as an agent's fallback model answers;
        // spread by a stride of 13 over the 40 bodies, so they do not line up with the labels' cycle of 4.
        var fallbackSlots = key.Previous is null ? 0 : (int)Math.Round(key.Behaviour.FallbackShare * 40);
        // Latencies spread over 180..440 µs (times the behaviour's factor), so percentiles mean something.
        return [.. Enumerable.Range(0, 40).Select(i => TelemetryBatchCodec.Body(new TelemetryRecord
        {
            Ts = DateTimeOffset.UnixEpoch,
            Kind = TelemetryKind.Inference,
            Inference = new InferenceSample
            {
                Model = key.Model,
                Version = (i * 13) % 40 < fallbackSlots ? key.Previous! : key.Version,
                Label = labels[i % labels.Count],
                Confidence = (float)Math.Clamp(0.9 - ((i % 4) * 0.1) + key.Behaviour.ConfidenceShift, 0, 1),
                LatencyMicros = (long)((180 + (i * 7)) * key.Behaviour.LatencyFactor),
            },
        }))];
    });

    /// <summary>How the device's model behaves per version (latency, outputs, confidence); absent: the default.</summary>
    public IReadOnlyDictionary<long, SimModelBehaviour> Behaviours { get; init; } = new Dictionary<long, SimModelBehaviour>();

    private string? _previousVersion;

    private byte[][] Bodies => BodiesFor(_active, _previousVersion, long.TryParse(_active.Version, System.Globalization.CultureInfo.InvariantCulture, out var v)
        && Behaviours.TryGetValue(v, out var b) ? b : SimModelBehaviour.Default);

    private readonly SigningKey _key;
    private readonly string _host;
    private readonly int _port;
    private readonly string _stream = Guid.NewGuid().ToString("n")[..12];
    private readonly string _telemetryTopic;
    private readonly double _otaFailureRate;
    private IMqttClient? _client;
    private long _nextSeq = 1;
    private long _acked;
    private ModelRef _active = new() { Name = "vibration-classifier", Version = "1.0.0" };

    /// <summary>The versions the failure rate applies to; empty: every version.</summary>
    public IReadOnlySet<long> FailingVersions { get; init; } = new HashSet<long>();

    /// <summary>The model the device runs before any update (the factory model by default).</summary>
    public ModelRef InitialModel
    {
        get => _active;
        init => _active = value;
    }

    public SimulatedDevice(string id, SigningKey key, string host, int port, double otaFailureRate)
    {
        Id = id;
        _key = key;
        _host = host;
        _port = port;
        _otaFailureRate = otaFailureRate;
        _telemetryTopic = Topics.For(id, TopicKind.Telemetry);
    }

    public string Id { get; }

    /// <summary>The broker password an external Mosquitto issued at enrollment; null: device tokens.</summary>
    public string? BrokerPassword { get; init; }

    /// <summary>
    /// No keep-alive loop in this client (MQTTnet's wakes every 250 ms: 40,000 wake-ups a second for 10,000
    /// devices, CPU the simulator takes from the fleet it measures): it announces keep-alive 0 and
    /// <see cref="SimulatedFleet"/> pings it. Only for brokers that accept keep-alive 0 as it is (the embedded
    /// one): Mosquitto answers with its own server keep-alive, which MQTTnet's client then mishandles.
    /// </summary>
    public bool SharedKeepAlive { get; init; }

    public bool Connected => _client?.IsConnected == true;

    /// <summary>Records sent (sequence numbers used).</summary>
    public long Sent => Interlocked.Read(ref _nextSeq) - 1;

    /// <summary>The fleet's acknowledgement watermark for this device.</summary>
    public long Acked => Interlocked.Read(ref _acked);

    public int OtaReports { get; private set; }

    public async Task ConnectAsync(MqttClientFactory factory, CancellationToken ct)
    {
        _client ??= factory.CreateMqttClient();
        _client.ApplicationMessageReceivedAsync -= OnMessageAsync;
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(_host, _port)
            .WithClientId(Id)
            .WithCredentials(Id, BrokerPassword ?? DeviceToken.Create(_key, Id, DateTimeOffset.UtcNow, TimeSpan.FromMinutes(10)))
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(true)
            .WithKeepAlivePeriod(SharedKeepAlive ? TimeSpan.Zero : TimeSpan.FromSeconds(60))
            .WithTimeout(TimeSpan.FromSeconds(30))
            .Build();
        var result = await _client.ConnectAsync(options, ct).ConfigureAwait(false);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
            throw new InvalidOperationException($"{Id}: broker refused: {result.ResultCode} {result.ReasonString}");
        await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(Topics.For(Id, TopicKind.TelemetryAck), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(Topics.For(Id, TopicKind.StateDesired), MqttQualityOfServiceLevel.AtLeastOnce)
            .Build(), ct).ConfigureAwait(false);
        var hello = new HelloMessage
        {
            DeviceId = Id,
            AgentVersion = "sim-" + typeof(SimulatedDevice).Assembly.GetName().Version?.ToString(3),
            HardwareProfile = "x86-64-generic",
            BootId = Guid.NewGuid().ToString("n"),
            StartedAt = DateTimeOffset.UtcNow,
            Models = [_active],
        };
        await PublishAsync(Topics.For(Id, TopicKind.Hello), WireReader.Write(hello, WireJsonContext.Default.HelloMessage), ct).ConfigureAwait(false);
    }

    /// <summary>Sends a PINGREQ and waits for the PINGRESP, as an agent's keep-alive does; false when the connection is gone.</summary>
    public async Task<bool> PingAsync(CancellationToken ct)
    {
        if (_client is not { IsConnected: true } client)
            return false;
        try
        {
            await client.PingAsync(ct).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Sends the next <paramref name="count"/> records as one batch (QoS 1, waits for the broker's PUBACK).</summary>
    public Task SendBatchAsync(int count, CancellationToken ct) => SendAsync(Interlocked.Add(ref _nextSeq, count) - count, count, ct);

    /// <summary>
    /// Sends everything not yet acknowledged again, as the agent does after its ack timeout (a batch lost with
    /// a fleet instance that died before storing it). The records are the same, so the fleet deduplicates.
    /// </summary>
    public async Task ResendUnackedAsync(int batchRecords, CancellationToken ct)
    {
        for (var first = Acked + 1; first <= Sent; first += batchRecords)
            await SendAsync(first, (int)Math.Min(batchRecords, Sent - first + 1), ct).ConfigureAwait(false);
    }

    private async Task SendAsync(long first, int count, CancellationToken ct)
    {
        var records = new (long, ReadOnlyMemory<byte>)[count];
        var bodies = Bodies; // of the model the device runs now
        for (var i = 0; i < count; i++)
            records[i] = (first + i, bodies[(int)((first + i) % bodies.Length)]);
        var batch = new TelemetryBatch
        {
            DeviceId = Id,
            StreamId = _stream,
            FirstSeq = first,
            LastSeq = first + count - 1,
            Count = count,
            // Everything from the oldest unacknowledged record on is still "held" by this device.
            PendingFrom = Math.Min(first, Acked + 1),
            Encoding = TelemetryBatchCodec.Brotli,
            Records = TelemetryBatchCodec.Encode(records),
        };
        await PublishAsync(_telemetryTopic, WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), ct).ConfigureAwait(false);
    }

    private async Task PublishAsync(string topic, byte[] payload, CancellationToken ct)
    {
        var client = _client ?? throw new InvalidOperationException("not connected");
        await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct).ConfigureAwait(false);
    }

    private async Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var topic = e.ApplicationMessage.Topic;
        var payload = e.ApplicationMessage.Payload.ToArray();
        if (topic.EndsWith("/telemetry/ack", StringComparison.Ordinal))
        {
            var ack = WireReader.Read(payload, WireJsonContext.Default.TelemetryAck, Id);
            if (ack.Ok)
            {
                long seen;
                while ((seen = Interlocked.Read(ref _acked)) < ack.Message!.AckedSeq && Interlocked.CompareExchange(ref _acked, ack.Message.AckedSeq, seen) != seen)
                {
                }
            }
            return;
        }
        if (topic.EndsWith("/state/desired", StringComparison.Ordinal))
        {
            var desired = WireReader.Read(payload, WireJsonContext.Default.DesiredState, Id);
            if (desired.Ok)
                await ReportUpdateAsync(desired.Message!, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Whether a device fails an update: a stable draw from (device, model, version) against the rate.</summary>
    public static bool FailsUpdate(string deviceId, string modelId, long version, double rate) =>
        rate > 0 && System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes($"{deviceId}\n{modelId}\n{version}"))) < rate * uint.MaxValue;

    /// <summary>Walks the OTA states the real agent reports, ending committed or (at the failure rate) rolled back.</summary>
    private async Task ReportUpdateAsync(DesiredState desired, CancellationToken ct)
    {
        var body = desired.Manifest.TryGetProperty("signed", out var signed) ? signed : default;
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("modelId", out var idElement) || !body.TryGetProperty("version", out var versionElement))
            return;
        var modelId = idElement.GetString() ?? "?";
        var version = versionElement.GetInt64();
        var rollout = body.TryGetProperty("rolloutId", out var r) ? r.GetString() : null;
        if (_active.Name == modelId && _active.Version == version.ToString(System.Globalization.CultureInfo.InvariantCulture))
            return;
        // The same devices fail the same version every time (as a model that does not suit some hardware would).
        var fail = (FailingVersions.Count == 0 || FailingVersions.Contains(version)) && FailsUpdate(Id, modelId, version, _otaFailureRate);
        OtaState[] steps = fail
            ? [OtaState.Downloading, OtaState.Verifying, OtaState.HealthCheck, OtaState.RolledBack]
            : [OtaState.Downloading, OtaState.Verifying, OtaState.HealthCheck, OtaState.Activating, OtaState.Committed];
        foreach (var state in steps)
        {
            var status = new OtaStatusMessage
            {
                DeviceId = Id,
                ModelId = modelId,
                Version = version,
                RolloutId = rollout,
                State = state,
                Error = state == OtaState.RolledBack ? OtaError.HealthCheckFailed : null,
                Reason = state == OtaState.RolledBack ? "simulated health-check failure" : null,
                At = DateTimeOffset.UtcNow,
            };
            await PublishAsync(Topics.For(Id, TopicKind.OtaStatus), WireReader.Write(status, WireJsonContext.Default.OtaStatusMessage), ct).ConfigureAwait(false);
            OtaReports++;
        }
        var previous = _active;
        if (!fail)
        {
            _previousVersion = _active.Version;
            _active = new ModelRef { Name = modelId, Version = version.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        }
        var reported = new ReportedState { DeviceId = Id, Active = _active, Previous = fail ? null : previous, Ota = fail ? OtaState.RolledBack : OtaState.Committed, UpdatedAt = DateTimeOffset.UtcNow };
        await PublishAsync(Topics.For(Id, TopicKind.StateReported), WireReader.Write(reported, WireJsonContext.Default.ReportedState), ct).ConfigureAwait(false);
    }

    /// <summary>A clean MQTT disconnect; <see cref="ConnectAsync"/> may follow.</summary>
    public async Task DisconnectAsync()
    {
        if (_client is { IsConnected: true } client)
        {
            try
            {
                await client.DisconnectAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await DisconnectAsync().ConfigureAwait(false);
        _client?.Dispose();
        _key.Dispose();
    }
}

/// <summary>A simulated model version's behaviour: latency factor, the labels it predicts (in turn), and a confidence shift.</summary>
/// <remarks><see cref="FallbackShare"/>: the share of requests the previous version answers (a model that keeps failing over).</remarks>
public sealed record SimModelBehaviour(double LatencyFactor = 1, IReadOnlyList<string>? Labels = null, double ConfidenceShift = 0, double FallbackShare = 0)
{
    public static readonly SimModelBehaviour Default = new();
}
