using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Quantization;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Validation;

/// <summary>
/// Runs a reference model and a candidate (typically FP32 and its INT8 variant) on the same inputs in the same
/// process at the same thread count, interleaved so that both see the same machine, and judges the candidate
/// against thresholds: top-1 agreement and accuracy for classification outputs, error and cosine similarity
/// for any output, latency and file size ratios.
/// </summary>
public static class ValidationGate
{
    public sealed record Request
    {
        public required string Reference { get; init; }

        public required string Candidate { get; init; }

        public required string DataDirectory { get; init; }

        /// <summary>One class index per sample (or per row of a batched sample), in sample order.</summary>
        public IReadOnlyList<int>? Labels { get; init; }

        /// <summary>The output to compare; the first output when null.</summary>
        public string? Output { get; init; }

        public int Threads { get; init; } = 1;

        public int MaxSamples { get; init; } = int.MaxValue;

        /// <summary>
        /// Timed runs per model at least (samples are cycled to reach it); while the ratio's interval still holds the
        /// limit, up to <see cref="MaxLatencyBatches"/> times as many.
        /// </summary>
        public int LatencyRuns { get; init; } = 30;

        public int MaxLatencyBatches { get; init; } = 4;

        public ValidationThresholds Thresholds { get; init; } = new();
    }

    public static ValidationReport Run(Request request)
    {
        using var options = new SessionOptions
        {
            IntraOpNumThreads = request.Threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        using var reference = Open(request.Reference, options, "reference");
        using var candidate = Open(request.Candidate, options, "candidate");
        var output = request.Output ?? reference.OutputMetadata.Keys.First();
        if (!reference.OutputMetadata.ContainsKey(output) || !candidate.OutputMetadata.ContainsKey(output))
            throw new ValidationException($"output '{output}' is not in both models (reference: {string.Join(", ", reference.OutputMetadata.Keys)}; candidate: {string.Join(", ", candidate.OutputMetadata.Keys)})");
        foreach (var (name, meta) in reference.InputMetadata)
            if (!candidate.InputMetadata.TryGetValue(name, out var other) || other.ElementDataType != meta.ElementDataType)
                throw new ValidationException($"the candidate's inputs differ from the reference's at '{name}'");

        var samples = SampleSet.Open(request.DataDirectory, reference.InputMetadata);
        var count = Math.Min(samples.Count, request.MaxSamples);
        var comparison = new OutputComparison(request.Labels);
        var inputs = Enumerable.Range(0, count).Select(samples.Read).ToList();
        using var runOptions = new RunOptions();
        var stability = new OutputComparison(null);
        for (var i = 0; i < inputs.Count; i++)
        {
            var r = Infer(reference, runOptions, inputs[i], output);
            var c = Infer(candidate, runOptions, inputs[i], output);
            comparison.Add(r.Values, c.Values, r.Shape);
            var nudged = Infer(reference, runOptions, Nudge(inputs[i], new Random(i)), output);
            stability.Add(r.Values, nudged.Values, r.Shape);
        }
        if (request.Labels is { } labels && labels.Count != comparison.Rows)
            throw new ValidationException($"{labels.Count} labels for {comparison.Rows} classified rows");

        var (referenceLatency, candidateLatency, latencyRatio) = MeasureLatency(reference, candidate, runOptions, inputs, output,
            request.LatencyRuns, request.MaxLatencyBatches, request.Thresholds.MaxLatencyRatio);
        var referenceBytes = new FileInfo(request.Reference).Length;
        var candidateBytes = new FileInfo(request.Candidate).Length;
        var report = new ValidationReport
        {
            Reference = Path.GetFileName(request.Reference),
            Candidate = Path.GetFileName(request.Candidate),
            ReferenceSha256 = Sha256(request.Reference),
            CandidateSha256 = Sha256(request.Candidate),
            Output = output,
            Samples = count,
            Threads = request.Threads,
            Top1Agreement = comparison.Top1Agreement,
            ReferenceAccuracy = comparison.ReferenceAccuracy,
            CandidateAccuracy = comparison.CandidateAccuracy,
            MaxAbsError = comparison.MaxAbsError,
            MeanAbsError = comparison.MeanAbsError,
            Cosine = comparison.Cosine,
            ReferenceSpread = comparison.ReferenceSpread,
            RelativeMeanAbsError = comparison.RelativeMeanAbsError,
            ReferenceStability = new ReferenceStability(stability.Top1Agreement, stability.Cosine),
            ReferenceLatency = referenceLatency,
            CandidateLatency = candidateLatency,
            LatencyRatio = candidateLatency.P50Ms / referenceLatency.P50Ms,
            LatencyRatioInterval = latencyRatio,
            ReferenceBytes = referenceBytes,
            CandidateBytes = candidateBytes,
            SizeRatio = (double)candidateBytes / referenceBytes,
            Checks = [],
            Verdict = "",
            At = DateTimeOffset.UtcNow,
        };
        var checks = Judge(report, request.Thresholds);
        return report with { Checks = checks, Verdict = checks.All(c => c.Passed) ? "accepted" : "rejected" };
    }

    public static IReadOnlyList<ValidationCheck> Judge(ValidationReport report, ValidationThresholds t)
    {
        var checks = new List<ValidationCheck>();
        void AtLeast(string name, double? value, double? limit)
        {
            if (value is { } v && limit is { } l)
                checks.Add(new ValidationCheck(name, v, ">=", l, v >= l));
        }
        void AtMost(string name, double? value, double? limit)
        {
            if (value is { } v && limit is { } l)
                checks.Add(new ValidationCheck(name, v, "<=", l, v <= l));
        }
        AtLeast("top1Agreement", report.Top1Agreement, t.MinTop1Agreement);
        AtLeast("cosine", report.Cosine, t.MinCosine);
        AtMost("relativeMeanError", report.RelativeMeanAbsError, t.MaxRelativeMeanError);
        AtMost("accuracyDrop", report.ReferenceAccuracy - report.CandidateAccuracy, t.MaxAccuracyDrop);
        if (report.LatencyRatioInterval is { } ratio && t.MaxLatencyRatio is { } limit)
        {
            // Measurably slower fails; a ratio whose interval still holds the limit after the extra runs is noise.
            var note = ratio.Contains(limit)
                ? string.Create(CultureInfo.InvariantCulture,
                    $"within noise of the limit: 99.9 % interval {ratio.Low:F3}–{ratio.High:F3} over {ratio.Pairs} paired runs")
                : null;
            checks.Add(new ValidationCheck("latencyRatio", ratio.Estimate, "<=", limit, ratio.Low <= limit, note));
        }
        else
        {
            AtMost("latencyRatio", report.LatencyRatio, t.MaxLatencyRatio);
        }
        AtMost("sizeRatio", report.SizeRatio, t.MaxSizeRatio);
        AtMost("meanAbsError", report.MeanAbsError, t.MaxMeanAbsError);
        return checks;
    }

    /// <summary>
    /// Interleaved pairs of runs on the same sample, alternating which model goes first so neither always runs on a
    /// warmer cache; a batch at a time until the ratio's interval excludes <paramref name="limit"/> or
    /// <paramref name="maxBatches"/> batches ran.
    /// </summary>
    private static (LatencyFigures Reference, LatencyFigures Candidate, RatioInterval Ratio) MeasureLatency(InferenceSession reference,
        InferenceSession candidate, RunOptions runOptions, List<IReadOnlyList<SampleTensor>> inputs, string output, int runs, int maxBatches,
        double? limit)
    {
        for (var i = 0; i < 3; i++)
        {
            Infer(reference, runOptions, inputs[i % inputs.Count], output);
            Infer(candidate, runOptions, inputs[i % inputs.Count], output);
        }
        var r = new List<double>();
        var c = new List<double>();
        var logRatios = new List<double>();
        var batch = Math.Max(Math.Max(2, runs), inputs.Count);
        for (var i = 0; ; i++)
        {
            var sample = inputs[i % inputs.Count];
            double referenceMs, candidateMs;
            if (i % 2 == 0)
            {
                referenceMs = Infer(reference, runOptions, sample, output).Ms;
                candidateMs = Infer(candidate, runOptions, sample, output).Ms;
            }
            else
            {
                candidateMs = Infer(candidate, runOptions, sample, output).Ms;
                referenceMs = Infer(reference, runOptions, sample, output).Ms;
            }
            r.Add(referenceMs);
            c.Add(candidateMs);
            logRatios.Add(Math.Log(Math.Max(candidateMs, 1e-6) / Math.Max(referenceMs, 1e-6)));
            if ((i + 1) % batch != 0)
                continue;
            var ratio = RatioInterval.Of(logRatios);
            if (limit is not { } l || !ratio.Contains(l) || i + 1 >= batch * Math.Max(1, maxBatches))
                return (Figures(r), Figures(c), ratio);
        }
    }

    private static LatencyFigures Figures(List<double> ms)
    {
        ms.Sort();
        return new LatencyFigures(Percentile(ms, 0.50), Percentile(ms, 0.95), ms.Count);
    }

    internal static double Percentile(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];

    /// <summary>
    /// A sample with every float input moved by uniform noise of up to half an 8-bit step of its own range: the
    /// rounding an 8-bit source (a camera's pixels) or an 8-bit input quantizer brings.
    /// </summary>
    private static IReadOnlyList<SampleTensor> Nudge(IReadOnlyList<SampleTensor> sample, Random random) =>
    [
        .. sample.Select(t =>
        {
            if (t.Data is not float[] values || values.Length == 0)
                return t;
            var half = (values.Max() - values.Min()) / 255f / 2;
            return t with { Data = Array.ConvertAll(values, v => v + half * (float)(random.NextDouble() * 2 - 1)) };
        }),
    ];

    private static (float[] Values, long[] Shape, double Ms) Infer(InferenceSession session, RunOptions runOptions, IReadOnlyList<SampleTensor> sample, string output)
    {
        var values = sample.Select(t => t.ToOrtValue()).ToArray();
        try
        {
            var clock = Stopwatch.StartNew();
            using var results = session.Run(runOptions, sample.Select(t => t.Name).ToArray(), values, [output]);
            var ms = clock.Elapsed.TotalMilliseconds;
            return (results[0].GetTensorDataAsSpan<float>().ToArray(), results[0].GetTensorTypeAndShape().Shape, ms);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ValidationException($"ONNX Runtime failed: {ModelPreprocessor.FirstLine(e.Message)}");
        }
        finally
        {
            foreach (var v in values)
                v.Dispose();
        }
    }

    private static InferenceSession Open(string path, SessionOptions options, string role)
    {
        if (!File.Exists(path))
            throw new ValidationException($"the {role} model {path} does not exist");
        try
        {
            return new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ValidationException($"ONNX Runtime cannot load the {role} model {path}: {ModelPreprocessor.FirstLine(e.Message)}");
        }
    }

    private static string Sha256(string path)
    {
        using var file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }
}

public sealed class ValidationException(string message) : Exception(message);
