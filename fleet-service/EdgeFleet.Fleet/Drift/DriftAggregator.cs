using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>One feature's baseline from the model card: bin edges and the training data's counts in them.</summary>
/// <remarks>
/// <paramref name="OutOfRange"/>: how many of its values lay outside the edges (see <see cref="Models.FeatureBaseline.OutOfRange"/>).
/// </remarks>
public sealed record FeatureBaseline(string Name, IReadOnlyList<double> Edges, IReadOnlyList<long> Counts, long OutOfRange = 0);

/// <summary>
/// One device's sketches for one window, one per baseline feature (same order), and its segment (a site, a group, a profile).
/// </summary>
public sealed record DeviceWindow(string DeviceId, string Segment, IReadOnlyList<FeatureSketch> Features);

/// <summary>
/// A feature's drift in one segment: its merged sketch, and PSI, KS and Jensen–Shannon against the baseline and against the
/// other segments.
/// </summary>
public sealed record FeatureDrift(string Feature, string Segment, FeatureSketch Merged, double Psi, double Ks, double JensenShannon,
    double PsiVsRest);

/// <summary>
/// Fleet aggregation of drift for one model version and window: merges the devices' sketches per segment and
/// for the whole fleet (segment "*"), and scores each against the model card's baseline, and each segment
/// against the rest of the fleet. Merging only adds counts, so the result does not depend on the order the
/// devices' sketches arrived in.
/// </summary>
public static class DriftAggregator
{
    public const string AllSegments = "*";

    public static IReadOnlyList<FeatureDrift> Compute(IReadOnlyList<FeatureBaseline> baselines, IReadOnlyList<DeviceWindow> windows)
    {
        foreach (var w in windows)
        {
            if (w.Features.Count != baselines.Count)
                throw new ArgumentException(
                    $"device {w.DeviceId} sent {w.Features.Count} feature sketches; the model has {baselines.Count} baselines");
        }
        var segments = windows.Select(w => w.Segment).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        var segmentIndex = segments.Select((s, i) => (s, i)).ToDictionary(x => x.s, x => x.i, StringComparer.Ordinal);
        var results = new FeatureDrift[baselines.Count][];
        // Features are independent: one per worker, each merging every device's sketch of that feature.
        Parallel.For(0, baselines.Count, f =>
        {
            var baseline = baselines[f];
            var perSegment = segments.Select(_ => new FeatureSketch(baseline.Edges)).ToArray();
            foreach (var w in windows)
                perSegment[segmentIndex[w.Segment]].Merge(w.Features[f]);
            var all = new FeatureSketch(baseline.Edges);
            foreach (var s in perSegment)
                all.Merge(s);
            var list = new FeatureDrift[segments.Length + 1];
            list[0] = Score(baseline, AllSegments, all, double.NaN);
            for (var s = 0; s < segments.Length; s++)
            {
                var rest = all.Counts.Select((c, i) => c - perSegment[s].Counts[i]).ToArray();
                var psiVsRest = rest.Sum() == 0 ? double.NaN : Divergence.Psi(rest, perSegment[s].Counts);
                list[s + 1] = Score(baseline, segments[s], perSegment[s], psiVsRest);
            }
            results[f] = list;
        });
        return [.. results.SelectMany(r => r)];
    }

    private static FeatureDrift Score(FeatureBaseline baseline, string segment, FeatureSketch merged, double psiVsRest) =>
        new(baseline.Name, segment, merged, Divergence.Psi(baseline.Counts, merged.Counts), Divergence.Ks(baseline.Counts, merged.Counts),
            Divergence.JensenShannon(baseline.Counts, merged.Counts), psiVsRest);
}
