using EdgeFleet.Fleet.Drift;
using EdgeFleet.ModelTools.Drift;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Tests.Common;

/// <summary>What a run of simulated windows gave: windows judged drifting, and alerts opened (drifting windows in a row).</summary>
public readonly record struct SimulatedRun(int Windows, int Drifting, int Alerts);

/// <summary>
/// Monte Carlo of the drift rule (<see cref="DriftRule"/>), seeded: windows drawn with no drift from the distribution a
/// baseline was drawn from (false alerts), and windows drawn from a shifted one (power). Shared by the tests (a
/// small grid) and the <c>drift-rule</c> benchmark (the whole grid).
/// </summary>
public static class DriftSimulation
{
    /// <summary>A drift rule: whether a window drifts from the baseline; null when it is not judged.</summary>
    public delegate bool? Rule(IReadOnlyList<long> baseline, FeatureSketch window);

    /// <summary>The fleet's rule (<see cref="DriftRule"/>) with the default thresholds.</summary>
    public static bool? Current(IReadOnlyList<long> baseline, FeatureSketch window)
    {
        var verdict = DriftRule.Judge(baseline, window, new DriftThresholds());
        return verdict.Judged ? verdict.Drifting : null;
    }

    /// <summary>
    /// No drift: a continuous feature with <paramref name="bins"/> equal-share bins, a baseline of
    /// <paramref name="baselineValues"/> values (a fresh one every 100 windows) and <paramref name="windows"/> windows of
    /// <paramref name="values"/> values each, judged as the fleet judges them; an alert opens on
    /// <paramref name="alertWindows"/> drifting windows in a row (and the run starts again after it).
    /// </summary>
    public static SimulatedRun NoDrift(int bins, int values, int windows, int alertWindows, int seed, int baselineValues = 10_000, Rule? rule = null)
    {
        rule ??= Current;
        var random = new Random(seed);
        var edges = Enumerable.Range(0, bins + 1).Select(i => (double)i / bins).ToArray();
        long[] baseline = [];
        int drifting = 0, alerts = 0, run = 0;
        for (var w = 0; w < windows; w++)
        {
            if (w % 100 == 0)
                baseline = UniformCounts(random, bins, baselineValues);
            var counts = UniformCounts(random, bins, values);
            var sketch = FeatureSketch.FromData(new SketchData { Name = "f", Counts = counts, Count = counts.Sum() }, edges, out _)!;
            var verdict = rule(baseline, sketch);
            run = verdict == true ? run + 1 : verdict == false ? 0 : run;
            drifting += verdict == true ? 1 : 0;
            if (run >= alertWindows)
            {
                alerts++;
                run = 0;
            }
        }
        return new SimulatedRun(windows, drifting, alerts);
    }

    /// <summary>
    /// A drifted feature: the baseline is <see cref="BaselineBuilder.Of"/> on <paramref name="baselineValues"/> draws of
    /// <paramref name="before"/>; each run draws <paramref name="within"/> windows of <paramref name="values"/> values
    /// from <paramref name="after"/>. Returns the share of runs in which every one of them drifts, so an alert needing
    /// <paramref name="within"/> windows in a row opens by then.
    /// </summary>
    public static double Power(int bins, int values, int runs, int within, Func<Random, double> before, Func<Random, double> after, int seed,
        int baselineValues = 10_000, Rule? rule = null)
    {
        rule ??= Current;
        var random = new Random(seed);
        var baseline = BaselineBuilder.Of("f", "input:0", [.. Enumerable.Range(0, baselineValues).Select(_ => before(random))], bins);
        var detected = 0;
        for (var r = 0; r < runs; r++)
        {
            var all = true;
            for (var w = 0; w < within && all; w++)
            {
                var sketch = new FeatureSketch(baseline.Edges);
                for (var i = 0; i < values; i++)
                    sketch.Add(after(random));
                all = rule(baseline.Counts, sketch) == true;
            }
            detected += all ? 1 : 0;
        }
        return (double)detected / runs;
    }

    /// <summary>A standard normal draw (Box–Muller).</summary>
    public static double Normal(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    /// <summary><paramref name="values"/> values of a continuous feature binned on equal-share bins: a multinomial draw.</summary>
    private static long[] UniformCounts(Random random, int bins, int values)
    {
        var counts = new long[bins];
        for (var i = 0; i < values; i++)
            counts[(int)(random.NextDouble() * bins)]++;
        return counts;
    }
}
