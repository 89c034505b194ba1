using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inference;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.Shared.Wire;
using Google.Protobuf;

namespace EdgeFleet.Agent.Tests;

/// <summary>A clock whose stopwatch the test drives: "slow" runs take <see cref="Step"/> each.</summary>
public sealed class SteppingClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;
    private long _ticks;

    public TimeSpan Step { get; set; }

    public override DateTimeOffset GetUtcNow() => _now;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _ticks += Step.Ticks; // a run reads it at its start and end: it takes Step

    /// <summary>Time passes: the wall clock and the stopwatch move together.</summary>
    public void Advance(TimeSpan by)
    {
        _now += by;
        _ticks += by.Ticks;
    }
}

public sealed class FallbackTests(DemoModelFixture good) : IClassFixture<DemoModelFixture>, IDisposable
{
    private static readonly ModelRef V1 = new() { Name = "vibration", Version = "1" };
    private static readonly ModelRef V2 = new() { Name = "vibration", Version = "2" };
    private readonly TempDir _dir = new();
    private readonly float[] _features = [0.8f, 1.3f, 1.6f, 1.5f, 0.6f, 0.001f, 0.001f, 0.05f];

    public void Dispose() => _dir.Dispose();

    /// <summary>A model that loads like a classifier (features[batch,8] → probabilities[batch,3]) but fails every run.</summary>
    private string BrokenModel()
    {
        var builder = new OnnxModelBuilder("broken")
            .Input("features", null, 8)
            .Output("probabilities", null, 3)
            .Initializer("w", new float[24], 8, 3)
            .Node("MatMul", ["features", "w"], ["logits"])
            .Node("Reshape", ["logits", "bad_shape"], ["probabilities"])
            .Metadata("edgefleet.labels", "normal,imbalance,bearing-wear");
        var model = builder.Build();
        model.Graph.Initializer.Add(Tensors.Make<long>("bad_shape", EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Int64, [2, -1], 2));
        var path = _dir.File("broken.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        return path;
    }

    private (ModelHost Host, SteppingClock Clock) Host(FallbackConfig config)
    {
        var clock = new SteppingClock(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero));
        return (new ModelHost(new AgentRuntime("dev", "x86-64-generic", clock), config), clock);
    }

    /// <summary>
    /// A shadow model answers the same features as the served one without being served; its window counts the
    /// agreement, each one's labels and latency. A shadow that fails is counted as its own error and leaves the
    /// served model's failure count (probation, breaker) alone; the window it sends passes the wire's validation.
    /// </summary>
    [Fact]
    public void A_shadow_model_is_compared_with_the_served_one_and_its_failures_are_its_own()
    {
        var (host, clock) = Host(new FallbackConfig());
        using var _ = host;
        host.Activate(LoadedModel.Load(V1, good.Path, 1));
        Assert.Null(host.ClassifyShadow(_features));
        host.SetShadow(LoadedModel.Load(V2, good.Path, 1));
        Assert.Equal("shadow", host.Status().Single(s => s.Version == "2").Role);

        var windows = new ShadowWindows(TimeSpan.FromSeconds(60));
        clock.Step = TimeSpan.FromMilliseconds(2);
        for (var i = 0; i < 10; i++)
        {
            var served = host.Classify(_features)!.Value;
            var shadow = host.ClassifyShadow(_features)!.Value;
            Assert.Equal(V2, shadow.Result.Model);
            Assert.Equal(served.Label, shadow.Result.Label); // the same model file: the same answer
            windows.Record(served, 1000, shadow.Result, (long)shadow.Elapsed.TotalMicroseconds, clock.GetUtcNow());
        }
        host.SetShadow(LoadedModel.Load(V2 with { Version = "3" }, BrokenModel(), 1));
        for (var i = 0; i < 4; i++)
        {
            Assert.Throws<InferenceException>(() => host.ClassifyShadow(_features));
            windows.RecordError(new ModelRef { Name = "vibration", Version = "3" }, V1, clock.GetUtcNow());
        }
        Assert.Equal(0, host.ConsecutiveFailures);
        Assert.Equal(BreakerState.Closed, host.Breaker);

        Assert.Empty(windows.Close(clock.GetUtcNow()));
        clock.Advance(TimeSpan.FromSeconds(61));
        var closed = windows.Close(clock.GetUtcNow());
        var v2 = closed.Single(w => w.Version == "2");
        Assert.Equal(("1", 10L, 10L, 0L), (v2.ServedVersion, v2.Count, v2.Agreements, v2.Errors));
        Assert.Equal(10, v2.Labels.Values.Sum());
        Assert.Equal(v2.Labels, v2.ServedLabels);
        Assert.InRange(v2.P95Micros, 1900, 2100); // the stepping clock: each run takes 2 ms
        Assert.InRange(v2.ServedP95Micros, 950, 1050);
        var v3 = closed.Single(w => w.Version == "3");
        Assert.Equal((0L, 4L), (v3.Count, v3.Errors));
        foreach (var w in closed)
            Assert.Null(new TelemetryRecord { Ts = clock.GetUtcNow(), Kind = TelemetryKind.Shadow, Shadow = w }.Validate(0));
        host.SetShadow(null);
        Assert.Null(host.ClassifyShadow(_features));
        Assert.DoesNotContain(host.Status(), s => s.Role == "shadow");
    }

    [Fact]
    public void A_failing_model_is_answered_by_the_one_it_replaced_and_the_breaker_opens_then_tries_again()
    {
        var (host, clock) = Host(new FallbackConfig { FailureThreshold = 3, OpenSeconds = 30 });
        using var _ = host;
        host.Activate(LoadedModel.Load(V1, good.Path, 1));
        host.Activate(LoadedModel.Load(V2, BrokenModel(), 1));
        Assert.Equal(V1, host.FallbackModel);

        var first = host.Classify(_features)!.Value;
        Assert.True(first.FellBack);
        Assert.Equal(V1, first.Model);
        Assert.Equal("imbalance", first.Label);
        Assert.Equal(BreakerState.Closed, host.Breaker);
        host.Classify(_features);
        host.Classify(_features);
        Assert.Equal(BreakerState.Open, host.Breaker);
        var opened = Assert.Single(host.TakeEvents());
        Assert.Equal((V2, V1, BreakerState.Open), (opened.Active, opened.Fallback, opened.State));
        Assert.Contains("inference failed", opened.Reason, StringComparison.Ordinal);
        Assert.Equal(3, host.ConsecutiveFailures);

        // Open: the active model is not even tried.
        Assert.True(host.Classify(_features)!.Value.FellBack);
        Assert.Equal(3, host.ConsecutiveFailures);
        // After the open period one trial request goes to it; it fails again and the breaker reopens.
        clock.Advance(TimeSpan.FromSeconds(31));
        Assert.True(host.Classify(_features)!.Value.FellBack);
        Assert.Equal(4, host.ConsecutiveFailures);
        Assert.Equal(BreakerState.Open, host.Breaker);
        Assert.DoesNotContain(host.TakeEvents(), e => e.State == BreakerState.Closed);
    }

    [Fact]
    public void Runs_over_the_latency_budget_count_as_failures_and_a_fast_trial_closes_the_breaker()
    {
        var (host, clock) = Host(new FallbackConfig { FailureThreshold = 2, OpenSeconds = 10, LatencyBudgetMs = 50 });
        using var _ = host;
        host.Activate(LoadedModel.Load(V1, good.Path, 1));
        host.Activate(LoadedModel.Load(V2, good.Path, 1));
        clock.Step = TimeSpan.FromMilliseconds(80);
        var slow = host.Classify(_features)!.Value;
        Assert.False(slow.FellBack); // a slow answer is still an answer
        host.Classify(_features);
        Assert.Equal(BreakerState.Open, host.Breaker);
        Assert.Contains("over the 50.0 ms budget", host.TakeEvents().Single().Reason, StringComparison.Ordinal);
        Assert.Equal(V1, host.Classify(_features)!.Value.Model);

        clock.Step = TimeSpan.FromMilliseconds(5);
        clock.Advance(TimeSpan.FromSeconds(11));
        var trial = host.Classify(_features)!.Value;
        Assert.Equal((V2, false), (trial.Model, trial.FellBack));
        Assert.Equal(BreakerState.Closed, host.Breaker);
        Assert.Equal(BreakerState.Closed, host.TakeEvents().Single().State);
    }

    [Fact]
    public void Without_a_fallback_a_failure_is_the_callers()
    {
        var (host, _) = Host(new FallbackConfig { Enabled = false });
        using var h = host;
        host.Activate(LoadedModel.Load(V1, good.Path, 1));
        host.Activate(LoadedModel.Load(V2, BrokenModel(), 1));
        Assert.Null(host.FallbackModel);
        Assert.Equal(InferenceError.RunFailed, Assert.Throws<InferenceException>(() => host.Classify(_features)).Code);
        Assert.Empty(host.TakeEvents());
    }

    [Fact]
    public void Rolling_back_to_the_fallbacks_version_leaves_one_copy_loaded()
    {
        var (host, _) = Host(new FallbackConfig());
        using var h = host;
        host.Activate(LoadedModel.Load(V1, good.Path, 1));
        host.Activate(LoadedModel.Load(V2, BrokenModel(), 1));
        host.Unload();
        Assert.Equal(V1, host.FallbackModel);
        host.Activate(LoadedModel.Load(V1, good.Path, 1));
        Assert.Null(host.FallbackModel);
        Assert.False(host.Classify(_features)!.Value.FellBack);
    }
}
