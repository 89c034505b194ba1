using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>A feature's drift thresholds: PSI levels from the model card (per feature) or the defaults.</summary>
public sealed record DriftThresholds(double WarnPsi = DriftRule.DefaultWarnPsi, double AlertPsi = DriftRule.DefaultAlertPsi)
{
    public static DriftThresholds Of(Models.FeatureBaseline baseline) =>
        new(baseline.WarnPsi ?? DriftRule.DefaultWarnPsi, baseline.AlertPsi ?? DriftRule.DefaultAlertPsi);
}

/// <summary>How one cell (a feature in one segment and window) was judged.</summary>
/// <param name="Level"><c>empty</c> (no valid value), <c>few</c> (under <see cref="DriftRule.MinCount"/>: not judged),
/// <c>pending</c> (the baseline is a field reference still waiting for its windows: not judged),
/// <c>ok</c>, <c>warn</c> or <c>alert</c>.</param>
/// <param name="Psi">PSI over the bins judged (the card's bins, adjacent ones pooled where the window is too small for
/// them); null when not judged.</param>
/// <param name="Bins">How many bins were judged.</param>
/// <param name="PValue">The G-test's p-value against the baseline; null when not judged.</param>
/// <param name="Quality"><c>ok</c>, or the data-quality problem: <c>invalid</c> (NaN or ±∞) or <c>out-of-range</c>.</param>
public readonly record struct DriftVerdict(string Level, double? Psi, int Bins, double? PValue, string Quality)
{
    public bool Judged => Level is "ok" or "warn" or "alert";

    public bool Drifting => Level is "warn" or "alert";
}

/// <summary>
/// The drift decision. A window drifts from the baseline when both hold:
/// <list type="bullet">
/// <item><b>evidence</b>: the G-test of homogeneity between the baseline's counts (with its own sample size) and
/// the window's, with Williams' correction, rejects at <see cref="Alpha"/> = 0.001 per window;</item>
/// <item><b>effect</b>: PSI is at least the warning level (0.1 by default; <c>warnPsi</c> per feature in the card).</item>
/// </list>
/// It is then <c>warn</c>, or <c>alert</c> when PSI also reaches the alert level (0.25; <c>alertPsi</c>). Both are
/// computed over bins that expect at least <see cref="ValuesPerBin"/> of the window's values (the χ² approximation's
/// rule of thumb): where the window is too small for the card's bins, adjacent bins are pooled in order until each
/// does, so the resolution the decision uses scales with the window and the bins (bins the baseline never saw stay
/// apart: a value there is news). A window needs at least <see cref="DefaultMinCountFloor"/> values to be judged.
/// Sampling noise alone gives PSI ≈ (bins − 1)(1/n + 1/N), which is why the effect size alone cannot decide (at 20
/// bins and 100 values it is 0.19). Alerts open on <c>AlertWindows</c> drifting windows in a row, so the false-alert
/// rate with no drift is about 0.001^AlertWindows per feature and segment (measured: <c>drift-rule</c> benchmark).
/// Data quality is judged apart: a window whose share of NaN/∞ values reaches <see cref="MaxInvalidShare"/>, or whose
/// share outside the baseline's range exceeds what is expected by <see cref="MaxOutOfRangeShare"/> (expected: the
/// baseline's own share outside, or what a fresh sample leaves outside a range its own size set, 2/(N + 1); and at
/// least five times the latter) and significantly so (the G-test on inside/outside against the baseline's own
/// counts, at <see cref="Alpha"/>), has a quality problem.
/// </summary>
public static class DriftRule
{
    public const double DefaultWarnPsi = 0.1;
    public const double DefaultAlertPsi = 0.25;

    /// <summary>The per-window significance level of the homogeneity test.</summary>
    public const double Alpha = 1e-3;

    /// <summary>The window values each judged bin must expect (from the baseline's shares).</summary>
    public const int ValuesPerBin = 5;

    /// <summary>The smallest number of values judged (the API's <c>minCount</c> overrides it).</summary>
    public const long DefaultMinCountFloor = 50;

    public const double MaxInvalidShare = 0.05;
    public const double MaxOutOfRangeShare = 0.05;

    /// <summary>How many values a window needs to be judged.</summary>
    public static long MinCount(long floor = DefaultMinCountFloor) => Math.Max(1, floor);

    /// <summary>Judges a window's <paramref name="window"/> sketch against the baseline's counts.</summary>
    /// <param name="baselineOutOfRange">How many of the baseline's own values lay outside its edges.</param>
    public static DriftVerdict Judge(IReadOnlyList<long> baseline, FeatureSketch window, DriftThresholds thresholds,
        long floor = DefaultMinCountFloor, long baselineOutOfRange = 0)
    {
        var minCount = MinCount(floor);
        var quality = Quality(baseline, window, minCount, baselineOutOfRange);
        if (window.Count == 0)
            return new DriftVerdict("empty", null, 0, null, quality);
        if (baseline.All(c => c == 0))
            return new DriftVerdict("pending", null, 0, null, quality); // a field reference still filling
        if (window.Count < minCount)
            return new DriftVerdict("few", null, 0, null, quality);
        var (expected, actual) = Pool(baseline, window.Counts, window.Count);
        var psi = Divergence.Psi(expected, actual);
        var test = Homogeneity.GTest(expected, actual);
        var level = test.PValue >= Alpha || !(psi >= thresholds.WarnPsi) ? "ok" : psi >= thresholds.AlertPsi ? "alert" : "warn";
        return new DriftVerdict(level, psi, expected.Length, test.PValue, quality);
    }

    /// <summary>
    /// The bins judged: adjacent bins pooled in order until each expects <see cref="ValuesPerBin"/> of the window's
    /// <paramref name="values"/> (a short last group joins the one before); a bin the baseline never saw stays apart.
    /// </summary>
    public static (long[] Expected, long[] Actual) Pool(IReadOnlyList<long> baseline, IReadOnlyList<long> window, long values)
    {
        double total = 0;
        foreach (var c in baseline)
            total += c;
        var need = ValuesPerBin * total / values; // baseline count a group needs to expect ValuesPerBin window values
        if (baseline.All(c => c == 0 || c >= need))
            return ([.. baseline], [.. window]);
        var expected = new List<long>();
        var actual = new List<long>();
        long e = 0, a = 0;
        var open = false;
        for (var i = 0; i < baseline.Count; i++)
        {
            if (baseline[i] == 0)
            {
                expected.Add(0);
                actual.Add(window[i]);
                continue;
            }
            e += baseline[i];
            a += window[i];
            open = true;
            if (e >= need)
            {
                expected.Add(e);
                actual.Add(a);
                (e, a, open) = (0, 0, false);
            }
        }
        if (open)
        {
            var last = expected.FindLastIndex(x => x > 0);
            if (last < 0)
            {
                expected.Add(e);
                actual.Add(a);
            }
            else
            {
                expected[last] += e;
                actual[last] += a;
            }
        }
        return ([.. expected], [.. actual]);
    }

    private static string Quality(IReadOnlyList<long> baseline, FeatureSketch window, long minCount, long baselineOutOfRange)
    {
        var total = window.Count + window.Invalid;
        if (total < minCount)
            return "ok";
        if (window.Invalid >= MaxInvalidShare * total)
            return "invalid";
        var baselineValues = Math.Max(1, baseline.Sum());
        var outside = window.Below + window.Above;
        var share = (double)outside / Math.Max(1, window.Count);
        // What a fresh sample leaves outside a range its own size set, 2/(N + 1); or what the baseline itself had outside.
        var expected = Math.Max(2.0 / (baselineValues + 1), (double)baselineOutOfRange / baselineValues);
        if (window.Count == 0 || share < MaxOutOfRangeShare + expected || share < 5 * 2.0 / (baselineValues + 1))
            return "ok";
        // Evidence as well as effect, as for drift: a baseline that had values outside its edges itself (a field
        // reference on inherited edges) estimated that share from a sample, so a window only a few points above it
        // may be that sample's noise.
        var inside = Math.Max(0, baselineValues - baselineOutOfRange);
        var test = Homogeneity.GTest([baselineOutOfRange, inside], [outside, window.Count - outside]);
        return test.PValue < Alpha ? "out-of-range" : "ok";
    }
}
