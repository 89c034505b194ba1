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
        double expectedTotal = expected.Values.Sum(), actualTotal = actual.Values.Sum();
        if (expectedTotal <= 0 || actualTotal <= 0)
            return double.NaN;
        var psi = 0.0;
        foreach (var bin in expected.Keys.Union(actual.Keys))
        {
            var e = Math.Max(Epsilon, expected.GetValueOrDefault(bin) / expectedTotal);
            var a = Math.Max(Epsilon, actual.GetValueOrDefault(bin) / actualTotal);
            psi += (a - e) * Math.Log(a / e);
        }
        return psi;
    }
}
