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
            runner.InputFloats(0)[i] = (float)features[i];
        runner.Run();
        var general = session.Run(new Dictionary<string, JsonTensor> { ["features"] = new() { Shape = [1, 8], Data = features } });
        Assert.Equal(general.Outputs["probabilities"].Data, runner.OutputFloats(0).ToArray().Select(v => (double)v));
    }

    private static EdgeFleet.ModelTools.Onnx.Proto.TensorShapeProto.Types.Dimension Dimension(long value) => new() { DimValue = value };

    [Fact]
    public void Bench_runs_a_model_whose_input_is_int64_token_ids()
    {
        // An embedding lookup on int64 ids. Before, bench refused it ("the bound runner takes float32 inputs").
        var path = Path.Combine(Path.GetTempPath(), $"edgefleet-ids-{Guid.NewGuid():N}.onnx");
        EdgeFleet.Tests.Common.TokenIdsModel.Write(path);
        try
        {
            using (var session = ModelSession.Load(path))
            using (var runner = new BoundRunner(session, new Dictionary<string, long[]>()))
            {
                new long[] { 2, 0, 1, 2 }.CopyTo(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(runner.InputBytes(0)));
                runner.Run();
                Assert.Equal(EdgeFleet.Tests.Common.TokenIdsModel.Expected, runner.OutputFloats(0).ToArray());
                Assert.Throws<InferenceException>(() => runner.InputFloats(0).Length);
            }
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var code = BenchCommand.Run(CommandLine.Parse(["bench", "--model", path, "--runs", "20", "--warmup", "2", "--json"], new HashSet<string> { "json" }), stdout, stderr);
            Assert.True(code == 0, stderr.ToString());
            Assert.Equal(new long[] { 1, 4 }, JsonNode.Parse(stdout.ToString())!["inputShapes"]!["ids"]!.AsArray().Select(d => d!.GetValue<long>()));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Int64, "int64", new double[] { -3, 0, 9007199254740992 }, "1.5")]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Int32, "int32", new double[] { -2147483648, 7, 2147483647 }, "2147483648")]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Uint8, "uint8", new double[] { 0, 128, 255 }, "-1")]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Int8, "int8", new double[] { -128, 0, 127 }, "128")]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Bool, "bool", new double[] { 1, 0, 1 }, "2")]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Float16, "float16", new double[] { 0.5, -2, 65504 }, "70000")]
    [InlineData(EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType.Double, "float64", new double[] { 0.1, -1e300, 3 }, "NaN")]
    public void Json_inference_takes_every_numeric_input_type_and_refuses_a_value_the_type_cannot_hold(
        EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType type, string name, double[] values, string bad)
    {
        // Identity: the values come back as the type holds them, so the write and the read are both checked.
        var onnx = new EdgeFleet.ModelTools.Onnx.OnnxModelBuilder("identity", opset: 14).Node("Identity", ["x"], ["y"]).Build();
        EdgeFleet.ModelTools.Onnx.Proto.ValueInfoProto Info(string tensor) => new()
        {
            Name = tensor,
            Type = new() { TensorType = new() { ElemType = (int)type, Shape = new() { Dim = { Dimension(1), Dimension(3) } } } },
        };
        onnx.Graph.Input.Add(Info("x"));
        onnx.Graph.Output.Add(Info("y"));
        var path = Path.Combine(Path.GetTempPath(), $"edgefleet-{name}-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(onnx));
        try
        {
            using var session = ModelSession.Load(path);
            var result = session.Run(new Dictionary<string, JsonTensor> { ["x"] = new() { Shape = [1, 3], Type = name, Data = values } });
            Assert.Equal(name, result.Outputs["y"].Type);
            Assert.Equal(values, result.Outputs["y"].Data);
            var value = double.Parse(bad, System.Globalization.CultureInfo.InvariantCulture);
            var refused = Assert.Throws<InferenceException>(() =>
                session.Run(new Dictionary<string, JsonTensor> { ["x"] = new() { Shape = [1, 3], Type = name, Data = [values[0], value, values[2]] } }));
            Assert.Contains("element 1", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
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
    /// <summary>
    /// Bytes allocated on this thread per call, in the quietest of five rounds of 1,000 calls after a warm-up. An
    /// allocation the call makes shows in every round; a one-off of the runtime's (a tiered recompilation under a
    /// loaded machine's timing) shows in one round only, and is not the call's.
    /// </summary>
    private static double SteadyAllocation(Action call)
    {
        for (var i = 0; i < 20; i++)
            call();
        var quietest = double.MaxValue;
        for (var round = 0; round < 5; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1000; i++)
                call();
            quietest = Math.Min(quietest, (GC.GetAllocatedBytesForCurrentThread() - before) / 1000.0);
        }
        return quietest;
    }

    [Fact]
    public void The_bound_runner_allocates_nothing_per_inference()
    {
        using var session = ModelSession.Load(model.Path);
        using var runner = new BoundRunner(session, new Dictionary<string, long[]> { ["features"] = [1, 8] });
        var perRun = SteadyAllocation(runner.Run);
        Assert.True(perRun < 1, $"{perRun:F1} bytes allocated per inference");
    }

    [Fact]
    public void The_classifier_allocates_nothing_per_inference()
    {
        using var session = ModelSession.Load(model.Path);
        using var classifier = new Classifier(session, ["normal", "imbalance", "bearing-wear"]);
        float[] features = [0.8f, 1.3f, 1.6f, 1.5f, 0.6f, 0.001f, 0.001f, 0.05f];
        var perRun = SteadyAllocation(() => classifier.Classify(features));
        Assert.True(perRun < 1, $"{perRun:F1} bytes allocated per classification");
    }

    [Fact]
    public void The_model_host_allocates_nothing_per_classification_of_the_sensor_loop()
    {
        using var host = new ModelHost(new AgentRuntime("dev", "x86-64-generic", TimeProvider.System));
        host.Activate(LoadedModel.Load(new EdgeFleet.Shared.Wire.ModelRef { Name = "m", Version = "1" }, model.Path, 1));
        float[] features = [0.8f, 1.3f, 1.6f, 1.5f, 0.6f, 0.001f, 0.001f, 0.05f];
        var perRun = SteadyAllocation(() => host.Classify(features));
        Assert.True(perRun < 1, $"{perRun:F1} bytes allocated per classification through the host");
    }
}
