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

    /// <summary>Record bodies per model version and behaviour (and shadow, if one runs), made once: a device cycles through its model's.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string Model, string Version, string? Previous, SimModelBehaviour Behaviour, string? Shadow, SimModelBehaviour? ShadowBehaviour), byte[][]> BodyCache = new();

    private static InferenceSample Sample(string model, string version, SimModelBehaviour behaviour, int i) => new()
    {
        Model = model,
        Version = version,
        Label = (behaviour.Labels ?? DefaultLabels)[i % (behaviour.Labels ?? DefaultLabels).Count],
        Confidence = (float)Math.Clamp(0.9 - ((i % 4) * 0.1) + behaviour.ConfidenceShift, 0, 1),
        // Latencies spread over 180..440 µs (times the behaviour's factor), so percentiles mean something.
        LatencyMicros = (long)((180 + (i * 7)) * behaviour.LatencyFactor),
    };

    private static byte[][] BodiesFor(ModelRef model, string? previous, SimModelBehaviour behaviour, string? shadow, SimModelBehaviour? shadowBehaviour) =>
        BodyCache.GetOrAdd((model.Name, model.Version, previous, behaviour, shadow, shadowBehaviour), key =>
    {
        // FallbackShare of the records answered by the previous version, as an agent's fallback model answers;
        // spread by a stride of 13 over the 40 bodies, so they do not line up with the labels' cycle of 4.
        var fallbackSlots = key.Previous is null ? 0 : (int)Math.Round(key.Behaviour.FallbackShare * 40);
        var bodies = Enumerable.Range(0, 40).Select(i => TelemetryBatchCodec.Body(new TelemetryRecord
        {
            Ts = DateTimeOffset.UnixEpoch,
            Kind = TelemetryKind.Inference,
            Inference = Sample(key.Model, (i * 13) % 40 < fallbackSlots ? key.Previous! : key.Version, key.Behaviour, i),
        })).ToList();
        if (key.Shadow is { } shadowVersion)
        {
            // A shadow model saw the same 40 inputs: one window comparing it with the served model, as the agent sends.
            var served = Enumerable.Range(0, 40).Select(i => Sample(key.Model, key.Version, key.Behaviour, i)).ToList();
            var shadows = Enumerable.Range(0, 40).Select(i => Sample(key.Model, shadowVersion, key.ShadowBehaviour!, i)).ToList();
            bodies.Add(TelemetryBatchCodec.Body(new TelemetryRecord { Ts = DateTimeOffset.UnixEpoch, Kind = TelemetryKind.Shadow, Shadow = ShadowWindowOf(served, shadows) }));
        }
        return [.. bodies];
    });

    /// <summary>The shadow window an agent would send for these paired answers.</summary>
    public static ShadowWindow ShadowWindowOf(IReadOnlyList<InferenceSample> served, IReadOnlyList<InferenceSample> shadow)
    {
        var shadowLatency = new Shared.Stats.LatencyHistogram();
        var servedLatency = new Shared.Stats.LatencyHistogram();
        foreach (var s in shadow)
            shadowLatency.Record(s.LatencyMicros);
        foreach (var s in served)
            servedLatency.Record(s.LatencyMicros);
        return new ShadowWindow
        {
            Model = served[0].Model,
            Version = shadow[0].Version,
            ServedVersion = served[0].Version,
            From = DateTimeOffset.UnixEpoch,
            Seconds = 60,
            Count = served.Count,
            Agreements = served.Zip(shadow).Count(p => p.First.Label == p.Second.Label),
            MeanConfidence = shadow.Average(s => s.Confidence),
            ServedMeanConfidence = served.Average(s => s.Confidence),
            P95Micros = shadowLatency.Percentile(0.95),
            ServedP95Micros = servedLatency.Percentile(0.95),
            Buckets = shadowLatency.Buckets(),
            ServedBuckets = servedLatency.Buckets(),
            Labels = shadow.GroupBy(s => s.Label).ToDictionary(g => g.Key, g => (long)g.Count()),
            ServedLabels = served.GroupBy(s => s.Label).ToDictionary(g => g.Key, g => (long)g.Count()),
        };
    }

    /// <summary>How the device's model behaves per version (latency, outputs, confidence); absent: the default.</summary>
    public IReadOnlyDictionary<long, SimModelBehaviour> Behaviours { get; init; } = new Dictionary<long, SimModelBehaviour>();

    private string? _previousVersion;

    private ModelRef? _shadow;

    private SimModelBehaviour BehaviourOf(ModelRef model) =>
        long.TryParse(model.Version, System.Globalization.CultureInfo.InvariantCulture, out var v) && Behaviours.TryGetValue(v, out var b) ? b : SimModelBehaviour.Default;

    private byte[][] Bodies
    {
        get
        {
            var shadow = _shadow;
            return BodiesFor(_active, _previousVersion, BehaviourOf(_active), shadow?.Version, shadow is null ? null : BehaviourOf(shadow));
        }
    }

    /// <summary>The model the device serves now.</summary>
    public ModelRef ActiveModel => _active;

    /// <summary>The model the device runs in shadow, if any.</summary>
    public ModelRef? ShadowModel => _shadow;

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

    /// <summary>
    /// Walks the OTA states the real agent reports, ending committed or (at the failure rate) rolled back; then
    /// the shadow's (verified, health-checked, running; or rejected at the same rate), or stops the shadow.
    /// </summary>
    private async Task ReportUpdateAsync(DesiredState desired, CancellationToken ct)
    {
        var changed = false;
        var wasRolledBack = false;
        if (Identity(desired.Manifest) is var (modelId, version, rollout)
            && !(_active.Name == modelId && _active.Version == version.ToString(System.Globalization.CultureInfo.InvariantCulture)))
        {
            // The same devices fail the same version every time (as a model that does not suit some hardware would).
            var fail = Fails(modelId, version);
            OtaState[] steps = fail
                ? [OtaState.Downloading, OtaState.Verifying, OtaState.HealthCheck, OtaState.RolledBack]
                : [OtaState.Downloading, OtaState.Verifying, OtaState.HealthCheck, OtaState.Activating, OtaState.Committed];
            await ReportStepsAsync(modelId, version, rollout, steps, shadow: false, ct).ConfigureAwait(false);
            if (!fail)
            {
                _previousVersion = _active.Version;
                _previous = _active;
                _active = new ModelRef { Name = modelId, Version = version.ToString(System.Globalization.CultureInfo.InvariantCulture) };
            }
            wasRolledBack = fail;
            _ota = fail ? OtaState.RolledBack : OtaState.Committed;
            changed = true;
        }
        if (Identity(desired.Shadow) is var (shadowId, shadowVersion, shadowRollout))
        {
            var label = shadowVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (_shadow is not { } running || running.Name != shadowId || running.Version != label)
            {
                var fail = Fails(shadowId, shadowVersion);
                await ReportStepsAsync(shadowId, shadowVersion, shadowRollout, fail
                    ? [OtaState.Downloading, OtaState.HealthCheck, OtaState.Rejected]
                    : [OtaState.Downloading, OtaState.HealthCheck, OtaState.Shadowing], shadow: true, ct).ConfigureAwait(false);
                _shadow = fail ? null : new ModelRef { Name = shadowId, Version = label };
                changed = true;
            }
        }
        else if (_shadow is not null)
        {
            _shadow = null;
            changed = true;
        }
        if (!changed)
            return;
        var reported = new ReportedState
        {
            DeviceId = Id,
            Active = _active,
            Previous = wasRolledBack ? null : _previous,
            Shadow = _shadow,
            Ota = _ota,
            UpdatedAt = DateTimeOffset.UtcNow,
        };
        await PublishAsync(Topics.For(Id, TopicKind.StateReported), WireReader.Write(reported, WireJsonContext.Default.ReportedState), ct).ConfigureAwait(false);
    }

    private ModelRef? _previous;
    private OtaState _ota = OtaState.Idle;

    private bool Fails(string modelId, long version) =>
        (FailingVersions.Count == 0 || FailingVersions.Contains(version)) && FailsUpdate(Id, modelId, version, _otaFailureRate);

    private static (string ModelId, long Version, string? RolloutId)? Identity(JsonElement? manifest)
    {
        var body = manifest is { } m && m.TryGetProperty("signed", out var signed) ? signed : default;
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("modelId", out var idElement) || !body.TryGetProperty("version", out var versionElement))
            return null;
        return (idElement.GetString() ?? "?", versionElement.GetInt64(), body.TryGetProperty("rolloutId", out var r) ? r.GetString() : null);
    }

    private async Task ReportStepsAsync(string modelId, long version, string? rollout, OtaState[] steps, bool shadow, CancellationToken ct)
    {
        foreach (var state in steps)
        {
            var failed = state is OtaState.RolledBack or OtaState.Rejected;
            var status = new OtaStatusMessage
            {
                DeviceId = Id,
                ModelId = modelId,
                Version = version,
                RolloutId = rollout,
                Shadow = shadow,
                State = state,
                Error = failed ? OtaError.HealthCheckFailed : null,
                Reason = failed ? "simulated health-check failure" : null,
                At = DateTimeOffset.UtcNow,
            };
            await PublishAsync(Topics.For(Id, TopicKind.OtaStatus), WireReader.Write(status, WireJsonContext.Default.OtaStatusMessage), ct).ConfigureAwait(false);
            OtaReports++;
        }
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
