using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>The graph edits of QDQ quantization: Q/DQ pairs on activations, int8 weights, int32 biases.</summary>
internal sealed class QdqRewriter(OnnxModel model, QuantizationOptions options)
{
    private readonly Dictionary<string, (string Dequantized, float[] Scales)> _weights = [];
    private readonly Dictionary<string, string> _constants = [];
    private readonly DataType _activationType = options.Activations == ActivationType.UInt8 ? DataType.Uint8 : DataType.Int8;

    /// <summary>Inserts tensor → Q → DQ and points every reader of the tensor at the DQ output.</summary>
    public void QuantizeActivation(string tensor, QuantParams p)
    {
        var (scale, zero) = ScaleAndZero(tensor, p);
        var quantized = model.UniqueName($"{tensor}_quantized");
        var dequantized = model.UniqueName($"{tensor}_dequantized");
        foreach (var node in model.Graph.Node)
            for (var i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == tensor)
                    node.Input[i] = dequantized;
        model.Graph.Node.Add(OpsetUpgrade.NewNode("QuantizeLinear", [tensor, scale, zero], [quantized], model.UniqueName($"{tensor}_QuantizeLinear")));
        model.Graph.Node.Add(OpsetUpgrade.NewNode("DequantizeLinear", [quantized, scale, zero], [dequantized], model.UniqueName($"{tensor}_DequantizeLinear")));
    }

    /// <summary>Constant float inputs of an elementwise op, stored quantized with their own range.</summary>
    public void QuantizeConstantInputs(NodeProto node)
    {
        for (var i = 0; i < node.Input.Count; i++)
        {
            if (model.Initializer(node.Input[i]) is not { DataType: (int)DataType.Float } constant)
                continue;
            if (!_constants.TryGetValue(constant.Name, out var dequantized))
            {
                var values = Tensors.Floats(constant);
                var p = QuantMath.Activation(new TensorRange(values.Min(), values.Max()), options.Activations);
                var (scale, zero) = ScaleAndZero(constant.Name, p);
                var q = model.UniqueName($"{constant.Name}_quantized");
                model.Graph.Initializer.Add(_activationType == DataType.Uint8
                    ? Tensors.Make(q, DataType.Uint8, Array.ConvertAll(values, v => (byte)QuantMath.Quantize(v, p, options.Activations)), [.. constant.Dims])
                    : Tensors.Make(q, DataType.Int8, Array.ConvertAll(values, v => (sbyte)QuantMath.Quantize(v, p, options.Activations)), [.. constant.Dims]));
                dequantized = model.UniqueName($"{constant.Name}_dequantized");
                model.Graph.Node.Add(OpsetUpgrade.NewNode("DequantizeLinear", [q, scale, zero], [dequantized], model.UniqueName($"{constant.Name}_DequantizeLinear")));
                _constants[constant.Name] = dequantized;
            }
            node.Input[i] = dequantized;
        }
    }

    /// <summary>Per-channel (or per-tensor) symmetric int8 weight, and the int32 bias of Conv, ConvTranspose and Gemm.</summary>
    public void QuantizeWeightAndBias(NodeProto node, Dictionary<string, QuantParams> activations)
    {
        var weight = model.Initializer(node.Input[1]);
        if (weight is null)
        {
            QuantizeConstantInputs(node);
            return;
        }
        var axis = WeightAxis(node, weight);
        var key = $"{weight.Name}@{axis}";
        if (!_weights.TryGetValue(key, out var quantizedWeight))
            _weights[key] = quantizedWeight = QuantizeWeight(weight, axis);
        node.Input[1] = quantizedWeight.Dequantized;
        if (node.OpType == "MatMul" && model.Initializer(node.Input[0]) is not null)
            QuantizeConstantInputs(node);

        var inputOrigin = OriginalName(node.Input[0]);
        if (node.Input.Count < 3 || node.Input[2].Length == 0 || model.Initializer(node.Input[2]) is not { DataType: (int)DataType.Float } bias
            || bias.Dims.Count != 1 || !activations.TryGetValue(inputOrigin, out var input))
            return;
        var values = Tensors.Floats(bias);
        var scales = values.Select((_, c) => input.Scale * quantizedWeight.Scales[quantizedWeight.Scales.Length == 1 ? 0 : c]).ToArray();
        if (quantizedWeight.Scales.Length != 1 && quantizedWeight.Scales.Length != values.Length)
            return;
        var q = model.UniqueName($"{bias.Name}_quantized");
        var scaleName = model.UniqueName($"{bias.Name}_scale");
        var zeroName = model.UniqueName($"{bias.Name}_zero_point");
        model.Graph.Initializer.Add(Tensors.Make(q, DataType.Int32, values.Select((v, c) => QuantMath.QuantizeBias(v, scales[c])).ToArray(), values.Length));
        model.Graph.Initializer.Add(Tensors.FromFloats(scaleName, scales, scales.Length));
        model.Graph.Initializer.Add(Tensors.Make(zeroName, DataType.Int32, new int[values.Length], values.Length));
        var dequantized = model.UniqueName($"{bias.Name}_dequantized");
        model.Graph.Node.Add(OpsetUpgrade.NewNode("DequantizeLinear", [q, scaleName, zeroName], [dequantized], model.UniqueName($"{bias.Name}_DequantizeLinear"),
            OnnxModelBuilder.IntAttribute("axis", 0)));
        node.Input[2] = dequantized;
    }

    /// <summary>Drops initializers no node or graph output reads any more (the float weights that were replaced).</summary>
    public void RemoveUnusedInitializers()
    {
        var used = model.Graph.Node.SelectMany(n => n.Input).Concat(model.Graph.Output.Select(o => o.Name)).ToHashSet();
        var unused = model.Graph.Initializer.Where(t => !used.Contains(t.Name)).ToList();
        foreach (var t in unused)
            model.Graph.Initializer.Remove(t);
        var names = unused.Select(t => t.Name).ToHashSet();
        foreach (var input in model.Graph.Input.Where(i => names.Contains(i.Name)).ToList())
            model.Graph.Input.Remove(input);
    }

    /// <summary>Orders nodes so every input is produced before it is read (Kahn, stable in the original order).</summary>
    public void SortTopologically()
    {
        var nodes = model.Graph.Node.ToList();
        var available = model.Graph.Input.Select(i => i.Name).Concat(model.Graph.Initializer.Select(i => i.Name)).Append("").ToHashSet();
        var producedBy = new Dictionary<string, int>();
        for (var i = 0; i < nodes.Count; i++)
            foreach (var o in nodes[i].Output)
                producedBy[o] = i;
        var waiting = new int[nodes.Count];
        var readers = new List<int>[nodes.Count];
        for (var i = 0; i < nodes.Count; i++)
        {
            readers[i] = [];
        }
        for (var i = 0; i < nodes.Count; i++)
            foreach (var input in nodes[i].Input.Distinct())
                if (!available.Contains(input) && producedBy.TryGetValue(input, out var p))
                {
                    waiting[i]++;
                    readers[p].Add(i);
                }
        var ready = new PriorityQueue<int, int>();
        for (var i = 0; i < nodes.Count; i++)
            if (waiting[i] == 0)
                ready.Enqueue(i, i);
        var order = new List<NodeProto>(nodes.Count);
        while (ready.TryDequeue(out var i, out _))
        {
            order.Add(nodes[i]);
            foreach (var r in readers[i])
                if (--waiting[r] == 0)
                    ready.Enqueue(r, r);
        }
        if (order.Count != nodes.Count)
            throw new QuantizationException("the quantized graph has a cycle (a bug in the quantizer)");
        model.Graph.Node.Clear();
        model.Graph.Node.AddRange(order);
    }

    private (string Dequantized, float[] Scales) QuantizeWeight(TensorProto weight, int? axis)
    {
        var values = Tensors.Floats(weight);
        var dims = weight.Dims.ToArray();
        var channels = axis is { } a ? (int)dims[a] : 1;
        var inner = axis is { } b ? dims.Skip(b + 1).Aggregate(1L, (x, y) => x * y) : values.Length;
        var maxAbs = new float[channels];
        for (long i = 0; i < values.Length; i++)
        {
            var c = (int)(i / inner % channels);
            maxAbs[c] = Math.Max(maxAbs[c], Math.Abs(values[i]));
        }
        var scales = Array.ConvertAll(maxAbs, QuantMath.SymmetricScale);
        var q = new sbyte[values.Length];
        for (long i = 0; i < values.Length; i++)
            q[i] = QuantMath.QuantizeSymmetric(values[i], scales[(int)(i / inner % channels)]);
        var qName = model.UniqueName($"{weight.Name}_quantized");
        var scaleName = model.UniqueName($"{weight.Name}_scale");
        var zeroName = model.UniqueName($"{weight.Name}_zero_point");
        model.Graph.Initializer.Add(Tensors.Make(qName, DataType.Int8, q, dims));
        if (axis is null)
        {
            model.Graph.Initializer.Add(Tensors.FromFloats(scaleName, scales));
            model.Graph.Initializer.Add(Tensors.Make(zeroName, DataType.Int8, new sbyte[1]));
        }
        else
        {
            model.Graph.Initializer.Add(Tensors.FromFloats(scaleName, scales, channels));
            model.Graph.Initializer.Add(Tensors.Make(zeroName, DataType.Int8, new sbyte[channels], channels));
        }
        var dequantized = model.UniqueName($"{weight.Name}_dequantized");
        var dq = OpsetUpgrade.NewNode("DequantizeLinear", [qName, scaleName, zeroName], [dequantized], model.UniqueName($"{weight.Name}_DequantizeLinear"));
        if (axis is { } channelAxis)
            dq.Attribute.Add(OnnxModelBuilder.IntAttribute("axis", channelAxis));
        model.Graph.Node.Add(dq);
        return (dequantized, scales);
    }

    /// <summary>The output-channel axis of a weight, or null for one scale per tensor.</summary>
    private int? WeightAxis(NodeProto node, TensorProto weight)
    {
        if (!options.PerChannel || weight.Dims.Count < 2)
            return null;
        return node.OpType switch
        {
            "Conv" => 0,
            "ConvTranspose" => (node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1) == 1 ? 1 : null,
            "Gemm" => (node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I ?? 0) == 1 ? 0 : 1,
            "MatMul" => weight.Dims.Count - 1,
            _ => null,
        };
    }

    private (string Scale, string Zero) ScaleAndZero(string tensor, QuantParams p)
    {
        var scale = model.UniqueName($"{tensor}_scale");
        var zero = model.UniqueName($"{tensor}_zero_point");
        model.Graph.Initializer.Add(Tensors.FromFloats(scale, [p.Scale]));
        model.Graph.Initializer.Add(_activationType == DataType.Uint8
            ? Tensors.Make(zero, DataType.Uint8, [(byte)p.ZeroPoint])
            : Tensors.Make(zero, DataType.Int8, [(sbyte)p.ZeroPoint]));
        return (scale, zero);
    }

    /// <summary>The tensor a DQ output stands for (its name before quantization).</summary>
    private string OriginalName(string tensor)
    {
        var producer = model.Graph.Node.FirstOrDefault(n => n.OpType == "DequantizeLinear" && n.Output[0] == tensor);
        if (producer is null)
            return tensor;
        var q = model.Graph.Node.FirstOrDefault(n => n.OpType == "QuantizeLinear" && n.Output[0] == producer.Input[0]);
        return q?.Input[0] ?? tensor;
    }
}
