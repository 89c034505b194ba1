using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Shared.Tests;

public sealed class DivergenceTests
{
    private static Dictionary<string, long> Counts(params (string Bin, long Count)[] bins) => bins.ToDictionary(b => b.Bin, b => b.Count);

    [Fact]
    public void Psi_is_zero_for_the_same_shares_whatever_the_totals()
    {
        Assert.Equal(0, Divergence.Psi(Counts(("a", 10), ("b", 30)), Counts(("a", 100), ("b", 300))), 12);
    }

    [Fact]
    public void Psi_matches_the_formula_and_is_symmetric()
    {
        // Shares 0.5/0.5 against 0.8/0.2: (0.3·ln 1.6) + (−0.3·ln 0.4) = 0.141 + 0.275 = 0.41589.
        var expected = Counts(("a", 50), ("b", 50));
        var actual = Counts(("a", 80), ("b", 20));
        Assert.Equal(0.3 * Math.Log(1.6) + (-0.3 * Math.Log(0.4)), Divergence.Psi(expected, actual), 12);
        Assert.Equal(Divergence.Psi(expected, actual), Divergence.Psi(actual, expected), 12);
    }

    [Fact]
    public void An_empty_bin_counts_with_the_documented_epsilon_and_an_empty_side_is_nan()
    {
        var psi = Divergence.Psi(Counts(("a", 100)), Counts(("a", 50), ("b", 50)));
        Assert.Equal(((0.5 - 1) * Math.Log(0.5)) + ((0.5 - Divergence.Epsilon) * Math.Log(0.5 / Divergence.Epsilon)), psi, 12);
        Assert.True(psi > 0.25);
        Assert.True(double.IsNaN(Divergence.Psi(Counts(), Counts(("a", 1)))));
    }
}
