using EdgeFleet.Fleet.Storage;
using EdgeFleet.Fleet.Telemetry;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Broker;

/// <summary>A message the fleet must send back (an acknowledgement).</summary>
public readonly record struct Reply(string Topic, byte[] Payload);

/// <summary>
/// Turns a device's MQTT message into a store update: checks the topic, parses and validates the payload
/// (<see cref="WireReader"/>), and stores it. Bad input is counted and logged with its reason, never thrown.
/// </summary>
/// <remarks>
/// Telemetry goes on to <see cref="TelemetryIngest"/>, which stores it in groups and sends the acks.
/// </remarks>
public sealed partial class DeviceMessageRouter(IFleetStore store, TelemetryIngest ingest, ReplyQueue replies, FleetMetrics metrics, TimeProvider time,
    ILogger<DeviceMessageRouter> log, Ota.ChunkServer? chunks = null, MosquittoDynamicSecurity? accounts = null)
{
    /// <summary>A received payload copied out of the MQTT library's buffers; an oversized one becomes one byte too many, which <see cref="WireReader"/> refuses, without being copied.</summary>
    public static byte[] CopyPayload(in System.Buffers.ReadOnlySequence<byte> payload) =>
        payload.Length <= Protocol.MaxPayloadBytes ? System.Buffers.BuffersExtensions.ToArray(payload) : new byte[Protocol.MaxPayloadBytes + 1];

    /// <summary>
    /// <see cref="HandleAsync"/>, with a storage failure logged instead of thrown (no ack goes out, so the
    /// device keeps its records and sends them again); returns whether the message was handled.
    /// </summary>
    public async Task<bool> TryHandleAsync(string topic, ReadOnlyMemory<byte> payload)
    {
        try
        {
            await HandleAsync(topic, payload, CancellationToken.None).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is IOException or LiteDB.LiteException or Npgsql.NpgsqlException or InvalidOperationException or System.Threading.Channels.ChannelClosedException)
        {
            Log.HandlingFailed(log, topic, ex.Message);
            return false;
        }
    }

    public async Task HandleAsync(string topic, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        if (!Topics.TryParse(topic, out var deviceId, out var kind) || !Topics.IsFromDevice(kind))
        {
            Reject(WireError.Invalid, topic, "not a device-to-fleet topic of protocol v1");
            return;
        }
        var now = time.GetUtcNow();
        switch (kind)
        {
            case TopicKind.Hello:
                {
                    var hello = WireReader.Read(payload.Span, WireJsonContext.Default.HelloMessage, deviceId);
                    if (!Accept(hello, topic))
                        return;
                    await store.RecordHelloAsync(hello.Message!, now, ct).ConfigureAwait(false);
                    if (accounts is not null)
                        _ = accounts.EnsureDeviceAclsAsync(deviceId, CancellationToken.None); // once per device and process; never holds up the inbox
                    Log.Hello(log, deviceId, hello.Message!.AgentVersion, hello.Message.BootId);
                    // A device says hello after its subscriptions are granted. The retained desired state can
                    // miss a subscription made while it was being published; sending the stored one again
                    // here closes that gap (the agent ignores a desired state it has already settled).
                    if (await store.GetDesiredAsync(deviceId, ct).ConfigureAwait(false) is { } desired)
                        await replies.WriteAsync(new Reply(Topics.For(deviceId, TopicKind.StateDesired), desired), ct).ConfigureAwait(false);
                    return;
                }
            case TopicKind.StateReported:
                {
                    var state = WireReader.Read(payload.Span, WireJsonContext.Default.ReportedState, deviceId);
                    if (!Accept(state, topic))
                        return;
                    await store.RecordReportedAsync(state.Message!, now, ct).ConfigureAwait(false);
                    return;
                }
            case TopicKind.Telemetry:
                {
                    var batch = WireReader.Read(payload.Span, WireJsonContext.Default.TelemetryBatch, deviceId);
                    if (!batch.Ok)
                    {
                        Reject(batch.Error, topic, batch.Reason);
                        return;
                    }
                    var records = TelemetryBatchCodec.Decode(batch.Message!);
                    if (!Accept(records, topic))
                        return;
                    await ingest.SubmitAsync(new IncomingTelemetry(batch.Message!, records.Message!), ct).ConfigureAwait(false);
                    return;
                }
            case TopicKind.OtaStatus:
                {
                    var status = WireReader.Read(payload.Span, WireJsonContext.Default.OtaStatusMessage, deviceId);
                    if (!Accept(status, topic))
                        return;
                    var m = status.Message!;
                    await store.RecordOtaStatusAsync(m, now, ct).ConfigureAwait(false);
                    if (m.Error is { } error)
                        Log.OtaFailed(log, deviceId, m.ModelId, m.Version, m.State, OtaErrors.Name(error), m.Reason ?? "");
                    else
                        Log.OtaStep(log, deviceId, m.ModelId, m.Version, m.State);
                    return;
                }
            case TopicKind.OtaChunkRequest when chunks is not null:
                {
                    var request = WireReader.Read(payload.Span, WireJsonContext.Default.ChunkRequest, deviceId);
                    var data = Topics.For(deviceId, TopicKind.OtaChunkData);
                    if (!Accept(request, topic))
                    {
                        // Answered, so that the device learns why instead of waiting for its timeout.
                        await replies.WriteAsync(new Reply(data, ChunkFrame.Refuse(ChunkStatus.BadRequest, null, 0, request.Reason)), ct).ConfigureAwait(false);
                        return;
                    }
                    var frame = await chunks.AnswerAsync(deviceId, request.Message!, ct).ConfigureAwait(false);
                    await replies.WriteAsync(new Reply(data, frame), ct).ConfigureAwait(false);
                    return;
                }
            default:
                Reject(WireError.Invalid, topic, $"the fleet does not handle {kind} yet");
                return;
        }
    }

    private bool Accept<T>(WireResult<T> result, string topic) where T : class
    {
        if (result.Ok)
        {
            metrics.CountAccepted();
            return true;
        }
        Reject(result.Error, topic, result.Reason);
        return false;
    }

    private void Reject(WireError error, string topic, string reason)
    {
        metrics.CountRejected(error);
        Log.Rejected(log, topic.Length > 128 ? topic[..128] : topic, error, reason);
    }

    private static partial class Log
    {
        [LoggerMessage(4001, LogLevel.Information, "Device {DeviceId} said hello (agent {AgentVersion}, boot {BootId})")]
        public static partial void Hello(ILogger logger, string deviceId, string agentVersion, string bootId);

        [LoggerMessage(4002, LogLevel.Warning, "Rejected message on {Topic}: {Error}: {Reason}")]
        public static partial void Rejected(ILogger logger, string topic, WireError error, string reason);

        [LoggerMessage(5003, LogLevel.Error, "Could not handle message on {Topic}: {Reason}")]
        public static partial void HandlingFailed(ILogger logger, string topic, string reason);

        [LoggerMessage(4004, LogLevel.Information, "Device {DeviceId} update {ModelId} v{Version}: {State}")]
        public static partial void OtaStep(ILogger logger, string deviceId, string modelId, long version, OtaState state);

        [LoggerMessage(4005, LogLevel.Warning, "Device {DeviceId} update {ModelId} v{Version}: {State}: {Code}: {Reason}")]
        public static partial void OtaFailed(ILogger logger, string deviceId, string modelId, long version, OtaState state, string code, string reason);
    }
}
