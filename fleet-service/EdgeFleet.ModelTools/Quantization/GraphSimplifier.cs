using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Exact float rewrites that leave fewer places to quantize: every tensor between two quantized ops is a
/// rounding step, so a graph with fewer of them loses less accuracy and runs fewer kernels.
/// <list type="bullet">
/// <item>division by a constant → multiplication by its reciprocal (multiplication runs quantized);</item>
/// <item><c>x · clip(x + 3, 0, 6) / 6</c> and <c>x · HardSigmoid(x; 1/6, 1/2)</c> (ONNX Runtime's expansion of
/// HardSwish) → <c>HardSwish(x)</c> (opset 14);</item>
/// <item>Conv → Mul(constant) / Add(constant), per channel or scalar → folded into the Conv's weights and bias;</item>
/// <item>Mul(scalar) / Add(scalar) → 1×1 Conv without padding → folded into that Conv;</item>
/// <item>Mul(a) (then Add(b)), a scalar, read only by convolutions → (Add(b / a) →) those convolutions with weights
/// a·W, padded or not (zero padding scales to zero): PP-LCNetV3's learnable affine blocks lose a step;</item>
/// <item>Conv → HardSigmoid(α, β) → Conv with weights α·W and bias α·b + β, then Clip(0, 1), which a quantized
/// output range makes redundant (the gate of a squeeze-and-excitation block then runs as one int8 convolution).</item>
/// </list>
/// </summary>
internal static class GraphSimplifier
{
    public static void Simplify(OnnxModel model)
    {
        DivisionByConstantToMultiplication(model);
        bool changed;
        do
        {
            changed = false;
            var consumers = model.Consumers();
            var outputs = model.Graph.Output.Select(o => o.Name).ToHashSet();
            foreach (var node in model.Graph.Node.ToList())
            {
                if (!model.Graph.Node.Contains(node))
                    continue;
                changed |= FuseHardSwish(model, node, consumers, outputs) || FoldIntoPrecedingConv(model, node, consumers, outputs) || FoldIntoFollowingConv(model, node, consumers, outputs)
                    || FoldHardSigmoidIntoConv(model, node, consumers, outputs) || FoldScaleIntoFollowingConvs(model, node, consumers, outputs);
                if (changed)
                    break;
            }
        }
        while (changed);
    }

    private static void DivisionByConstantToMultiplication(OnnxModel model)
    {
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "Div" && n.Domain is "" or "ai.onnx"))
        {
            if (model.Initializer(node.Input[1]) is not { DataType: (int)DataType.Float } divisor)
                continue;
            var values = Tensors.Floats(divisor);
            if (values.Any(v => v == 0 || !float.IsFinite(v)))
                continue;
            var name = model.UniqueName($"{divisor.Name}_reciprocal");
            model.Graph.Initializer.Add(Tensors.FromFloats(name, Array.ConvertAll(values, v => 1f / v), [.. divisor.Dims]));
            node.OpType = "Mul";
            node.Input[1] = name;
        }
    }

    /// <summary>Add(x, 3) → Clip(0, 6) → Mul(x, ·) → Mul(·, 1/6), or HardSigmoid(x; 1/6, 1/2) → Mul(x, ·), becomes HardSwish(x).</summary>
    private static bool FuseHardSwish(OnnxModel model, NodeProto add, Dictionary<string, List<NodeProto>> consumers, HashSet<string> outputs)
    {
        if (add.OpType == "HardSigmoid")
        {
            var alpha = add.Attribute.FirstOrDefault(a => a.Name == "alpha")?.F ?? 0.2f;
            var beta = add.Attribute.FirstOrDefault(a => a.Name == "beta")?.F ?? 0.5f;
            if (Math.Abs(alpha - 1f / 6) > 1e-6 || beta != 0.5f || Only(consumers, outputs, add.Output[0]) is not { OpType: "Mul" } product
                || product.Input.Count != 2 || !product.Input.Contains(add.Input[0]) || product.Input[0] == product.Input[1])
                return false;
            var at = model.Graph.Node.IndexOf(add);
            model.Graph.Node.Remove(add);
            model.Graph.Node.Remove(product);
            model.Graph.Node.Insert(at, OpsetUpgrade.NewNode("HardSwish", [add.Input[0]], [product.Output[0]], model.UniqueName($"{add.Name}_HardSwish")));
            return true;
        }
        if (add.OpType != "Add" || ConstantOperand(model, add) is not ({ } x, [3f]))
            return false;
        if (Only(consumers, outputs, add.Output[0]) is not { OpType: "Clip" } clip || Scalar(model, clip, 1) != 0 || Scalar(model, clip, 2) != 6)
            return false;
        if (Only(consumers, outputs, clip.Output[0]) is not { OpType: "Mul" } mul || !mul.Input.Contains(x))
            return false;
        if (Only(consumers, outputs, mul.Output[0]) is not { OpType: "Mul" } sixth || ConstantOperand(model, sixth) is not (_, [var k]) || Math.Abs(k - 1f / 6) > 1e-6)
            return false;
        var index = model.Graph.Node.IndexOf(add);
        foreach (var n in new[] { add, clip, mul, sixth })
            model.Graph.Node.Remove(n);
        model.Graph.Node.Insert(index, OpsetUpgrade.NewNode("HardSwish", [x], [sixth.Output[0]], model.UniqueName($"{add.Name}_HardSwish")));
        return true;
    }

    /// <summary>Conv → Mul(c) or Add(c), c per output channel or scalar: scale the weights and bias, or shift the bias.</summary>
    private static bool FoldIntoPrecedingConv(OnnxModel model, NodeProto node, Dictionary<string, List<NodeProto>> consumers, HashSet<string> outputs)
    {
        if (node.OpType is not ("Mul" or "Add") || ConstantOperand(model, node) is not ({ } input, { } c))
            return false;
        var conv = model.Graph.Node.FirstOrDefault(n => n.OpType == "Conv" && n.Output[0] == input);
        if (conv is null || Only(consumers, outputs, input) != node || model.Initializer(conv.Input[1]) is not { } weight)
            return false;
        var w = Tensors.Floats(weight);
        var channels = (int)weight.Dims[0];
        if (c.Length != 1 && c.Length != channels)
            return false;
        var bias = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? model.Initializer(conv.Input[2]) is { } b ? Tensors.Floats(b) : null : new float[channels];
        if (bias is null)
            return false;
        var inner = w.Length / channels;
        for (var o = 0; o < channels; o++)
        {
            var v = c.Length == 1 ? c[0] : c[o];
            if (node.OpType == "Mul")
            {
                for (var i = 0; i < inner; i++)
                    w[o * inner + i] *= v;
                bias[o] *= v;
            }
            else
            {
                bias[o] += v;
            }
        }
        ReplaceConvParameters(model, conv, weight, w, bias);
        conv.Output[0] = node.Output[0];
        model.Graph.Node.Remove(node);
        return true;
    }

    /// <summary>
    /// Mul(x, a) read only by convolutions (as their input), or Mul(x, a) → Add(·, b) whose sum is: a·x + b = a·(x + b/a),
    /// and a convolution of a·y is the convolution with weights a·W of y, zero padding included. The Mul goes.
    /// </summary>
    private static bool FoldScaleIntoFollowingConvs(OnnxModel model, NodeProto mul, Dictionary<string, List<NodeProto>> consumers, HashSet<string> outputs)
    {
        if (mul.OpType != "Mul" || ConstantOperand(model, mul) is not ({ } x, [var a]) || a == 0 || !float.IsFinite(a) || outputs.Contains(mul.Output[0]))
            return false;
        var add = Only(consumers, outputs, mul.Output[0]) is { OpType: "Add" } next && ConstantOperand(model, next) is (_, [var b]) && float.IsFinite(b / a) ? next : null;
        var result = add?.Output[0] ?? mul.Output[0];
        if (outputs.Contains(result) || consumers.GetValueOrDefault(result) is not { Count: > 0 } readers
            || readers.Any(r => r.OpType != "Conv" || r.Input[0] != result || r.Input.Skip(1).Contains(result) || model.Initializer(r.Input[1]) is null))
            return false;
        if (readers.Any(r => r.Input.Count > 2 && r.Input[2].Length > 0 && model.Initializer(r.Input[2]) is null))
            return false;
        foreach (var conv in readers.Distinct())
        {
            var weight = model.Initializer(conv.Input[1])!;
            var bias = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? Tensors.Floats(model.Initializer(conv.Input[2])!) : new float[weight.Dims[0]];
            ReplaceConvParameters(model, conv, weight, Array.ConvertAll(Tensors.Floats(weight), w => w * a), bias);
        }
        if (add is not null)
        {
            var shift = model.UniqueName($"{add.Name}_shift");
            model.Graph.Initializer.Add(Tensors.FromFloats(shift, [ConstantOperand(model, add).Values![0] / a]));
            add.Input.Clear();
            add.Input.Add(x);
            add.Input.Add(shift);
        }
        else
        {
            foreach (var conv in readers)
                conv.Input[0] = x;
        }
        model.Graph.Node.Remove(mul);
        return true;
    }

    /// <summary>Conv → HardSigmoid(α, β): α·Conv(x) + β is a convolution too, and what is left is Clip(0, 1).</summary>
    private static bool FoldHardSigmoidIntoConv(OnnxModel model, NodeProto node, Dictionary<string, List<NodeProto>> consumers, HashSet<string> outputs)
    {
        if (node.OpType != "HardSigmoid")
            return false;
        var conv = model.Graph.Node.FirstOrDefault(n => n.OpType == "Conv" && n.Output[0] == node.Input[0]);
        if (conv is null || Only(consumers, outputs, node.Input[0]) != node || model.Initializer(conv.Input[1]) is not { } weight)
            return false;
        var bias = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? model.Initializer(conv.Input[2]) is { } b ? Tensors.Floats(b) : null : new float[weight.Dims[0]];
        if (bias is null)
            return false;
        var alpha = node.Attribute.FirstOrDefault(a => a.Name == "alpha")?.F ?? 0.2f;
        var beta = node.Attribute.FirstOrDefault(a => a.Name == "beta")?.F ?? 0.5f;
        var w = Tensors.Floats(weight);
        for (var i = 0; i < w.Length; i++)
            w[i] *= alpha;
        for (var o = 0; o < bias.Length; o++)
            bias[o] = alpha * bias[o] + beta;
        ReplaceConvParameters(model, conv, weight, w, bias);
        var low = model.UniqueName($"{node.Name}_min");
        var high = model.UniqueName($"{node.Name}_max");
        model.Graph.Initializer.Add(Tensors.FromFloats(low, [0f]));
        model.Graph.Initializer.Add(Tensors.FromFloats(high, [1f]));
        var index = model.Graph.Node.IndexOf(node);
        model.Graph.Node[index] = OpsetUpgrade.NewNode("Clip", [node.Input[0], low, high], [node.Output[0]], model.UniqueName($"{node.Name}_Clip"));
        return true;
    }

    /// <summary>Mul(a) or Add(b) with scalar a, b → 1×1 Conv with no padding: fold into the Conv's weights and bias.</summary>
    private static bool FoldIntoFollowingConv(OnnxModel model, NodeProto node, Dictionary<string, List<NodeProto>> consumers, HashSet<string> outputs)
    {
        if (node.OpType is not ("Mul" or "Add") || ConstantOperand(model, node) is not ({ } input, [var c]))
            return false;
        if (Only(consumers, outputs, node.Output[0]) is not { OpType: "Conv" } conv || conv.Input[0] != node.Output[0] || model.Initializer(conv.Input[1]) is not { } weight)
            return false;
        var pointwise = weight.Dims.Count == 4 && weight.Dims[2] == 1 && weight.Dims[3] == 1
            && conv.Attribute.All(a => a.Name switch { "pads" => a.Ints.All(p => p == 0), "group" => a.I == 1, "auto_pad" => a.S.ToStringUtf8() is "NOTSET" or "VALID", _ => true });
        if (!pointwise)
            return false;
        var w = Tensors.Floats(weight);
        var channels = (int)weight.Dims[0];
        var bias = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? model.Initializer(conv.Input[2]) is { } b ? Tensors.Floats(b) : null : new float[channels];
        if (bias is null)
            return false;
        var inner = w.Length / channels;
        for (var o = 0; o < channels; o++)
        {
            if (node.OpType == "Mul")
            {
                for (var i = 0; i < inner; i++)
                    w[o * inner + i] *= c;
            }
            else
            {
                for (var i = 0; i < inner; i++)
                    bias[o] += w[o * inner + i] * c;
            }
        }
        ReplaceConvParameters(model, conv, weight, w, bias);
        conv.Input[0] = input;
        model.Graph.Node.Remove(node);
        return true;
    }

    private static void ReplaceConvParameters(OnnxModel model, NodeProto conv, TensorProto weight, float[] w, float[] bias)
    {
        var weightName = model.UniqueName($"{weight.Name}_folded");
        var biasName = model.UniqueName($"{conv.Name}_bias_folded");
        model.Graph.Initializer.Add(Tensors.FromFloats(weightName, w, [.. weight.Dims]));
        model.Graph.Initializer.Add(Tensors.FromFloats(biasName, bias, bias.Length));
        conv.Input[1] = weightName;
        if (conv.Input.Count > 2)
            conv.Input[2] = biasName;
        else
            conv.Input.Add(biasName);
        RemoveIfUnused(model, weight.Name);
    }

    private static void RemoveIfUnused(OnnxModel model, string name)
    {
        if (!model.Graph.Node.Any(n => n.Input.Contains(name)) && model.Initializer(name) is { } t)
            model.Graph.Initializer.Remove(t);
    }

    /// <summary>For a binary node with one float-constant input: the other input and the constant's values.</summary>
    private static (string? Input, float[]? Values) ConstantOperand(OnnxModel model, NodeProto node)
    {
        if (node.Input.Count != 2)
            return (null, null);
        for (var i = 0; i < 2; i++)
            if (model.Initializer(node.Input[i]) is { DataType: (int)DataType.Float } t && model.Initializer(node.Input[1 - i]) is null && EffectivelyVector(t))
                return (node.Input[1 - i], Tensors.Floats(t));
        return (null, null);
    }

    /// <summary>A constant that broadcasts along the channel axis only: a scalar, [C], [C,1,1] or [1,C,1,1].</summary>
    private static bool EffectivelyVector(TensorProto t) => t.Dims.Count(d => d != 1) <= 1 && (t.Dims.Count <= 1 || Tensors.ElementCount(t) == 1 || t.Dims.Count >= 3 && t.Dims[^1] == 1 && t.Dims[^2] == 1);

    private static float? Scalar(OnnxModel model, NodeProto node, int input) =>
        node.Input.Count > input && model.Initializer(node.Input[input]) is { DataType: (int)DataType.Float } t && Tensors.ElementCount(t) == 1 ? Tensors.Floats(t)[0] : null;

    private static NodeProto? Only(Dictionary<string, List<NodeProto>> consumers, HashSet<string> outputs, string tensor) =>
        !outputs.Contains(tensor) && consumers.TryGetValue(tensor, out var list) && list.Count == 1 ? list[0] : null;
}
