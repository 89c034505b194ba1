using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Wire;

[JsonConverter(typeof(JsonStringEnumConverter<TelemetryKind>))]
public enum TelemetryKind
{
    [JsonStringEnumMemberName("inference")]
    Inference,

    [JsonStringEnumMemberName("health")]
    Health,

    [JsonStringEnumMemberName("event")]
    Event,

    /// <summary>Something an operator must see; never evicted before records of ordinary kinds.</summary>
    [JsonStringEnumMemberName("alarm")]
    Alarm,

    /// <summary>A change made on the device (who, what); never evicted before ordinary kinds.</summary>
    [JsonStringEnumMemberName("audit")]
    Audit,

    /// <summary>How an update ended on the device; never evicted before ordinary kinds.</summary>
    [JsonStringEnumMemberName("ota-status")]
    OtaStatus,

    /// <summary>What the device's buffer dropped on purpose (capacity, age), cumulative for the stream.</summary>
    [JsonStringEnumMemberName("evictions")]
    Evictions,

    /// <summary>Inference latency of one model version over one window, as a mergeable histogram.</summary>
    [JsonStringEnumMemberName("latency")]
    Latency,

    /// <summary>An input the model was unsure about (low top-class confidence), kept for retraining.</summary>
    [JsonStringEnumMemberName("hard-example")]
    HardExample,

    /// <summary>A shadow model against the served one over a window: agreement, latency, outputs of each.</summary>
    [JsonStringEnumMemberName("shadow")]
    Shadow,

    /// <summary>Drift sketches of one model version over one window (<see cref="SketchWindow"/>).</summary>
    [JsonStringEnumMemberName("sketch")]
    Sketch,
}

/// <summary>
/// A device's drift sketches for one model version and window: per feature of the version's drift spec (same
/// names, same bin edges), the counts per bin and the moments. The fleet merges them across devices exactly.
/// </summary>
public sealed record SketchWindow
{
    public required string Model { get; init; }

    public required string Version { get; init; }

    public required DateTimeOffset From { get; init; }

    public required double Seconds { get; init; }

    public List<SketchData> Features { get; set; } = [];
}

/// <summary>One feature's sketch on the wire (<see cref="Stats.FeatureSketch"/> without its edges, which the spec has).</summary>
public sealed record SketchData
{
    public required string Name { get; init; }

    public required long[] Counts { get; init; }

    public required long Count { get; init; }

    public double Mean { get; init; }

    public double SumSquares { get; init; }

    public double? Min { get; init; }

    public double? Max { get; init; }

    public long Below { get; init; }

    public long Above { get; init; }

    public long Invalid { get; init; }
}

/// <summary>
/// A model running in shadow against the model served, over one window, on the same inputs: how often their
/// top classes agreed, each one's latency (mergeable histograms, <see cref="Stats.LatencyHistogram"/>), mean
/// top-class confidence and predicted-class counts. The comparison is paired (same device, same inputs), which
/// is what a rollout's shadow phase judges the new version by.
/// </summary>
public sealed record ShadowWindow
{
    public required string Model { get; init; }

    /// <summary>The shadow's version.</summary>
    public required string Version { get; init; }

    /// <summary>The served model's version over the window (the one it was compared with).</summary>
    public required string ServedVersion { get; init; }

    public required DateTimeOffset From { get; init; }

    public required double Seconds { get; init; }

    /// <summary>Inputs both models answered.</summary>
    public required long Count { get; init; }

    /// <summary>Inputs on which the shadow failed (the served model answered).</summary>
    public long Errors { get; init; }

    /// <summary>Inputs on which both models gave the same top class.</summary>
    public required long Agreements { get; init; }

    public required double MeanConfidence { get; init; }

    public required double ServedMeanConfidence { get; init; }

    public required long P95Micros { get; init; }

    public required long ServedP95Micros { get; init; }

    /// <summary>[bucket index, count] pairs of the shadow's latency.</summary>
    public List<long[]> Buckets { get; set; } = [];

    /// <summary>[bucket index, count] pairs of the served model's latency on the same inputs.</summary>
    public List<long[]> ServedBuckets { get; set; } = [];

    /// <summary>Predicted classes of the shadow, and of the served model.</summary>
    public Dictionary<string, long> Labels { get; set; } = [];

    public Dictionary<string, long> ServedLabels { get; set; } = [];
}

/// <summary>
/// An input whose top-class confidence fell below the model's threshold, with what the model said, sampled
/// on the device under a byte budget per hour so that retraining can learn from the cases that were hard.
/// </summary>
public sealed record HardExample
{
    public const int MaxValues = 65_536;

    public required string Model { get; init; }

    public required string Version { get; init; }

    public required string Label { get; init; }

    public required float Confidence { get; init; }

    /// <summary>The threshold it fell below.</summary>
    public required float Threshold { get; init; }

    public required long[] Shape { get; init; }

    /// <summary>The model's input, row-major.</summary>
    public required float[] Input { get; init; }

    /// <summary>Hard examples not sent since the previous one because the hour's budget was spent.</summary>
    public long Skipped { get; init; }
}

/// <summary>
/// One model version's inference latency over a window: percentiles for reading, and the histogram's
/// non-empty buckets (<see cref="Stats.LatencyHistogram"/>) so the fleet can merge windows and devices exactly.
/// </summary>
public sealed record LatencyWindow
{
    public required string Model { get; init; }

    public required string Version { get; init; }

    public required DateTimeOffset From { get; init; }

    public required double Seconds { get; init; }

    public required long Count { get; init; }

    public long Errors { get; init; }

    public required long P50Micros { get; init; }

    public required long P95Micros { get; init; }

    public required long P99Micros { get; init; }

    public required long MinMicros { get; init; }

    public required long MaxMicros { get; init; }

    public required long SumMicros { get; init; }

    /// <summary>[bucket index, count] pairs.</summary>
    public List<long[]> Buckets { get; set; } = [];
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

    public long BufferedBytes { get; init; }

    /// <summary>
    /// Bytes the agent caused to be written to storage since it started (<c>/proc/self/io</c> write_bytes):
    /// the flash wear it causes. 0 where the kernel does not account I/O.
    /// </summary>
    public long WrittenBytes { get; init; }

    /// <summary>Where the device's clock takes its time from (null: an agent that does not say).</summary>
    public ClockState? Clock { get; init; }

    /// <summary>The device's clock minus its system clock, in seconds, when <see cref="Clock"/> is corrected or estimated.</summary>
    public double? ClockCorrectionSeconds { get; init; }
}

/// <summary>Where a device's clock takes its time from (docs/operations.md, "Clocks").</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ClockState>))]
public enum ClockState
{
    /// <summary>The system clock, not yet compared with the fleet's since the agent started.</summary>
    [JsonStringEnumMemberName("unverified")]
    Unverified,

    /// <summary>
    /// The system clock was behind what the device knows (its last trusted time, a signed document): time runs from that floor.
    /// </summary>
    [JsonStringEnumMemberName("estimated")]
    Estimated,

    /// <summary>The system clock, which agrees with the fleet's.</summary>
    [JsonStringEnumMemberName("synced")]
    Synced,

    /// <summary>The system clock disagrees with the fleet's: the fleet's time, carried on the monotonic clock.</summary>
    [JsonStringEnumMemberName("corrected")]
    Corrected,
}

/// <summary>
/// Totals of what a device's telemetry buffer evicted since its stream began. Reports are cumulative, so
/// the newest one that arrives tells the whole story even when earlier reports were evicted themselves.
/// </summary>
public sealed record EvictionReport
{
    public required long Records { get; init; }

    public required long Bytes { get; init; }

    /// <summary>Records dropped because the buffer was full.</summary>
    public required long OverCapacity { get; init; }

    /// <summary>Records dropped because they outlived their kind's time to live.</summary>
    public required long Expired { get; init; }

    /// <summary>Records dropped per kind (wire names).</summary>
    public Dictionary<string, long> ByKind { get; set; } = [];
}

/// <summary>
/// One buffered telemetry record. <see cref="Seq"/> is the device stream's own monotonically increasing
/// sequence number; the fleet stores each (device, stream, seq) once. The agent stores a record's JSON
/// without its sequence number (it is assigned at commit) and puts it in front when it sends the record.
/// </summary>
public sealed record TelemetryRecord
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long Seq { get; init; }

    public required DateTimeOffset Ts { get; init; }

    /// <summary>
    /// <see cref="Ts"/> was estimated: the device's clock was behind what it knew, and had not heard the fleet's
    /// time yet (docs/operations.md, "Clocks").
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool TsEstimated { get; init; }

    public required TelemetryKind Kind { get; init; }

    public InferenceSample? Inference { get; init; }

    public HealthSample? Health { get; init; }

    public string? Message { get; init; }

    public OtaStatusMessage? Ota { get; init; }

    public EvictionReport? Evictions { get; init; }

    public LatencyWindow? Latency { get; init; }

    public HardExample? HardExample { get; init; }

    public ShadowWindow? Shadow { get; init; }

    public SketchWindow? Sketch { get; init; }

    /// <summary>The one rule for which body a kind carries, used by both sides.</summary>
    public string? Validate(int index)
    {
        var body = Kind switch
        {
            TelemetryKind.Inference => Inference is null ? "inference" : null,
            TelemetryKind.Health => Health is null ? "health" : null,
            TelemetryKind.Event or TelemetryKind.Alarm or TelemetryKind.Audit => Message is null ? "message" : null,
            TelemetryKind.OtaStatus => Ota is null ? "ota" : null,
            TelemetryKind.Evictions => Evictions is null ? "evictions" : null,
            TelemetryKind.Latency => Latency is null ? "latency" : null,
            TelemetryKind.HardExample => HardExample is null ? "hardExample" : null,
            TelemetryKind.Shadow => Shadow is null ? "shadow" : null,
            TelemetryKind.Sketch => Sketch is null ? "sketch" : null,
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
        if (Ota?.Validate() is { } ota)
            return $"records[{index}].ota: {ota}";
        if (Latency is { } latency && LatencyProblem(latency) is { } why)
            return $"records[{index}].latency: {why}";
        if (HardExample is { } hard && HardExampleProblem(hard) is { } problem)
            return $"records[{index}].hardExample: {problem}";
        if (Shadow is { } shadow && ShadowProblem(shadow) is { } wrong)
            return $"records[{index}].shadow: {wrong}";
        if (Sketch is { } sketch && SketchProblem(sketch) is { } bad)
            return $"records[{index}].sketch: {bad}";
        return null;
    }

    private static string? SketchProblem(SketchWindow w)
    {
        if (string.IsNullOrWhiteSpace(w.Model) || w.Model.Length > 128 || string.IsNullOrWhiteSpace(w.Version) || w.Version.Length > 64 || !(w.Seconds > 0))
            return "model and version are 1-128 and 1-64 characters, seconds positive";
        if (w.Features.Count > Stats.DriftSpec.MaxFeatures)
            return $"at most {Stats.DriftSpec.MaxFeatures} features";
        foreach (var f in w.Features)
        {
            if (string.IsNullOrWhiteSpace(f.Name) || f.Name.Length > 128 || f.Counts.Length is 0 or >= Stats.DriftSpec.MaxEdges)
                return "each feature needs a name (1-128 characters) and 1-1024 bin counts";
            if (f.Counts.Any(c => c < 0) || f.Count < 0 || f.Below < 0 || f.Above < 0 || f.Invalid < 0 || f.Counts.Sum() != f.Count)
                return $"feature {f.Name}: counts must not be negative and must add up to count";
            if (!double.IsFinite(f.Mean) || !double.IsFinite(f.SumSquares) || f.SumSquares < 0)
                return $"feature {f.Name}: mean and sumSquares must be finite, sumSquares not negative";
        }
        return null;
    }

    private static string? ShadowProblem(ShadowWindow w)
    {
        if (string.IsNullOrWhiteSpace(w.Model) || w.Model.Length > 128 || string.IsNullOrWhiteSpace(w.Version) || w.Version.Length > 64
            || string.IsNullOrWhiteSpace(w.ServedVersion) || w.ServedVersion.Length > 64)
            return "model, version and servedVersion are 1-128, 1-64 and 1-64 characters";
        if (w.Count < 0 || w.Errors < 0 || w.Agreements < 0 || w.Agreements > w.Count || !(w.Seconds > 0))
            return "count, errors and agreements must not be negative, agreements at most count, seconds positive";
        if (w.MeanConfidence is not (>= 0 and <= 1) || w.ServedMeanConfidence is not (>= 0 and <= 1))
            return "mean confidences must be within [0, 1]";
        if (w.Labels.Count > 1024 || w.ServedLabels.Count > 1024 || w.Labels.Values.Sum() != w.Count || w.ServedLabels.Values.Sum() != w.Count
            || w.Labels.Values.Any(n => n < 0) || w.ServedLabels.Values.Any(n => n < 0))
            return "labels and servedLabels must each count every compared input (at most 1024 classes)";
        if (Stats.LatencyHistogram.FromBuckets(w.Buckets, w.Count, out var problem) is null || Stats.LatencyHistogram.FromBuckets(w.ServedBuckets, w.Count, out problem) is null)
            return problem;
        return null;
    }

    private static string? HardExampleProblem(HardExample h)
    {
        if (string.IsNullOrWhiteSpace(h.Model) || h.Model.Length > 128 || string.IsNullOrWhiteSpace(h.Version) || h.Version.Length > 64 || h.Label.Length > 128)
            return "model, version and label are 1-128, 1-64 and at most 128 characters";
        if (float.IsNaN(h.Confidence) || h.Confidence is < 0 or > 1 || float.IsNaN(h.Threshold) || h.Threshold is < 0 or > 1 || h.Skipped < 0)
            return "confidence and threshold must be within [0, 1], skipped not negative";
        if (h.Shape.Length is 0 or > 8 || h.Shape.Any(d => d < 1) || h.Input.Length > HardExample.MaxValues
            || h.Shape.Aggregate(1L, (a, b) => a * b) != h.Input.Length)
            return $"shape must be 1-8 positive dimensions whose product is the number of input values (at most {HardExample.MaxValues})";
        return null;
    }

    private static string? LatencyProblem(LatencyWindow w)
    {
        if (string.IsNullOrWhiteSpace(w.Model) || w.Model.Length > 128 || string.IsNullOrWhiteSpace(w.Version) || w.Version.Length > 64)
            return "model and version are 1-128 and 1-64 characters";
        if (w.Count < 0 || w.Errors < 0 || !(w.Seconds > 0) || w.Buckets.Count > Stats.LatencyHistogram.BucketCount)
            return "count and errors must not be negative, seconds must be positive";
        if (w.Count > 0 && !(w.MinMicros <= w.P50Micros && w.P50Micros <= w.P95Micros && w.P95Micros <= w.P99Micros && w.P99Micros <= w.MaxMicros))
            return "percentiles must satisfy min ≤ p50 ≤ p95 ≤ p99 ≤ max";
        return Stats.LatencyHistogram.FromWire(w, out var problem) is null ? problem : null;
    }
}

/// <summary>An inclusive range of sequence numbers.</summary>
public sealed record SeqRange(long From, long To);

/// <summary>
/// <c>ef/v1/{d}/telemetry</c>: up to <see cref="Protocol.MaxRecordsPerBatch"/> records of one stream in
/// ascending sequence order, not necessarily contiguous (the device sends by priority and evicts by
/// policy). <see cref="Records"/> holds the records' JSON array, compressed as <see cref="Encoding"/> says;
/// <see cref="TelemetryBatchCodec"/> reads and writes it.
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

    public required int Count { get; init; }

    /// <summary>
    /// The lowest sequence number the device still holds. Every number below it that the fleet has not
    /// stored was evicted by the device and will never come: the fleet records it as a gap.
    /// </summary>
    public required long PendingFrom { get; init; }

    /// <summary><c>br</c> (Brotli) or <c>identity</c>.</summary>
    public required string Encoding { get; init; }

    public required byte[] Records { get; init; }

    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(StreamId) || StreamId.Length > 64)
            return "streamId must be 1-64 characters";
        if (Count < 1 || Count > Protocol.MaxRecordsPerBatch)
            return $"count must be within 1..{Protocol.MaxRecordsPerBatch}, got {Count}";
        if (LastSeq > Protocol.MaxSequence)
            return $"lastSeq {LastSeq} is above the highest sequence number {Protocol.MaxSequence}";
        if (FirstSeq < 1 || LastSeq < FirstSeq || LastSeq - FirstSeq + 1 < Count)
            return $"sequence range {FirstSeq}..{LastSeq} cannot hold {Count} records";
        if (PendingFrom < 1 || PendingFrom > FirstSeq)
            return $"pendingFrom {PendingFrom} must be within 1..firstSeq ({FirstSeq})";
        if (Encoding is not (TelemetryBatchCodec.Brotli or TelemetryBatchCodec.Identity))
            return $"encoding '{Encoding}' is not supported (br, identity)";
        if (Records is null || Records.Length == 0)
            return "records are empty";
        return null;
    }
}

/// <summary>
/// <c>ef/v1/{d}/telemetry/ack</c>: the records of a batch that are now stored (<see cref="Stored"/>),
/// and <see cref="AckedSeq"/>, below and at which nothing of the stream is outstanding any more.
/// The device deletes both; acknowledgements may arrive twice or out of order.
/// </summary>
public sealed record TelemetryAck : IWireMessage
{
    /// <summary>Ranges one acknowledgement may list.</summary>
    public const int MaxRanges = Protocol.MaxRecordsPerBatch;

    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    public required string StreamId { get; init; }

    public required long AckedSeq { get; init; }

    public IReadOnlyList<SeqRange> Stored { get; set; } = [];

    /// <summary>The fleet's clock when it sent this acknowledgement: devices without NTP set their time by it.</summary>
    public DateTimeOffset? FleetTime { get; set; }

    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(StreamId) || StreamId.Length > 64)
            return "streamId must be 1-64 characters";
        if (AckedSeq < 0 || AckedSeq > Protocol.MaxSequence)
            return $"ackedSeq must be within 0..{Protocol.MaxSequence}";
        if (Stored.Count > MaxRanges)
            return $"at most {MaxRanges} stored ranges, got {Stored.Count}";
        foreach (var r in Stored)
        {
            if (r is null || r.From < 1 || r.To < r.From)
                return "stored ranges must be non-empty and start at 1 or above";
        }
        return null;
    }

    /// <summary>Collapses ascending sequence numbers into ranges.</summary>
    public static List<SeqRange> RangesOf(IEnumerable<long> ascending)
    {
        var ranges = new List<SeqRange>();
        long from = -1, to = -1;
        foreach (var seq in ascending)
        {
            if (from < 0)
            {
                from = to = seq;
            }
            else if (seq == to + 1)
            {
                to = seq;
            }
            else
            {
                ranges.Add(new SeqRange(from, to));
                from = to = seq;
            }
        }
        if (from >= 0)
            ranges.Add(new SeqRange(from, to));
        return ranges;
    }
}
