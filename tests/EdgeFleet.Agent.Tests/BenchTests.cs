using System.Text.Json.Nodes;
using EdgeFleet.Agent.Cli;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Agent.Tests;

public class BenchTests(DemoModelFixture model) : IClassFixture<DemoModelFixture>
{
    [Fact]
    public void The_bound_runner_computes_what_the_general_path_computes()
    {
        using var session = ModelSession.Load(model.Path);
        using var runner = new BoundRunner(session, new Dictionary<string, long[]> { ["features"] = [1, 8] });
        double[] features = [0.8, 1.3, 1.6, 1.5, 0.6, 0.001, 0.001, 0.05];
        for (var i = 0; i < 8; i++)
            runner.Inputs[0][i] = (float)features[i];
        runner.Run();
        var general = session.Run(new Dictionary<string, JsonTensor> { ["features"] = new() { Shape = [1, 8], Data = features } });
        Assert.Equal(general.Outputs["probabilities"].Data, runner.Outputs[0].Select(v => (double)v));
    }

    [Fact]
    public void The_bound_runner_needs_concrete_shapes_that_fit()
    {
        using var session = ModelSession.Load(model.Path);
        Assert.Contains("symbolic dimensions", Assert.Throws<InferenceException>(() => new BoundRunner(session, new Dictionary<string, long[]>())).Message);
        Assert.Contains("the model expects", Assert.Throws<InferenceException>(() => new BoundRunner(session, new Dictionary<string, long[]> { ["features"] = [1, 9] })).Message);
    }

    [Fact]
    public void Bench_reports_both_paths_and_their_ratio()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = BenchCommand.Run(CommandLine.Parse(["bench", "--model", model.Path, "--runs", "50", "--warmup", "5", "--json"], new HashSet<string> { "json" }), stdout, stderr);
        Assert.True(code == 0, stderr.ToString());
        var report = JsonNode.Parse(stdout.ToString())!;
        Assert.Equal(50, report["runs"]!.GetValue<int>());
        Assert.Equal(new long[] { 1, 8 }, report["inputShapes"]!["features"]!.AsArray().Select(d => d!.GetValue<long>()));
        var ratio = report["ratioP50"]!.GetValue<double>();
        Assert.Equal(report["agent"]!["p50Ms"]!.GetValue<double>() / report["raw"]!["p50Ms"]!.GetValue<double>(), ratio, 9);
        Assert.True(ratio is > 0.2 and < 5, $"ratio {ratio}");

        var missing = new StringWriter();
        Assert.Equal(1, BenchCommand.Run(CommandLine.Parse(["bench", "--model", model.Path + ".absent"], new HashSet<string>()), new StringWriter(), missing));
        Assert.Contains("does not exist", missing.ToString(), StringComparison.Ordinal);
    }
}

public class SteadyStateAllocationTests(DemoModelFixture model) : IClassFixture<DemoModelFixture>
{
    [Fact]
    public void The_bound_runner_allocates_nothing_per_inference()
    {
        using var session = ModelSession.Load(model.Path);
        using var runner = new BoundRunner(session, new Dictionary<string, long[]> { ["features"] = [1, 8] });
        for (var i = 0; i < 20; i++)
            runner.Run();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
            runner.Run();
        var perRun = (GC.GetAllocatedBytesForCurrentThread() - before) / 1000.0;
        Assert.True(perRun < 1, $"{perRun:F1} bytes allocated per inference");
    }

    [Fact]
    public void The_classifier_allocates_nothing_per_inference()
    {
        using var session = ModelSession.Load(model.Path);
        using var classifier = new Classifier(session, ["normal", "imbalance", "bearing-wear"]);
        float[] features = [0.8f, 1.3f, 1.6f, 1.5f, 0.6f, 0.001f, 0.001f, 0.05f];
        for (var i = 0; i < 20; i++)
            classifier.Classify(features);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
            classifier.Classify(features);
        var perRun = (GC.GetAllocatedBytesForCurrentThread() - before) / 1000.0;
        Assert.True(perRun < 1, $"{perRun:F1} bytes allocated per classification");
    }

    [Fact]
    public void The_model_host_allocates_nothing_per_classification_of_the_sensor_loop()
    {
        using var host = new ModelHost(new AgentRuntime("dev", "x86-64-generic", TimeProvider.System));
        host.Activate(LoadedModel.Load(new EdgeFleet.Shared.Wire.ModelRef { Name = "m", Version = "1" }, model.Path, 1));
        float[] features = [0.8f, 1.3f, 1.6f, 1.5f, 0.6f, 0.001f, 0.001f, 0.05f];
        for (var i = 0; i < 20; i++)
            host.Classify(features);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
            host.Classify(features);
        var perRun = (GC.GetAllocatedBytesForCurrentThread() - before) / 1000.0;
        Assert.True(perRun < 1, $"{perRun:F1} bytes allocated per classification through the host");
    }
}
