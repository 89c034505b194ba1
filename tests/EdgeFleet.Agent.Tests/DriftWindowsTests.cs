using EdgeFleet.Agent.Inference;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

public sealed class DriftWindowsTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    private static readonly DriftSpec Spec = new()
    {
        WindowSeconds = 60,
        Features = [new DriftFeature("rms", "input:1", [0, 1, 2, 3]), new DriftFeature("confidence", "confidence", [0, 0.5, 0.9, 1])],
    };

    private static Classification Answer(string version, float confidence, DriftSpec? spec = null) =>
        new(new ModelRef { Name = "m", Version = version }, "normal", confidence, null, false) { Drift = spec ?? Spec };

    /// <summary>Values land in the spec's bins (outer values in the outer bins), per model version, and a window closes once, aligned.</summary>
    [Fact]
    public void Inputs_and_confidence_are_sketched_on_the_specs_edges_per_version_and_window()
    {
        var windows = new DriftWindows();
        windows.Record(Answer("1", 0.95f), [9f, 0.5f, 9f], T0.AddSeconds(5));
        windows.Record(Answer("1", 0.7f), [9f, 2.5f], T0.AddSeconds(10));
        windows.Record(Answer("1", 0.2f), [9f, 7f], T0.AddSeconds(20));   // above the last edge: last bin, counted above
        windows.Record(Answer("1", 0.6f), [9f], T0.AddSeconds(30));        // input too short: invalid, not binned
        windows.Record(Answer("2", 0.99f), [0f, -1f], T0.AddSeconds(30));  // another version, below the first edge
        windows.Record(Answer("3", 0.5f, new DriftSpec()), [0f, 1f], T0);  // no features: nothing
        Assert.Empty(windows.Close(T0.AddSeconds(59)));

        var closed = windows.Close(T0.AddSeconds(60)).OrderBy(w => w.Version).ToList();
        Assert.Equal(["1", "2"], closed.Select(w => w.Version));
        var v1 = closed[0];
        Assert.Equal((T0, 60.0), (v1.From, v1.Seconds));
        var rms = v1.Features.Single(f => f.Name == "rms");
        Assert.Equal([1L, 0, 2], rms.Counts);
        Assert.Equal((3L, 1L, 1L), (rms.Count, rms.Above, rms.Invalid));
        Assert.Equal((0.5 + 2.5 + 7) / 3, rms.Mean, 9);
        Assert.Equal([1L, 2, 1], v1.Features.Single(f => f.Name == "confidence").Counts);
        Assert.Equal(1, closed[1].Features[0].Below);
        foreach (var w in closed)
            Assert.Null(new TelemetryRecord { Ts = T0, Kind = TelemetryKind.Sketch, Sketch = w }.Validate(0));

        // The next window starts afresh and closes by itself.
        windows.Record(Answer("1", 0.95f), [0f, 1.5f], T0.AddSeconds(61));
        Assert.Empty(windows.Close(T0.AddSeconds(100)));
        var next = Assert.Single(windows.Close(T0.AddSeconds(100), force: true));
        Assert.Equal(T0.AddSeconds(60), next.From);
        Assert.Equal([0L, 1, 0], next.Features[0].Counts);
    }

    /// <summary>Class probabilities (<c>output:N</c>) are sketched from the answer's probabilities; an answer without them counts as invalid.</summary>
    [Fact]
    public void Class_probabilities_are_sketched_per_class()
    {
        var spec = new DriftSpec
        {
            WindowSeconds = 60,
            Features = [new DriftFeature("p_normal", "output:0", [0, 0.5, 1]), new DriftFeature("p_imbalance", "output:1", [0, 0.5, 1]), new DriftFeature("p_far", "output:7", [0, 1])],
        };
        Assert.Null(spec.Validate());
        Assert.Equal(new DriftSource(null, 1), DriftSource.Parse("output:1"));
        Assert.Null(DriftSource.Parse("output:x"));
        Assert.False(DriftSource.Parse("output:0")!.Value.Confidence);
        var windows = new DriftWindows();
        windows.Record(Answer("1", 0.9f, spec) with { Probabilities = [0.9f, 0.1f] }, [1f], T0);
        windows.Record(Answer("1", 0.7f, spec) with { Probabilities = [0.3f, 0.7f] }, [1f], T0.AddSeconds(1));
        windows.Record(Answer("1", 0.6f, spec), [1f], T0.AddSeconds(2)); // no probabilities: invalid
        var w = Assert.Single(windows.Close(T0.AddSeconds(60)));
        var normal = w.Features.Single(f => f.Name == "p_normal");
        Assert.Equal([1L, 1], normal.Counts);
        Assert.Equal((2L, 1L), (normal.Count, normal.Invalid));
        Assert.Equal((0.9 + 0.3) / 2, normal.Mean, 6);
        Assert.Equal([1L, 1], w.Features.Single(f => f.Name == "p_imbalance").Counts);
        Assert.Equal(3, w.Features.Single(f => f.Name == "p_far").Invalid); // no class 7
    }
}
