using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Which nodes are quantized and which activation tensors get Q/DQ pairs. A tensor is quantized when a
/// quantized node reads or writes it; the output of a quantized node whose only reader is a ReLU or Clip is
/// skipped (the activation's output is quantized instead, and ONNX Runtime removes the activation); pass-through
/// ops (resize, reshapes) reuse their input's parameters so they run on int8 directly, when a
/// quantized node reads what they produce.
/// Graph outputs stay float. A convolution with a spatial kernel over a number of input channels that is not a
/// multiple of 4, typically the first layer reading the image, stays float: ONNX Runtime's symmetric int8
/// kernels need channels in fours, and the others run it slower than float (7.2 ms against 2.9 ms at 640×640 on
/// PaddleOCR's detector, one thread).
/// </summary>
internal sealed class QdqPlan
{
    private readonly Dictionary<string, string> _sharedWith = [];

    public List<NodeProto> Nodes { get; } = [];

    public HashSet<string> CalibratedTensors { get; } = [];

    /// <summary>Every tensor that some choice of exclusions could quantize with its own parameters.</summary>
    public HashSet<string> CalibrationCandidates { get; } = [];

    public int Excluded { get; private set; }

    public static QdqPlan Build(OnnxModel model, QuantizationOptions options, HashSet<string> weightOps, HashSet<string> activationOps,
        HashSet<string> passThroughOps, HashSet<string> removable)
    {
        var plan = new QdqPlan();
        var types = TypeInference.Infer(model);
        var consumers = model.Consumers();
        var graphOutputs = model.Graph.Output.Select(o => o.Name).ToHashSet();
        bool IsFloatActivation(string t) => t.Length > 0 && !model.IsInitializer(t) && types.GetValueOrDefault(t) == (int)DataType.Float;
        bool IsFloat(string t) => t.Length > 0 && types.GetValueOrDefault(t) == (int)DataType.Float;

        var quantized = new HashSet<NodeProto>();
        foreach (var node in model.Graph.Node)
        {
            if (node.Domain is not ("" or "ai.onnx"))
                continue;
            var candidate = weightOps.Contains(node.OpType) || activationOps.Contains(node.OpType) || passThroughOps.Contains(node.OpType);
            if (!candidate)
                continue;
            if (options.ExcludeNodes.Contains(node.Name) || options.ExcludeOpTypes.Contains(node.OpType))
            {
                plan.Excluded++;
                continue;
            }
            if (!Supported(model, node, IsFloat, IsFloatActivation))
                continue;
            quantized.Add(node);
            plan.Nodes.Add(node);
        }

        // A pass-through op only helps when a quantized node reads its output; otherwise (a Reshape before a
        // graph output, say) it would only pull its input into int8, and with it the op that makes that input
        // (a Softmax would run as QLinearSoftmax and round probabilities to 1/255, where near-ties become ties).
        bool removed;
        do
        {
            removed = false;
            foreach (var node in plan.Nodes.Where(n => passThroughOps.Contains(n.OpType)).ToList())
            {
                if ((consumers.GetValueOrDefault(node.Output[0]) ?? []).Any(quantized.Contains))
                    continue;
                quantized.Remove(node);
                plan.Nodes.Remove(node);
                removed = true;
            }
        }
        while (removed);

        var own = new HashSet<string>();
        foreach (var node in plan.Nodes)
        {
            foreach (var input in ActivationInputs(node).Where(IsFloatActivation))
                own.Add(input);
            var output = node.Output[0];
            if (graphOutputs.Contains(output))
                continue;
            plan.CalibrationCandidates.Add(output);
            if (passThroughOps.Contains(node.OpType))
            {
                plan._sharedWith[output] = node.Input[0];
                continue;
            }
            var readers = consumers.GetValueOrDefault(output) ?? [];
            if (readers is [var activation] && removable.Contains(activation.OpType) && !options.ExcludeNodes.Contains(activation.Name)
                && !graphOutputs.Contains(activation.Output[0]) && IsFloatActivation(activation.Output[0]))
            {
                own.Add(activation.Output[0]);
                plan.CalibrationCandidates.Add(activation.Output[0]);
            }
            else
                own.Add(output);
        }
        foreach (var shared in plan._sharedWith.Keys)
            own.Remove(shared);
        plan.CalibratedTensors.UnionWith(own);
        plan.CalibrationCandidates.UnionWith(own);
        return plan;
    }

    /// <summary>Parameters for every quantized tensor; pass-through outputs take their source's.</summary>
    public Dictionary<string, QuantParams> Parameters(Dictionary<string, TensorRange> ranges, ActivationType type)
    {
        var result = CalibratedTensors.ToDictionary(t => t, t => QuantMath.Activation(ranges.TryGetValue(t, out var r) ? r
            : throw new QuantizationException($"no calibrated range for tensor {t}"), type));
        foreach (var output in _sharedWith.Keys)
        {
            var source = output;
            while (_sharedWith.TryGetValue(source, out var next))
                source = next;
            if (result.TryGetValue(source, out var p))
                result[output] = p;
        }
        return result;
    }

    /// <summary>The inputs of a node that carry activations (weights and shape inputs are handled apart).</summary>
    private static IEnumerable<string> ActivationInputs(NodeProto node) => node.OpType switch
    {
        "MatMul" or "Add" or "Mul" => [node.Input[0], node.Input[1]],
        "Concat" => node.Input,
        _ => [node.Input[0]],
    };

    /// <summary>A non-pointwise convolution whose input channels per group are not a multiple of 4.</summary>
    private static bool SlowInInt8(NodeProto node, TensorProto weight) =>
        weight.Dims.Count >= 3 && weight.Dims[1] % 4 != 0 && weight.Dims.Skip(2).Any(d => d > 1)
        && (node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1) == 1;

    private static bool Supported(OnnxModel model, NodeProto node, Func<string, bool> isFloat, Func<string, bool> isFloatActivation)
    {
        if (node.Input.Count == 0 || !isFloat(node.Input[0]) || node.Output.Count == 0)
            return false;
        switch (node.OpType)
        {
            case "Conv":
                return model.Initializer(node.Input[1]) is { } weight && isFloatActivation(node.Input[0]) && !SlowInInt8(node, weight);
            case "Gemm":
                return model.IsInitializer(node.Input[1]) && isFloatActivation(node.Input[0])
                    && node.Attribute.All(a => a.Name switch { "transA" => a.I == 0, "alpha" or "beta" => a.F == 1f, _ => true });
            case "MatMul":
                return isFloat(node.Input[1]);
            case "Add" or "Mul":
                return isFloat(node.Input[1]) && (isFloatActivation(node.Input[0]) || isFloatActivation(node.Input[1]));
            case "Concat":
                return node.Input.All(isFloatActivation);
            default:
                return isFloatActivation(node.Input[0]);
        }
    }
}
