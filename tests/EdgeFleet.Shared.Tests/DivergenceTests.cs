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

public sealed class BinnedDivergenceTests
{
    [Fact]
    public void Ks_is_the_largest_gap_between_the_cumulative_shares()
    {
        // Shares 0.2/0.3/0.5 and 0.5/0.3/0.2: cumulative 0.2/0.5/1 and 0.5/0.8/1, largest gap 0.3.
        Assert.Equal(0.3, Divergence.Ks([2, 3, 5], [5, 3, 2]), 12);
        Assert.Equal(0, Divergence.Ks([1, 1], [7, 7]), 12);
        Assert.Equal(1, Divergence.Ks([1, 0], [0, 1]), 12);
        Assert.Equal(0, Divergence.Ks([5], [9]), 12); // one bin: nothing to tell apart
        Assert.True(double.IsNaN(Divergence.Ks([0, 0], [1, 1])));
    }

    [Fact]
    public void Jensen_shannon_is_zero_for_equal_one_for_disjoint_and_matches_the_formula_between()
    {
        Assert.Equal(0, Divergence.JensenShannon([3, 1], [6, 2]), 12);
        Assert.Equal(1, Divergence.JensenShannon([1, 0], [0, 1]), 12);
        // p = (1, 0), q = (0.5, 0.5), m = (0.75, 0.25): JSD = ½·log2(1/0.75) + ½·(½·log2(0.5/0.75) + ½·log2(0.5/0.25)).
        var jsd = (0.5 * Math.Log2(1 / 0.75)) + (0.5 * ((0.5 * Math.Log2(0.5 / 0.75)) + (0.5 * Math.Log2(0.5 / 0.25))));
        Assert.Equal(Math.Sqrt(jsd), Divergence.JensenShannon([4, 0], [1, 1]), 12);
    }

    [Fact]
    public void Binned_psi_agrees_with_the_categorical_one_and_bins_must_line_up()
    {
        Assert.Equal(Divergence.Psi(new Dictionary<string, long> { ["a"] = 50, ["b"] = 50 }, new Dictionary<string, long> { ["a"] = 80, ["b"] = 20 }),
            Divergence.Psi([50, 50], [80, 20]), 12);
        Assert.Throws<ArgumentException>(() => Divergence.Psi([1, 2], [1, 2, 3]));
    }
}

public sealed class FeatureSketchTests
{
    private static readonly double[] Edges = [0, 0.5, 1, 2];

    [Fact]
    public void Values_fall_in_their_bins_and_outliers_in_the_outer_ones()
    {
        var sketch = new FeatureSketch(Edges);
        foreach (var v in new[] { -1.0, 0, 0.49, 0.5, 1.5, 2, 9, double.NaN, double.PositiveInfinity })
            sketch.Add(v);
        Assert.Equal([3L, 1, 3], sketch.Counts); // -1, 0, 0.49 | 0.5 | 1.5, 2, 9
        Assert.Equal((1L, 2L, 2L), (sketch.Below, sketch.Above, sketch.Invalid));
        Assert.Equal(7, sketch.Count);
        Assert.Equal((-1.0, 9.0), (sketch.Min, sketch.Max));
        double[] values = [-1, 0, 0.49, 0.5, 1.5, 2, 9];
        Assert.Equal(values.Average(), sketch.Mean, 12);
        Assert.Equal(values.Select(v => Math.Pow(v - values.Average(), 2)).Average(), sketch.Variance, 12);
    }

    [Fact]
    public void Merging_adds_counts_exactly_in_any_order_and_agrees_with_one_sketch_of_everything()
    {
        var random = new Random(3);
        var parts = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, random.Next(0, 200)).Select(_ => (random.NextDouble() * 3) - 0.5).ToArray()).ToArray();
        FeatureSketch Of(IEnumerable<double> values)
        {
            var s = new FeatureSketch(Edges);
            foreach (var v in values)
                s.Add(v);
            return s;
        }
        var whole = Of(parts.SelectMany(p => p));
        var forward = new FeatureSketch(Edges);
        foreach (var p in parts)
            forward.Merge(Of(p));
        var backward = new FeatureSketch(Edges);
        foreach (var p in parts.Reverse())
            backward.Merge(Of(p));
        // (a + b) + c against a + (b + c).
        var ab = Of(parts[0]);
        ab.Merge(Of(parts[1]));
        ab.Merge(Of(parts[2]));
        var bc = Of(parts[1]);
        bc.Merge(Of(parts[2]));
        var a = Of(parts[0]);
        a.Merge(bc);
        foreach (var s in new[] { forward, backward })
        {
            Assert.Equal(whole.Counts, s.Counts);
            Assert.Equal(whole.Count, s.Count);
            Assert.Equal(whole.Mean, s.Mean, 10);
            Assert.Equal(whole.Variance, s.Variance, 10);
            Assert.Equal((whole.Min, whole.Max, whole.Below, whole.Above), (s.Min, s.Max, s.Below, s.Above));
        }
        Assert.Equal(ab.Counts, a.Counts);
        Assert.Equal(ab.Mean, a.Mean, 12);
    }

    [Fact]
    public void Bad_edges_and_mismatched_merges_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new FeatureSketch([1.0]));
        Assert.Throws<ArgumentException>(() => new FeatureSketch([0.0, 1, 1]));
        Assert.Throws<ArgumentException>(() => new FeatureSketch([0.0, double.NaN]));
        Assert.Throws<ArgumentException>(() => new FeatureSketch(Edges).Merge(new FeatureSketch([0.0, 1])));
    }
}
