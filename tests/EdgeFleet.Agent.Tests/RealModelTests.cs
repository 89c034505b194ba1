using System.Diagnostics;
using EdgeFleet.Agent.Inference;
using EdgeFleet.ModelTools.Onnx;

namespace EdgeFleet.Agent.Tests;

/// <summary>PaddleOCR's classifier and detector (fetched by scripts/fetch-test-models.sh) through the agent's inference path.</summary>
public class RealModelTests
{
    private static readonly Lazy<string> Cache = new(() =>
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "EdgeFleet.slnx")))
            root = Path.GetDirectoryName(root)!;
        using var process = Process.Start(new ProcessStartInfo(Path.Combine(root, "scripts", "fetch-test-models.sh")) { RedirectStandardOutput = true })!;
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(0, process.ExitCode);
        return output.Trim().Split('\n')[^1];
    });

    internal static string Classifier => Path.Combine(Cache.Value, "ch_ppocr_mobile_v2.0_cls_infer.onnx");

    internal static string Detector => Path.Combine(Cache.Value, "ch_PP-OCRv4_det_infer.onnx");

    private static JsonTensor Zeros(params long[] shape) => new() { Shape = shape, Data = new double[shape.Aggregate(1L, (a, b) => a * b)] };

    [Fact]
    public void The_models_run_with_their_symbolic_dimensions_bound_per_request()
    {
        using var cls = ModelSession.Load(Classifier);
        Assert.Equal("[p2o.DynamicDimension.0, 3, p2o.DynamicDimension.1, p2o.DynamicDimension.2]", cls.Inputs[0].ShapeText);
        var result = cls.Run(new Dictionary<string, JsonTensor> { ["x"] = Zeros(2, 3, 48, 192) });
        Assert.Equal([2L, 2L], result.Outputs.Values.Single().Shape);

        using var det = ModelSession.Load(Detector);
        Assert.Equal([1L, 1L, 64L, 96L], det.Run(new Dictionary<string, JsonTensor> { ["x"] = Zeros(1, 3, 64, 96) }).Outputs.Values.Single().Shape);
    }

    [Theory]
    [InlineData(new long[] { 1, 4, 48, 192 }, null, "the model expects [p2o.DynamicDimension.0, 3,")]
    [InlineData(new long[] { 1, 3, 48 }, null, "has rank 3")]
    [InlineData(new long[] { 1, 3, 48, 192 }, "int64", "is int64")]
    public void Wrong_shapes_and_types_are_refused_before_the_runtime_sees_them(long[] shape, string? type, string reason)
    {
        using var cls = ModelSession.Load(Classifier);
        var tensor = Zeros(shape) with { Type = type };
        var e = Assert.Throws<InferenceException>(() => cls.Run(new Dictionary<string, JsonTensor> { ["x"] = tensor }));
        Assert.Equal(InferenceError.InputMismatch, e.Code);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
        Assert.Contains("the model has no input 'image'", Assert.Throws<InferenceException>(() => cls.Run(new Dictionary<string, JsonTensor> { ["image"] = Zeros(1, 3, 48, 192) })).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_truncated_model_and_one_with_an_unsupported_op_fail_to_load_with_the_runtimes_reason()
    {
        using var dir = new TempDir();
        var truncated = dir.File("truncated.onnx");
        var bytes = File.ReadAllBytes(Detector);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 3)]);
        var e = Assert.Throws<InferenceException>(() => ModelSession.Load(truncated));
        Assert.Equal(InferenceError.ModelLoadFailed, e.Code);
        Assert.Contains("truncated.onnx", e.Message, StringComparison.Ordinal);

        var model = OnnxModel.Load(Classifier);
        model.Graph.Node.First(n => n.OpType == "Softmax").OpType = "SoftmaxOfTheFuture";
        var unsupported = dir.File("unsupported.onnx");
        model.Save(unsupported);
        var op = Assert.Throws<InferenceException>(() => ModelSession.Load(unsupported));
        Assert.Equal(InferenceError.ModelLoadFailed, op.Code);
        Assert.Contains("SoftmaxOfTheFuture", op.Message, StringComparison.Ordinal);
    }
}
