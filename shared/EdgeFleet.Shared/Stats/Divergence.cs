namespace EdgeFleet.Shared.Stats;

/// <summary>Distances between two distributions given as counts per bin (or per category).</summary>
public static class Divergence
{
    /// <summary>
    /// The share given to an empty bin before taking logarithms: PSI is infinite when a bin is empty on one side,
    /// so each share is at least this (then the shares are used as they are, not renormalised).
    /// </summary>
    public const double Epsilon = 1e-4;

    /// <summary>
    /// Population stability index of <paramref name="actual"/> against <paramref name="expected"/>:
    /// Σ (a − e) · ln(a / e) over the union of bins, with shares floored at <see cref="Epsilon"/>. 0 for equal
    /// distributions; by convention under 0.1 is stable, 0.1–0.25 a moderate shift, over 0.25 a major one.
    /// NaN when either side is empty.
    /// </summary>
    public static double Psi(IReadOnlyDictionary<string, long> expected, IReadOnlyDictionary<string, long> actual)
    {
        var bins = expected.Keys.Union(actual.Keys).ToList();
        return Psi([.. bins.Select(b => expected.GetValueOrDefault(b))], [.. bins.Select(b => actual.GetValueOrDefault(b))]);
    }

    /// <summary>PSI over ordered bins (a sketch's counts against the baseline's), as <see cref="Psi(IReadOnlyDictionary{string, long}, IReadOnlyDictionary{string, long})"/>.</summary>
    public static double Psi(IReadOnlyList<long> expected, IReadOnlyList<long> actual)
    {
        var (e, a) = Shares(expected, actual);
        if (e is null)
            return double.NaN;
        var psi = 0.0;
        for (var i = 0; i < e.Length; i++)
        {
            var ei = Math.Max(Epsilon, e[i]);
            var ai = Math.Max(Epsilon, a![i]);
            psi += (ai - ei) * Math.Log(ai / ei);
        }
        return psi;
    }

    /// <summary>
    /// Two-sample Kolmogorov–Smirnov statistic on binned data: the largest distance between the two cumulative
    /// shares at the bins' upper edges (0..1). NaN when either side is empty.
    /// </summary>
    public static double Ks(IReadOnlyList<long> expected, IReadOnlyList<long> actual)
    {
        var (e, a) = Shares(expected, actual);
        if (e is null)
            return double.NaN;
        double ce = 0, ca = 0, d = 0;
        for (var i = 0; i < e.Length; i++)
        {
            ce += e[i];
            ca += a![i];
            d = Math.Max(d, Math.Abs(ce - ca));
        }
        return d;
    }

    /// <summary>
    /// Jensen–Shannon distance (the square root of the divergence, logarithms base 2): 0 for equal
    /// distributions, 1 for disjoint ones; empty bins need no epsilon. NaN when either side is empty.
    /// </summary>
    public static double JensenShannon(IReadOnlyList<long> expected, IReadOnlyList<long> actual)
    {
        var (e, a) = Shares(expected, actual);
        if (e is null)
            return double.NaN;
        var divergence = 0.0;
        for (var i = 0; i < e.Length; i++)
        {
            var m = (e[i] + a![i]) / 2;
            if (e[i] > 0)
                divergence += 0.5 * e[i] * Math.Log2(e[i] / m);
            if (a[i] > 0)
                divergence += 0.5 * a[i] * Math.Log2(a[i] / m);
        }
        return Math.Sqrt(Math.Max(0, divergence));
    }

    private static (double[]? Expected, double[]? Actual) Shares(IReadOnlyList<long> expected, IReadOnlyList<long> actual)
    {
        if (expected.Count != actual.Count)
            throw new ArgumentException($"the distributions have {expected.Count} and {actual.Count} bins");
        double te = expected.Sum(), ta = actual.Sum();
        if (te <= 0 || ta <= 0)
            return (null, null);
        return ([.. expected.Select(c => c / te)], [.. actual.Select(c => c / ta)]);
    }
}
