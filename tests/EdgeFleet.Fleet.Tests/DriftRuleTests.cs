using EdgeFleet.Fleet.Drift;
using CardBaseline = EdgeFleet.Fleet.Models.FeatureBaseline;
using ModelCard = EdgeFleet.Fleet.Models.ModelCard;
using EdgeFleet.ModelTools.Drift;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Tests.Common;

namespace EdgeFleet.Fleet.Tests;

/// <summary>
/// The drift rule under no drift (false alerts) and under known shifts (power), by seeded Monte Carlo, and the blind
/// spots it must not have. The whole grid (up to 100,000 values per window) is the drift-rule benchmark.
/// </summary>
public sealed class DriftRuleTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public static TheoryData<int> Bins => [5, 10, 20, 50, 100, 200];

    /// <summary>
    /// With no drift, for every bin count and window size (200 bins and 50 values included: bins are pooled): no alert
    /// (3 drifting windows in a row) in 400 windows, and single drifting windows at about the test's level (0.001).
    /// The rule before this one (PSI ≥ 0.25 on 100 values) opened 22 alerts per 1,000 windows at 20 bins and 333 at 50.
    /// </summary>
    [Theory]
    [MemberData(nameof(Bins))]
    public void With_no_drift_no_alert_opens_whatever_the_bins_and_window_size(int bins)
    {
        var drifting = 0;
        var windows = 0;
        foreach (var values in new[] { 50, 100, 300, 1000, 10_000 })
        {
            var run = DriftSimulation.NoDrift(bins, values, windows: 400, alertWindows: 3, seed: (bins * 1000) + values);
            output.WriteLine($"{bins} bins, {values} values: {run.Drifting} of {run.Windows} windows drifting, {run.Alerts} alerts");
            Assert.Equal(0, run.Alerts);
            drifting += run.Drifting;
            windows += run.Windows;
        }
        // 2,000 windows at a level of 0.001: 2 expected; 8 or more has a probability under 0.1 % if the test is calibrated.
        Assert.True(drifting <= 7, $"{drifting} of {windows} windows judged drifting with no drift");
    }

    [Theory]
    [MemberData(nameof(Bins))]
    public void A_half_sigma_mean_shift_and_a_threefold_scale_are_detected_within_three_windows_of_1000_values(int bins)
    {
        var shift = DriftSimulation.Power(bins, 1000, runs: 60, within: 3, DriftSimulation.Normal, r => DriftSimulation.Normal(r) + 0.5, seed: bins);
        var scale = DriftSimulation.Power(bins, 1000, runs: 30, within: 3, DriftSimulation.Normal, r => 3 * DriftSimulation.Normal(r), seed: bins + 1);
        output.WriteLine($"{bins} bins: 0.5 sigma shift detected in {shift:P0} of runs, x3 scale in {scale:P0}");
        Assert.True(shift >= 0.95, $"0.5 sigma shift detected in {shift:P0} of runs");
        Assert.Equal(1.0, scale);
    }

    [Fact]
    public void A_point_mass_that_halves_is_detected()
    {
        // 60 % of the values are exactly 0 (a stuck reading, a ReLU's zeros); then 30 %.
        static Func<Random, double> Mass(double share) => r => r.NextDouble() < share ? 0 : 1 + DriftSimulation.Normal(r);
        foreach (var bins in new[] { 10, 200 })
        {
            // At 200 bins a window of 1,000 values expects 2 in each of the other bins: they are pooled, the mass's bin is not.
            Assert.Equal(1.0, DriftSimulation.Power(bins, 1000, runs: 50, within: 3, Mass(0.6), Mass(0.3), seed: 7));
            Assert.Equal(0.0, DriftSimulation.Power(bins, 1000, runs: 50, within: 3, Mass(0.6), Mass(0.6), seed: 8));
        }
    }

    [Fact]
    public void A_point_mass_gets_a_bin_of_its_own_and_a_constant_feature_bins_on_either_side()
    {
        var zeros = BaselineBuilder.Of("f", "input:0", [.. Enumerable.Repeat(0.0, 600).Concat(Enumerable.Range(1, 400).Select(i => i / 100.0))], 10);
        var zeroBin = Array.IndexOf(zeros.Edges, 0.0);
        Assert.Equal((0.0, Math.BitIncrement(0.0)), (zeros.Edges[zeroBin], zeros.Edges[zeroBin + 1]));
        Assert.Equal(600, zeros.Counts[zeroBin]);
        Assert.True(zeroBin > 0, "an empty bin below the point mass at the minimum");

        // A feature constant in the training data: before, one bin, so nothing could ever drift from it.
        var constant = BaselineBuilder.Of("c", "input:0", [.. Enumerable.Repeat(5.0, 1000)], 10);
        Assert.Equal([0L, 1000, 0], constant.Counts);
        var sketch = new FeatureSketch(constant.Edges);
        for (var i = 0; i < 5000; i++)
            sketch.Add(i < 4166 ? 5.0 : i < 4166 + 500 ? 4.0 : 6.0);
        var verdict = DriftRule.Judge(constant.Counts, sketch, new DriftThresholds());
        Assert.True(verdict.Drifting, verdict.ToString());
        Assert.Equal("out-of-range", verdict.Quality);
    }

    [Fact]
    public void Nan_and_out_of_range_values_are_data_quality_problems()
    {
        var baseline = BaselineBuilder.Of("f", "input:0", [.. Enumerable.Range(0, 1000).Select(i => i / 1000.0)], 10);
        DriftVerdict Window(Func<int, double> value)
        {
            var sketch = new FeatureSketch(baseline.Edges);
            for (var i = 0; i < 1000; i++)
                sketch.Add(value(i));
            return DriftRule.Judge(baseline.Counts, sketch, new DriftThresholds());
        }
        Assert.Equal(("ok", "ok"), (Window(i => i / 1000.0).Level, Window(i => i / 1000.0).Quality));
        Assert.Equal(("empty", "invalid"), (Window(_ => double.NaN).Level, Window(_ => double.NaN).Quality));
        Assert.Equal("invalid", Window(i => i % 10 == 0 ? double.PositiveInfinity : i / 1000.0).Quality);
        Assert.Equal("ok", Window(i => i % 100 == 0 ? double.NaN : i / 1000.0).Quality); // 1 %: under the 5 % threshold
        Assert.Equal("out-of-range", Window(i => i % 10 == 0 ? 7 : i / 1000.0).Quality);
        // A baseline rebuilt from field sketches on older edges had 10 % outside them itself: the same share is no news.
        var sketch = new FeatureSketch(baseline.Edges);
        for (var i = 0; i < 1000; i++)
            sketch.Add(i % 10 == 0 ? 7 : i / 1000.0);
        Assert.Equal("ok", DriftRule.Judge(baseline.Counts, sketch, new DriftThresholds(), baselineOutOfRange: 100).Quality);
    }

    [Fact]
    public void A_field_reference_that_had_values_outside_its_edges_judges_that_share_with_its_sampling_noise()
    {
        // A retrained version's output reference: three windows of its own field (540 values) on the edges it inherited,
        // 30 % of them above those edges. Later windows of the same field (180 values) scatter around 30 %; before,
        // any window 5 points over the reference's estimate was an out-of-range alert (about one window in ten).
        var edges = BaselineBuilder.Of("confidence", "output:0", [.. Enumerable.Range(0, 1000).Select(i => i / 1000.0)], 10).Edges;
        FeatureSketch Sample(Random random, int n, double outside)
        {
            var sketch = new FeatureSketch(edges);
            for (var i = 0; i < n; i++)
                sketch.Add(random.NextDouble() < outside ? 1.5 : random.NextDouble() * 0.99);
            return sketch;
        }
        var random = new Random(27);
        var falseAlerts = 0;
        const int Windows = 2000;
        for (var run = 0; run < Windows; run++)
        {
            var reference = Sample(random, 540, 0.3);
            var window = Sample(random, 180, 0.3);
            if (DriftRule.Judge(reference.Counts, window, new DriftThresholds(), baselineOutOfRange: reference.Below + reference.Above).Quality != "ok")
                falseAlerts++;
        }
        Assert.True(falseAlerts <= 2, $"{falseAlerts} out-of-range verdicts in {Windows} windows of the reference's own field");

        // Twice the reference's share outside its edges is news, and so is any real share outside a training range.
        var fixedReference = Sample(new Random(1), 540, 0.3);
        var jump = Sample(new Random(2), 180, 0.6);
        Assert.Equal("out-of-range", DriftRule.Judge(fixedReference.Counts, jump, new DriftThresholds(),
            baselineOutOfRange: fixedReference.Below + fixedReference.Above).Quality);
        var training = Sample(new Random(3), 1000, 0);
        Assert.Equal("out-of-range", DriftRule.Judge(training.Counts, Sample(new Random(4), 180, 0.1), new DriftThresholds()).Quality);
    }

    [Fact]
    public void A_card_whose_baseline_cannot_be_scored_is_refused_with_its_reason()
    {
        static string? Problem(CardBaseline b) => new ModelCard { Owner = "o", IntendedUse = "u", FeatureBaselines = [b] }.Problem();
        Assert.Contains("holds no values", Problem(new CardBaseline("f", [0, 1, 2], [0, 0])), StringComparison.Ordinal);
        Assert.Contains("one bin", Problem(new CardBaseline("f", [0, 1], [10])), StringComparison.Ordinal);
        Assert.Contains("warnPsi", Problem(new CardBaseline("f", [0, 1, 2], [5, 5]) { WarnPsi = 0.5, AlertPsi = 0.3 }), StringComparison.Ordinal);
        Assert.Null(Problem(new CardBaseline("f", [0, 1, 2], [5, 5]) { WarnPsi = 0.05, AlertPsi = 0.3 }));
    }

    [Fact]
    public void The_chi_square_tail_matches_closed_forms_and_tables()
    {
        // Even degrees of freedom: Q = e^(-x/2) Σ_{i<k} (x/2)^i / i!.
        foreach (var df in new[] { 2, 4, 10, 50, 200 })
        {
            foreach (var x in new[] { 0.5, 3.0, df * 1.0, df * 2.5, df + 40.0 })
            {
                double term = 1, sum = 0;
                for (var i = 0; i < df / 2; i++)
                {
                    sum += term;
                    term *= x / 2 / (i + 1);
                }
                var exact = Math.Exp((-x / 2) + Math.Log(sum));
                Assert.Equal(1, Homogeneity.ChiSquareSurvival(x, df) / exact, 10);
            }
        }
        Assert.Equal(0.05, Homogeneity.ChiSquareSurvival(3.841458820694124, 1), 12);
        Assert.Equal(0.001, Homogeneity.ChiSquareSurvival(10.827566170662733, 1), 12);
        Assert.Equal(0.05, Homogeneity.ChiSquareSurvival(18.307038053275146, 10), 12);
        Assert.Equal(1, Homogeneity.GTest([10, 10], [0, 0]).PValue);
        Assert.True(Homogeneity.GTest([100, 100, 100], [0, 0, 300]).PValue < 1e-80); // G ≈ 382 on 2 degrees of freedom
    }
}
