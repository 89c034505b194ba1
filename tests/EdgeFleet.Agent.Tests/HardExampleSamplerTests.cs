using EdgeFleet.Agent.Inference;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

public class HardExampleSamplerTests(DemoModelFixture demo) : IClassFixture<DemoModelFixture>
{
    [Fact]
    public void A_model_can_carry_its_own_threshold_in_its_metadata()
    {
        using var dir = new TempDir();
        var model = EdgeFleet.ModelTools.Onnx.OnnxModel.Load(demo.Path);
        model.Proto.MetadataProps.Add(new EdgeFleet.ModelTools.Onnx.Proto.StringStringEntryProto { Key = "edgefleet.hard_example_below", Value = "0.85" });
        model.Save(dir.File("with-threshold.onnx"));
        using (var withThreshold = LoadedModel.Load(Model, dir.File("with-threshold.onnx"), 1))
            Assert.Equal(0.85f, withThreshold.HardExampleBelow);
        using var plain = LoadedModel.Load(Model, demo.Path, 1);
        Assert.Null(plain.HardExampleBelow);
    }

    private static readonly ModelRef Model = new() { Name = "vibration", Version = "4" };
    private static readonly float[] Input = [0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f];
    private static readonly long[] Shape = [1, 8];

    [Fact]
    public void Only_results_below_the_threshold_are_kept_and_they_carry_their_input()
    {
        var sampler = new HardExampleSampler(1 << 20, new ManualClock(new DateTimeOffset(2026, 11, 30, 10, 0, 0, TimeSpan.Zero)));
        Assert.Null(sampler.Offer(Model, "normal", 0.9f, 0.6f, Input, Shape));
        Assert.Null(sampler.Offer(Model, "normal", 0.6f, 0.6f, Input, Shape));
        var record = sampler.Offer(Model, "imbalance", 0.41f, 0.6f, Input, Shape)!;
        Assert.Equal(TelemetryKind.HardExample, record.Kind);
        Assert.Equal(Input, record.HardExample!.Input);
        Assert.Equal(0.6f, record.HardExample.Threshold);
        Assert.Null(record.Validate(0));
        Assert.Null(new HardExampleSampler(0, TimeProvider.System).Offer(Model, "x", 0.1f, 0.6f, Input, Shape));
    }

    [Fact]
    public void The_hourly_budget_holds_and_what_it_skipped_is_counted_on_the_next_one_sent()
    {
        var clock = new ManualClock(new DateTimeOffset(2026, 11, 30, 10, 0, 0, TimeSpan.Zero));
        var each = HardExampleSampler.EstimateBytes(Input.Length, Model, "bearing-wear");
        var sampler = new HardExampleSampler(each * 3, clock);
        var sent = Enumerable.Range(0, 10).Select(_ => sampler.Offer(Model, "bearing-wear", 0.3f, 0.6f, Input, Shape)).Count(r => r is not null);
        Assert.Equal(3, sent);
        Assert.Equal(7, sampler.Skipped);
        clock.Advance(TimeSpan.FromMinutes(61));
        var next = sampler.Offer(Model, "bearing-wear", 0.3f, 0.6f, Input, Shape)!;
        Assert.Equal(7, next.HardExample!.Skipped);
        Assert.Equal(0, sampler.Skipped);
        // The estimate bounds the real JSON size.
        Assert.True(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(next, WireJsonContext.Default.TelemetryRecord).Length <= each + 64);
    }

    [Fact]
    public void Malformed_hard_examples_are_refused_on_the_wire()
    {
        var good = new TelemetryRecord
        {
            Ts = DateTimeOffset.UnixEpoch,
            Kind = TelemetryKind.HardExample,
            HardExample = new HardExample { Model = "m", Version = "1", Label = "a", Confidence = 0.2f, Threshold = 0.5f, Shape = [1, 2], Input = [1, 2] },
        };
        Assert.Null(good.Validate(0));
        Assert.Contains("product", (good with { HardExample = good.HardExample! with { Shape = [1, 3] } }).Validate(0));
        Assert.Contains("within [0, 1]", (good with { HardExample = good.HardExample! with { Confidence = 1.5f } }).Validate(0));
        Assert.Contains("needs hardExample", (good with { HardExample = null }).Validate(0));
    }
}
