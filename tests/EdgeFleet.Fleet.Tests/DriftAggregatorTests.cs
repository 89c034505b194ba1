using EdgeFleet.Fleet.Drift;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Tests;

public sealed class DriftAggregatorTests
{
    private static readonly double[] Edges = [0, 1, 2, 3];

    private static FeatureSketch Sketch(params double[] values)
    {
        var s = new FeatureSketch(Edges);
        foreach (var v in values)
            s.Add(v);
        return s;
    }

    [Fact]
    public void Segments_are_merged_scored_against_the_baseline_and_against_the_rest()
    {
        var baseline = new FeatureBaseline("rms", Edges, [10, 10, 10]);
        var windows = new List<DeviceWindow>
        {
            new("a1", "site-a", [Sketch(0.5, 1.5, 2.5)]),
            new("a2", "site-a", [Sketch(0.2, 1.2, 2.2)]),
            new("b1", "site-b", [Sketch(2.5, 2.6, 2.7)]),
        };
        var drift = DriftAggregator.Compute([baseline], windows);
        var all = drift.Single(d => d.Segment == DriftAggregator.AllSegments);
        Assert.Equal([2L, 2, 5], all.Merged.Counts);
        Assert.Equal(Divergence.Psi([10, 10, 10], [2, 2, 5]), all.Psi, 12);
        Assert.Equal(Divergence.Ks([10, 10, 10], [2, 2, 5]), all.Ks, 12);
        var a = drift.Single(d => d.Segment == "site-a");
        var b = drift.Single(d => d.Segment == "site-b");
        Assert.Equal([2L, 2, 2], a.Merged.Counts);
        Assert.Equal(0, a.Psi, 12);
        Assert.Equal(Divergence.Psi([2, 2, 2], [0, 0, 3]), b.PsiVsRest, 12);
        Assert.True(b.PsiVsRest > 0.25);
        // The order the devices' sketches came in does not matter.
        var reversed = DriftAggregator.Compute([baseline], [.. windows.AsEnumerable().Reverse()]);
        Assert.Equal(drift.Select(d => (d.Segment, d.Psi, d.PsiVsRest)), reversed.Select(d => (d.Segment, d.Psi, d.PsiVsRest)));
    }

    [Fact]
    public void A_device_with_the_wrong_number_of_features_is_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => DriftAggregator.Compute([new FeatureBaseline("x", Edges, [1, 1, 1])], [new DeviceWindow("d", "s", [])]));
        Assert.Contains("device d sent 0 feature sketches; the model has 1", ex.Message, StringComparison.Ordinal);
    }
}
