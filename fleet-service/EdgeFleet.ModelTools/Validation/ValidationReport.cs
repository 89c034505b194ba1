using System.Text.Json.Serialization;

namespace EdgeFleet.ModelTools.Validation;

/// <summary>The limits a candidate must meet; null leaves a check out. Defaults suit an INT8 variant of an FP32 model.</summary>
public sealed record ValidationThresholds
{
    /// <summary>Share of samples (rows) whose top class is the reference's; classification outputs only.</summary>
    public double? MinTop1Agreement { get; init; } = 0.99;

    /// <summary>Mean cosine similarity of the candidate's output to the reference's.</summary>
    public double? MinCosine { get; init; } = 0.98;

    /// <summary>Accuracy the candidate may lose against the reference, with labels.</summary>
    public double? MaxAccuracyDrop { get; init; } = 0.01;

    /// <summary>Candidate p50 latency / reference p50 latency at the same thread count.</summary>
    public double? MaxLatencyRatio { get; init; } = 1.0;

    /// <summary>Candidate file size / reference file size.</summary>
    public double? MaxSizeRatio { get; init; }

    public double? MaxMeanAbsError { get; init; }
}

public sealed record LatencyFigures(double P50Ms, double P95Ms, int Runs);

/// <summary>
/// The reference against itself with every float input moved by up to half an 8-bit step of its range: the
/// agreement and cosine that a model differing from the reference by an input rounding already falls to. A
/// model whose output flips under that much noise cannot be held to a tighter figure by any 8-bit variant.
/// </summary>
public sealed record ReferenceStability(double? Top1Agreement, double Cosine);

public sealed record ValidationCheck(string Name, double Value, string Comparison, double Threshold, bool Passed);

/// <summary>What <c>edgefleet model validate</c> measured, and its verdict. Every figure is computed in this run.</summary>
public sealed record ValidationReport
{
    public required string Reference { get; init; }

    public required string Candidate { get; init; }

    public required string ReferenceSha256 { get; init; }

    public required string CandidateSha256 { get; init; }

    public required string Output { get; init; }

    public required int Samples { get; init; }

    public required int Threads { get; init; }

    public double? Top1Agreement { get; init; }

    public double? ReferenceAccuracy { get; init; }

    public double? CandidateAccuracy { get; init; }

    public required double MaxAbsError { get; init; }

    public required double MeanAbsError { get; init; }

    public required double Cosine { get; init; }

    /// <summary>Absent in reports written before it was measured.</summary>
    public ReferenceStability? ReferenceStability { get; init; }

    public required LatencyFigures ReferenceLatency { get; init; }

    public required LatencyFigures CandidateLatency { get; init; }

    public required double LatencyRatio { get; init; }

    public required long ReferenceBytes { get; init; }

    public required long CandidateBytes { get; init; }

    public required double SizeRatio { get; init; }

    public required IReadOnlyList<ValidationCheck> Checks { get; init; }

    /// <summary>"accepted" or "rejected".</summary>
    public required string Verdict { get; init; }

    public required DateTimeOffset At { get; init; }

    [JsonIgnore]
    public bool Accepted => Verdict == "accepted";
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ValidationReport))]
[JsonSerializable(typeof(ValidationThresholds))]
public sealed partial class ValidationJsonContext : JsonSerializerContext;
