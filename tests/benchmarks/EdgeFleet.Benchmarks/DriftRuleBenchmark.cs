using System.Diagnostics;
using System.Globalization;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Tests.Common;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Issue 27's targets for the drift rule, by seeded Monte Carlo (<see cref="DriftSimulation"/>), the rule beside its
/// baseline in the same run: the rule before issue 27 (a window alerts when PSI ≥ 0.25 with at least 100 values).
/// Both open an alert on 3 alerting windows in a row (the default AlertWindows).
/// <list type="bullet">
/// <item>False alerts with no drift, per 1,000 windows, for bins 5–200 and windows of 50–100,000 values (target ≤ 1);
/// and single windows judged drifting (the per-window level, 0.001).</item>
/// <item>Power at 1,000 values per window: a 0.5 σ mean shift, a ×3 scale change and a point mass that halves,
/// detected within 3 windows (target ≥ 95 % of runs).</item>
/// </list>
/// </summary>
public static class DriftRuleBenchmark
{
    private const int AlertWindows = 3;

    /// <summary>The rule before issue 27: PSI ≥ 0.25 on at least 100 values, whatever the bins.</summary>
    private static bool? Before(IReadOnlyList<long> baseline, FeatureSketch window) =>
        window.Count < 100 ? null : Divergence.Psi(baseline, window.Counts) >= 0.25;

    public static int Run(int windows, int runs)
    {
        var clock = Stopwatch.StartNew();
        var fail = false;
        Console.WriteLine($"drift-rule: no drift, {windows} windows per cell (100,000 values: a fifth of that); false alerts per 1,000 windows " +
            "(3 alerting windows in a row), now | before; drifting windows per 1,000 now");
        Console.WriteLine($"{"bins",5} {"values",8} {"alerts now",11} {"before",8} {"drifting",9}");
        foreach (var bins in new[] { 5, 10, 20, 50, 100, 200 })
        {
            foreach (var values in new[] { 50, 100, 1000, 10_000, 100_000 })
            {
                var n = values >= 100_000 ? Math.Max(100, windows / 5) : windows;
                var seed = (bins * 1_000_003) + values;
                var now = DriftSimulation.NoDrift(bins, values, n, AlertWindows, seed);
                var before = DriftSimulation.NoDrift(bins, values, n, AlertWindows, seed, rule: Before);
                double PerThousand(int count) => 1000.0 * count / n;
                fail |= PerThousand(now.Alerts) > 1;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{bins,5} {values,8} {PerThousand(now.Alerts),11:F2} {PerThousand(before.Alerts),8:F1} {PerThousand(now.Drifting),9:F2}"));
            }
        }
        Console.WriteLine($"power at 1,000 values per window: share of {runs} runs detected within {AlertWindows} windows, now | before");
        Console.WriteLine($"{"bins",5} {"0.5 sd shift",13} {"before",7} {"x3 scale",9} {"before",7} {"mass 60->30%",13} {"before",7}");
        static Func<Random, double> Mass(double share) => r => r.NextDouble() < share ? 0 : 1 + DriftSimulation.Normal(r);
        foreach (var bins in new[] { 5, 10, 20, 50, 100, 200 })
        {
            (double Now, double Before) Both(Func<Random, double> before, Func<Random, double> after, int seed) =>
                (DriftSimulation.Power(bins, 1000, runs, AlertWindows, before, after, seed),
                 DriftSimulation.Power(bins, 1000, runs, AlertWindows, before, after, seed, rule: Before));
            var shift = Both(DriftSimulation.Normal, r => DriftSimulation.Normal(r) + 0.5, bins);
            var scale = Both(DriftSimulation.Normal, r => 3 * DriftSimulation.Normal(r), bins + 1);
            var mass = Both(Mass(0.6), Mass(0.3), bins + 2);
            fail |= shift.Now < 0.95 || scale.Now < 0.95 || mass.Now < 0.95;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{bins,5} {shift.Now,13:P0} {shift.Before,7:P0} {scale.Now,9:P0} {scale.Before,7:P0} {mass.Now,13:P0} {mass.Before,7:P0}"));
        }
        Console.WriteLine($"drift-rule: {(fail ? "a target was missed" : "every target met")} ({clock.Elapsed.TotalSeconds:F0} s)");
        return fail ? 1 : 0;
    }
}
