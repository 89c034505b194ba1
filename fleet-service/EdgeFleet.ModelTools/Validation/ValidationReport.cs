using System.Text.Json.Serialization;

namespace EdgeFleet.ModelTools.Validation;

/// <summary>The limits a candidate must meet; null leaves a check out. Defaults suit an INT8 variant of an FP32 model.</summary>
public sealed record ValidationThresholds
{
    /// <summary>Share of samples (rows) whose top class is the reference's; classification outputs only.</summary>
    public double? MinTop1Agreement { get; init; } = 0.99;

    /// <summary>Mean cosine similarity of the candidate's output to the reference's (outputs of 8 values or more per sample).</summary>
    public double? MinCosine { get; init; } = 0.98;

    /// <summary>
    /// Mean absolute error over the spread (standard deviation) of the reference's output values: the error check
    /// for any output kind, and the only one for a score or regression output of a few values.
    /// </summary>
    public double? MaxRelativeMeanError { get; init; } = 0.1;

    /// <summary>Accuracy the candidate may lose against the reference, with labels.</summary>
    public double? MaxAccuracyDrop { get; init; } = 0.01;

    /// <summary>
    /// Candidate latency / reference latency at the same thread count: the geometric mean of paired, interleaved
    /// runs. Fails only when its 99.9 % interval lies wholly above the limit (measurably slower).
    /// </summary>
    public double? MaxLatencyRatio { get; init; } = 1.0;

    /// <summary>Candidate file size / reference file size.</summary>
    public double? MaxSizeRatio { get; init; }

    public double? MaxMeanAbsError { get; init; }
}

public sealed record LatencyFigures(double P50Ms, double P95Ms, int Runs);

/// <summary>
/// A ratio measured over pairs of runs: the geometric mean of the pairs' ratios and its two-sided 99.9 % interval
/// (Student's t on the logarithms; t approximated as 3.29 + 9.5/df + 35/df², within 0.05 of the exact quantile from
/// 10 pairs on). So wide an interval that a model compared with itself is called slower about once in 2,000 gates.
/// </summary>
public sealed record RatioInterval(double Estimate, double Low, double High, int Pairs)
{
    public static RatioInterval Of(IReadOnlyList<double> logRatios)
    {
        var n = logRatios.Count;
        var mean = logRatios.Average();
        var sd = n > 1 ? Math.Sqrt(logRatios.Sum(l => (l - mean) * (l - mean)) / (n - 1)) : double.PositiveInfinity;
        var df = n - 1.0;
        var half = n > 1 ? (3.29 + 9.5 / df + 35 / (df * df)) * sd / Math.Sqrt(n) : double.PositiveInfinity;
        return new RatioInterval(Math.Exp(mean), Math.Exp(mean - half), Math.Exp(mean + half), n);
    }

    public bool Contains(double value) => Low <= value && value <= High;
}

/// <summary>
/// The reference against itself with every float input moved by up to half an 8-bit step of its range: the
/// agreement and cosine that a model differing from the reference by an input rounding already falls to. A
/// model whose output flips under that much noise cannot be held to a tighter figure by any 8-bit variant.
/// </summary>
public sealed record ReferenceStability(double? Top1Agreement, double? Cosine);

/// <param name="Note">Why a check passed or failed beyond its figure (a latency ratio within noise of its limit).</param>
public sealed record ValidationCheck(string Name, double Value, string Comparison, double Threshold, bool Passed, string? Note = null);

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

    /// <summary>Null when each sample's output has fewer than 8 values (a cosine of so few says nothing).</summary>
    public double? Cosine { get; init; }

    /// <summary>The standard deviation of the reference's output values (absent in reports written before it was measured).</summary>
    public double? ReferenceSpread { get; init; }

    /// <summary>Mean absolute error over <see cref="ReferenceSpread"/>.</summary>
    public double? RelativeMeanAbsError { get; init; }

    /// <summary>Absent in reports written before it was measured.</summary>
    public ReferenceStability? ReferenceStability { get; init; }

    public required LatencyFigures ReferenceLatency { get; init; }

    public required LatencyFigures CandidateLatency { get; init; }

    /// <summary>Candidate p50 over reference p50.</summary>
    public required double LatencyRatio { get; init; }

    /// <summary>The paired runs' ratio with its 95 % interval, which the latency check judges (absent in older reports).</summary>
    public RatioInterval? LatencyRatioInterval { get; init; }

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
