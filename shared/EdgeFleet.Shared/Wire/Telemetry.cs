using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Wire;

[JsonConverter(typeof(JsonStringEnumConverter<TelemetryKind>))]
public enum TelemetryKind
{
    Inference,
    Health,
    Event,
}

/// <summary>One model run: which model, what it said, how long it took.</summary>
public sealed record InferenceSample
{
    public required string Model { get; init; }

    public required string Version { get; init; }

    public required string Label { get; init; }

    public required float Confidence { get; init; }

    public required long LatencyMicros { get; init; }
}

/// <summary>Periodic process health of the agent.</summary>
public sealed record HealthSample
{
    public required long UptimeSeconds { get; init; }

    public required long RssBytes { get; init; }

    public required long BufferedRecords { get; init; }
}

/// <summary>
/// One buffered telemetry record. <see cref="Seq"/> is the device's own monotonically increasing
/// sequence number; the fleet stores each (device, seq) once.
/// </summary>
public sealed record TelemetryRecord
{
    public required long Seq { get; init; }

    public required DateTimeOffset Ts { get; init; }

    public required TelemetryKind Kind { get; init; }

    public InferenceSample? Inference { get; init; }

    public HealthSample? Health { get; init; }

    public string? Message { get; init; }

    internal string? Validate(int index)
    {
        var body = Kind switch
        {
            TelemetryKind.Inference => Inference is null ? "inference" : null,
            TelemetryKind.Health => Health is null ? "health" : null,
            TelemetryKind.Event => Message is null ? "message" : null,
            _ => "a known kind",
        };
        if (body is not null)
            return $"records[{index}] of kind {Kind} needs {body}";
        if (Inference is { } s && (float.IsNaN(s.Confidence) || s.Confidence < 0 || s.Confidence > 1))
            return $"records[{index}].inference.confidence must be within [0, 1]";
        if (Inference is { LatencyMicros: < 0 })
            return $"records[{index}].inference.latencyMicros must not be negative";
        if (Message is { Length: > 1024 })
            return $"records[{index}].message is longer than 1024 characters";
        return null;
    }
}

/// <summary>
/// <c>ef/v1/{d}/telemetry</c>: a contiguous run of records, <see cref="FirstSeq"/>..<see cref="LastSeq"/>.
/// </summary>
public sealed record TelemetryBatch : IWireMessage
{
    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    /// <summary>
    /// Identifies the device's telemetry buffer. A device whose state was wiped starts a new stream, and its
    /// sequence numbers start again at 1 without being mistaken for duplicates.
    /// </summary>
    public required string StreamId { get; init; }

    public required long FirstSeq { get; init; }

    public required long LastSeq { get; init; }

    public required IReadOnlyList<TelemetryRecord> Records { get; init; }

    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(StreamId) || StreamId.Length > 64)
            return "streamId must be 1-64 characters";
        if (Records.Count == 0)
            return "a batch needs at least one record";
        if (Records.Count > Protocol.MaxRecordsPerBatch)
            return $"a batch holds at most {Protocol.MaxRecordsPerBatch} records, got {Records.Count}";
        if (FirstSeq < 1 || LastSeq < FirstSeq)
            return $"sequence range {FirstSeq}..{LastSeq} is invalid";
        if (LastSeq - FirstSeq + 1 != Records.Count)
            return $"sequence range {FirstSeq}..{LastSeq} does not match {Records.Count} records";
        for (var i = 0; i < Records.Count; i++)
        {
            var r = Records[i];
            if (r is null)
                return $"records[{i}] is null";
            if (r.Seq != FirstSeq + i)
                return $"records[{i}].seq is {r.Seq}, expected {FirstSeq + i}";
            if (r.Validate(i) is { } error)
                return error;
        }
        return null;
    }
}
