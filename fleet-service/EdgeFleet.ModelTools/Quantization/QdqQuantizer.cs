using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Static INT8 quantization in the QDQ format: every activation tensor at the boundary of a quantized node gets
/// a QuantizeLinear → DequantizeLinear pair with parameters from calibration, and weights are stored as
/// per-channel symmetric int8 behind a DequantizeLinear (biases stay float; the runtime folds them). ONNX Runtime
/// recognises DQ → op → Q groups and runs them as QLinearConv, QLinearMatMul, QGemm, QLinearAdd, … while the
/// file stays a standard ONNX model that any runtime can execute in float.
/// </summary>
public static class QdqQuantizer
{
    /// <summary>
    /// Ops with an int8 weight input (input 1). ConvTranspose is not among them: ONNX Runtime's CPU provider has
    /// no QDQ fusion for it, so Q/DQ around it would only add two passes over its (large, upsampled) output.
    /// </summary>
    private static readonly HashSet<string> WeightOps = ["Conv", "MatMul", "Gemm"];

    /// <summary>Ops that run on quantized inputs with their own output parameters.</summary>
    /// <summary>
    /// Ops that run on quantized inputs with their own output parameters. HardSwish has no int8 kernel in ONNX
    /// Runtime; it is rewritten into an Add and a Mul that have (see <see cref="QdqRewriter.DecomposeHardSwish"/>).
    /// </summary>
    private static readonly HashSet<string> ActivationOps = ["Add", "Mul", "GlobalAveragePool", "AveragePool", "Concat", "Sigmoid", "LeakyRelu", "HardSwish"];

    /// <summary>
    /// Ops that move or pick values without changing them: their output keeps the input's parameters, so ONNX
    /// Runtime runs them on int8. MaxPool is not one: its output is calibrated on its own, so that when that range
    /// differs from its input's ONNX Runtime keeps it float, as on the classifier, where its uint8 MaxPool is
    /// eleven times slower (190 µs against 17 µs on a 200×2×96 tensor). (Nearest Resize is slow on uint8 too,
    /// 5.1 ms against 1.4 ms on the detector, but its output range always equals its input's, and ONNX Runtime
    /// then runs it on uint8 whatever the graph says.)
    /// </summary>
    private static readonly HashSet<string> PassThroughOps = ["Resize", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"];

    /// <summary>Activations that a quantized output range makes redundant (ONNX Runtime drops them).</summary>
    private static readonly HashSet<string> RemovableActivations = ["Relu", "Clip"];

    public static IReadOnlySet<string> QuantizableOpTypes { get; } = WeightOps.Concat(ActivationOps).Concat(PassThroughOps).ToHashSet();

    public static (OnnxModel Model, QuantizationReport Report) Quantize(OnnxModel fp32, SampleSet calibration, QuantizationOptions options)
    {
        var inputBytes = fp32.ToBytes().LongLength;
        var prepared = ModelPreprocessor.Prepare(fp32);
        if (options.EqualizeChannels)
            ChannelEqualizer.Equalize(prepared, calibration, options);
        DepthwisePadding.Pad(prepared, options.DepthwiseChannelMultiple);
        var ranges = Calibrate(prepared, calibration, options);
        var (model, nodes, excluded) = Apply(prepared, ranges, options);
        var report = new QuantizationReport("static", nodes.Count,
            nodes.GroupBy(n => n.OpType).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            excluded, Math.Min(calibration.Count, options.MaxSamples ?? int.MaxValue), ranges.Count, inputBytes, model.ToBytes().LongLength)
        {
            KeptFloat = QuantizationReport.SubgraphsKeptFloat(model),
        };
        ServingCheck.Verify(model, calibration.Read(0), "the quantized model");
        return (model, report);
    }

    /// <summary>The ranges of every tensor that could be quantized (exclusions are applied later, by <see cref="Apply"/>).</summary>
    public static Dictionary<string, TensorRange> Calibrate(OnnxModel prepared, SampleSet calibration, QuantizationOptions options)
    {
        if (!prepared.RealInputs().Any(i => i.Type?.TensorType?.ElemType == (int)DataType.Float))
            throw new QuantizationException("the model has no float inputs, so there are no activations to calibrate; use dynamic quantization (--mode dynamic)");
        var all = options with { ExcludeNodes = new HashSet<string>(), ExcludeOpTypes = new HashSet<string>() };
        var plan = QdqPlan.Build(prepared, all, WeightOps, ActivationOps, PassThroughOps, RemovableActivations);
        if (plan.Nodes.Count == 0)
            throw new QuantizationException($"no node of the model can be quantized (quantizable op types: {string.Join(", ", QuantizableOpTypes.Order())})");
        return Calibrator.Collect(prepared, plan.CalibrationCandidates, calibration, options);
    }

    /// <summary>Quantizes a prepared model (see <see cref="ModelPreprocessor"/>) with calibrated ranges.</summary>
    public static (OnnxModel Model, IReadOnlyList<NodeProto> Nodes, int Excluded) Apply(OnnxModel prepared, Dictionary<string, TensorRange> ranges, QuantizationOptions options)
    {
        var model = prepared.Clone();
        var plan = QdqPlan.Build(model, options, WeightOps, ActivationOps, PassThroughOps, RemovableActivations);
        if (plan.Nodes.Count == 0)
            throw new QuantizationException("every quantizable node is excluded");
        var parameters = plan.Parameters(ranges, options.Activations);
        var rewriter = new QdqRewriter(model, options);
        foreach (var (tensor, p) in parameters)
            rewriter.QuantizeActivation(tensor, p);
        foreach (var node in plan.Nodes)
        {
            if (WeightOps.Contains(node.OpType))
                rewriter.QuantizeWeight(node);
            else if (node.OpType is "Add" or "Mul")
                rewriter.QuantizeConstantInputs(node);
            else if (node.OpType == "HardSwish" && parameters.ContainsKey(node.Output[0]))
                rewriter.DecomposeHardSwish(node);
        }
        rewriter.ShareIdenticalInitializers();
        rewriter.RemoveUnusedInitializers();
        rewriter.SortTopologically();
        rewriter.CompactGraph();
        model.Proto.ProducerName = "edgefleet-modeltools";
        model.Proto.MetadataProps.Add(new StringStringEntryProto { Key = "edgefleet.quantization", Value = $"static-qdq;activations={options.Activations.ToString().ToLowerInvariant()};method={options.Method.ToString().ToLowerInvariant()};per-channel={options.PerChannel.ToString().ToLowerInvariant()}" });
        return (model, plan.Nodes, plan.Excluded);
    }
}

public sealed class QuantizationException(string message) : Exception(message);
