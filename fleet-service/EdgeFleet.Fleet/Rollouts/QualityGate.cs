using System.Globalization;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>
/// Model-quality gates: the devices on the new version (treatment) against the devices of the target still on
/// the old one (control), from their recent telemetry. Judged when a phase is otherwise done; not judged (and
/// said so) when either group has fewer than <see cref="MinSamples"/> inferences, or no control group is left.
/// </summary>
public sealed record QualityGates
{
    public bool Enabled { get; set; } = true;

    /// <summary>Inferences each group needs before the gates are judged.</summary>
    public int MinSamples { get; set; } = 200;

    /// <summary>The treatment's p95 inference latency over the control's.</summary>
    public double MaxP95LatencyRatio { get; set; } = 1.5;

    /// <summary>How far the treatment's mean top-class confidence may fall below the control's (absolute).</summary>
    public double MaxConfidenceDrop { get; set; } = 0.10;

    /// <summary>PSI of the treatment's predicted-class distribution against the control's.</summary>
    public double MaxOutputPsi { get; set; } = 0.25;

    /// <summary>The treatment's inference error rate (from its latency windows), absolute.</summary>
    public double MaxErrorRate { get; set; } = 0.05;

    /// <summary>The share of the treatment's requests that its fallback model (the version it replaced) answered.</summary>
    public double MaxFallbackRate { get; set; } = 0.05;

    /// <summary>The treatment's hard-example rate over the control's (when the control has any).</summary>
    public double MaxHardExampleRatio { get; set; } = 2.0;

    /// <summary>In a shadow phase: the share of inputs on which the shadow's top class must agree with the served model's.</summary>
    public double MinShadowAgreement { get; set; } = 0.90;

    /// <summary>Recent records read per device, and devices read per group (the best-ranked ones).</summary>
    public int RecordsPerDevice { get; set; } = 200;

    public int DevicesPerGroup { get; set; } = 200;
}

/// <summary>One group's figures from its inference, latency-window and hard-example records.</summary>
public sealed record QualityReading(long Samples, long P95Micros, double MeanConfidence, Dictionary<string, long> Outputs, double ErrorRate, double HardExampleRate)
{
    /// <summary>Requests answered by another version of the model after the device first answered with the new one: its fallback.</summary>
    public double FallbackRate { get; init; }

    /// <summary>
    /// The fallback share over devices' records: on each device, from its first inference of
    /// <paramref name="version"/> on (in sequence order), the inferences another version of the model answered.
    /// Sequence numbers, not clocks, so it holds for devices whose clocks are off.
    /// </summary>
    public static double FallbackShare(IEnumerable<IReadOnlyList<TelemetryRecord>> perDevice, string modelId, string version)
    {
        long total = 0, fallback = 0;
        foreach (var records in perDevice)
        {
            var started = false;
            foreach (var i in records.OrderBy(r => r.Seq).Select(r => r.Inference).OfType<InferenceSample>().Where(i => i.Model == modelId))
            {
                started |= i.Version == version;
                if (!started)
                    continue;
                total++;
                if (i.Version != version)
                    fallback++;
            }
        }
        return total == 0 ? 0 : (double)fallback / total;
    }

    /// <summary>Reads the records of one model version (<paramref name="matches"/> picks it per record's model and version).</summary>
    public static QualityReading From(IEnumerable<TelemetryRecord> records, Func<string, string, bool> matches)
    {
        var latency = new LatencyHistogram();
        var outputs = new Dictionary<string, long>(StringComparer.Ordinal);
        double confidence = 0;
        long hard = 0, windowCount = 0, windowErrors = 0;
        foreach (var r in records)
        {
            if (r.Inference is { } i && matches(i.Model, i.Version))
            {
                latency.Record(i.LatencyMicros);
                confidence += i.Confidence;
                outputs[i.Label] = outputs.GetValueOrDefault(i.Label) + 1;
            }
            else if (r.Latency is { } w && matches(w.Model, w.Version))
            {
                windowCount += w.Count;
                windowErrors += w.Errors;
            }
            else if (r.HardExample is { } h && matches(h.Model, h.Version))
            {
                hard++;
            }
        }
        var n = latency.Count;
        return new QualityReading(n, n == 0 ? 0 : latency.Percentile(0.95), n == 0 ? 0 : confidence / n, outputs,
            windowCount + windowErrors == 0 ? 0 : (double)windowErrors / (windowCount + windowErrors), n == 0 ? 0 : (double)hard / n);
    }
}

/// <summary>The comparison and its verdict: <see cref="Failure"/> names the first gate that failed; <see cref="Summary"/> gives every figure.</summary>
public sealed record QualityVerdict(bool Judged, string? Failure, string Summary)
{
    public static QualityVerdict Judge(QualityReading treatment, QualityReading control, QualityGates gates)
    {
        if (treatment.Samples < gates.MinSamples || control.Samples < gates.MinSamples)
        {
            return new QualityVerdict(false, null, string.Create(CultureInfo.InvariantCulture,
                $"quality not judged: {treatment.Samples} inferences on the new version, {control.Samples} on the old, {gates.MinSamples} needed on each"));
        }
        var p95Ratio = control.P95Micros == 0 ? 1 : (double)treatment.P95Micros / control.P95Micros;
        var confidenceDrop = control.MeanConfidence - treatment.MeanConfidence;
        var psi = Divergence.Psi(control.Outputs, treatment.Outputs);
        var hardRatio = control.HardExampleRate == 0 ? (treatment.HardExampleRate == 0 ? 1 : double.PositiveInfinity) : treatment.HardExampleRate / control.HardExampleRate;
        var summary = string.Create(CultureInfo.InvariantCulture,
            $"quality: p95 {treatment.P95Micros / 1000.0:F2} ms vs {control.P95Micros / 1000.0:F2} ms ({p95Ratio:F2}×), mean confidence {treatment.MeanConfidence:F3} vs {control.MeanConfidence:F3}, output PSI {psi:F3}, error rate {treatment.ErrorRate:P1}, fallback {treatment.FallbackRate:P1}, hard examples {treatment.HardExampleRate:P1} vs {control.HardExampleRate:P1} ({treatment.Samples} and {control.Samples} inferences)");
        string? failure = null;
        if (p95Ratio > gates.MaxP95LatencyRatio)
            failure = string.Create(CultureInfo.InvariantCulture, $"quality gate: p95 latency {p95Ratio:F2}× the old version's (limit {gates.MaxP95LatencyRatio:F2}×)");
        else if (treatment.FallbackRate > gates.MaxFallbackRate)
            failure = string.Create(CultureInfo.InvariantCulture, $"quality gate: the fallback model answered {treatment.FallbackRate:P1} of the new version's requests (limit {gates.MaxFallbackRate:P1})");
        else if (confidenceDrop > gates.MaxConfidenceDrop)
            failure = string.Create(CultureInfo.InvariantCulture, $"quality gate: mean confidence fell by {confidenceDrop:F3} (limit {gates.MaxConfidenceDrop:F3})");
        else if (psi > gates.MaxOutputPsi)
            failure = string.Create(CultureInfo.InvariantCulture, $"quality gate: the predicted-class distribution shifted, PSI {psi:F3} against the old version (limit {gates.MaxOutputPsi:F3})");
        else if (treatment.ErrorRate > gates.MaxErrorRate)
            failure = string.Create(CultureInfo.InvariantCulture, $"quality gate: inference error rate {treatment.ErrorRate:P1} (limit {gates.MaxErrorRate:P1})");
        else if (control.HardExampleRate > 0 && hardRatio > gates.MaxHardExampleRatio)
            failure = string.Create(CultureInfo.InvariantCulture, $"quality gate: hard-example rate {hardRatio:F2}× the old version's (limit {gates.MaxHardExampleRatio:F2}×)");
        return new QualityVerdict(true, failure, summary);
    }
}

/// <summary>
/// A shadow phase's figures, merged from the shadow devices' <see cref="ShadowWindow"/> records of one version:
/// the shadow (treatment) and the served model (control) on the same inputs, and how often they agreed.
/// </summary>
public sealed record ShadowReading(QualityReading Shadow, QualityReading Served, long Agreements, long Windows)
{
    public double Agreement => Shadow.Samples == 0 ? 0 : (double)Agreements / Shadow.Samples;

    public static ShadowReading From(IEnumerable<TelemetryRecord> records, string modelId, string version)
    {
        var shadow = new LatencyHistogram();
        var served = new LatencyHistogram();
        var labels = new Dictionary<string, long>(StringComparer.Ordinal);
        var servedLabels = new Dictionary<string, long>(StringComparer.Ordinal);
        double confidence = 0, servedConfidence = 0;
        long agreements = 0, errors = 0, windows = 0;
        foreach (var w in records.Select(r => r.Shadow).OfType<ShadowWindow>().Where(w => w.Model == modelId && w.Version == version))
        {
            // Validated at ingest; a window that still does not rebuild is skipped rather than trusted.
            if (LatencyHistogram.FromBuckets(w.Buckets, w.Count, out _) is not { } s || LatencyHistogram.FromBuckets(w.ServedBuckets, w.Count, out _) is not { } v)
                continue;
            windows++;
            shadow.Merge(s);
            served.Merge(v);
            agreements += w.Agreements;
            errors += w.Errors;
            confidence += w.MeanConfidence * w.Count;
            servedConfidence += w.ServedMeanConfidence * w.Count;
            foreach (var (label, n) in w.Labels)
                labels[label] = labels.GetValueOrDefault(label) + n;
            foreach (var (label, n) in w.ServedLabels)
                servedLabels[label] = servedLabels.GetValueOrDefault(label) + n;
        }
        var count = shadow.Count;
        return new ShadowReading(
            new QualityReading(count, shadow.Percentile(0.95), count == 0 ? 0 : confidence / count, labels, count + errors == 0 ? 0 : (double)errors / (count + errors), 0),
            new QualityReading(count, served.Percentile(0.95), count == 0 ? 0 : servedConfidence / count, servedLabels, 0, 0),
            agreements, windows);
    }

    /// <summary>The shadow against the served model by the phase's gates, agreement first.</summary>
    public QualityVerdict Judge(QualityGates gates)
    {
        var verdict = QualityVerdict.Judge(Shadow, Served, gates);
        if (!verdict.Judged)
            return verdict with { Summary = "shadow " + verdict.Summary };
        var summary = string.Create(CultureInfo.InvariantCulture, $"shadow agreed with the served model on {Agreement:P1} of {Shadow.Samples} inputs ({Windows} windows); shadow {verdict.Summary}");
        var failure = Agreement < gates.MinShadowAgreement
            ? string.Create(CultureInfo.InvariantCulture, $"quality gate (shadow): the top class agreed with the served model's on {Agreement:P1} of inputs (at least {gates.MinShadowAgreement:P1} needed)")
            : verdict.Failure is { } f ? f.Replace("quality gate:", "quality gate (shadow):", StringComparison.Ordinal) : null;
        return new QualityVerdict(true, failure, summary);
    }
}
