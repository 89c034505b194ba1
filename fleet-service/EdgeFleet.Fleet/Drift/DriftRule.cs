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
/// <c>ok</c>, <c>warn</c> or <c>alert</c>.</param>
/// <param name="PValue">The G-test's p-value against the baseline; null when not judged.</param>
/// <param name="Quality"><c>ok</c>, or the data-quality problem: <c>invalid</c> (NaN or ±∞) or <c>out-of-range</c>.</param>
public readonly record struct DriftVerdict(string Level, double? PValue, string Quality)
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
/// It is then <c>warn</c>, or <c>alert</c> when PSI also reaches the alert level (0.25; <c>alertPsi</c>). A window
/// is judged only with at least <see cref="MinCount"/> values: <see cref="ValuesPerBin"/> per baseline bin (the
/// χ² approximation's rule of thumb), and never fewer than the floor. Sampling noise alone gives PSI ≈
/// (bins − 1)(1/n + 1/N), which is why the effect size alone cannot decide (at 20 bins and 100 values it is 0.19).
/// Alerts open on <c>AlertWindows</c> drifting windows in a row, so the false-alert rate with no drift is at most
/// about 0.001^AlertWindows per feature and segment (measured: <c>tests/benchmarks</c>, <c>drift-rule</c>).
/// Data quality is judged apart: a window whose share of NaN/∞ values reaches <see cref="MaxInvalidShare"/>, or whose
/// share outside the baseline's range reaches <see cref="MaxOutOfRangeShare"/> (and five times what a sample of the
/// baseline's size leaves outside its own range, 2/(N + 1)), has a quality problem.
/// </summary>
public static class DriftRule
{
    public const double DefaultWarnPsi = 0.1;
    public const double DefaultAlertPsi = 0.25;

    /// <summary>The per-window significance level of the homogeneity test.</summary>
    public const double Alpha = 1e-3;

    public const int ValuesPerBin = 5;

    /// <summary>The smallest number of values judged whatever the bins (the API's <c>minCount</c> overrides it).</summary>
    public const long DefaultMinCountFloor = 50;

    public const double MaxInvalidShare = 0.05;
    public const double MaxOutOfRangeShare = 0.05;

    /// <summary>How many values a window needs to be judged on <paramref name="bins"/> bins.</summary>
    public static long MinCount(int bins, long floor = DefaultMinCountFloor) => Math.Max(floor, (long)ValuesPerBin * bins);

    /// <summary>Judges a window's <paramref name="window"/> sketch against the baseline's counts.</summary>
    public static DriftVerdict Judge(IReadOnlyList<long> baseline, FeatureSketch window, double psi, DriftThresholds thresholds,
        long floor = DefaultMinCountFloor)
    {
        var minCount = MinCount(baseline.Count, floor);
        var quality = Quality(baseline, window, minCount);
        if (window.Count == 0)
            return new DriftVerdict("empty", null, quality);
        if (window.Count < minCount)
            return new DriftVerdict("few", null, quality);
        var test = Homogeneity.GTest(baseline, window.Counts);
        var level = test.PValue >= Alpha || !(psi >= thresholds.WarnPsi) ? "ok" : psi >= thresholds.AlertPsi ? "alert" : "warn";
        return new DriftVerdict(level, test.PValue, quality);
    }

    private static string Quality(IReadOnlyList<long> baseline, FeatureSketch window, long minCount)
    {
        var total = window.Count + window.Invalid;
        if (total < minCount)
            return "ok";
        if (window.Invalid >= MaxInvalidShare * total)
            return "invalid";
        var baselineValues = baseline.Sum();
        var outside = window.Below + window.Above;
        var expected = 2.0 / (baselineValues + 1);
        return window.Count > 0 && outside >= MaxOutOfRangeShare * window.Count && outside >= 5 * expected * window.Count ? "out-of-range" : "ok";
    }
}
