using Google.Protobuf;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>The graph edits of QDQ quantization: Q/DQ pairs on activations and constants, int8 weights.</summary>
internal sealed class QdqRewriter(OnnxModel model, QuantizationOptions options)
{
    private readonly Dictionary<string, (string Dequantized, float[] Scales)> _weights = [];
    private readonly Dictionary<string, string> _constants = [];
    private (string Three, string Scale, string Zero, string SixthScale)? _hardSwish;
    private readonly DataType _activationType = options.Activations == ActivationType.UInt8 ? DataType.Uint8 : DataType.Int8;

    /// <summary>Inserts tensor → Q → DQ and points every reader of the tensor at the DQ output.</summary>
    public void QuantizeActivation(string tensor, QuantParams p)
    {
        var (scale, zero) = ScaleAndZero(tensor, p);
        var quantized = model.UniqueName("q");
        var dequantized = model.UniqueName("dq");
        foreach (var node in model.Graph.Node)
            for (var i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == tensor)
                    node.Input[i] = dequantized;
        model.Graph.Node.Add(OpsetUpgrade.NewNode("QuantizeLinear", [tensor, scale, zero], [quantized], ""));
        model.Graph.Node.Add(OpsetUpgrade.NewNode("DequantizeLinear", [quantized, scale, zero], [dequantized], ""));
    }

    /// <summary>
    /// HardSwish(x) = x · clip(x + 3, 0, 6) / 6, with the clip and the division done by quantization: the sum is
    /// quantized over [0, 6], whose saturation is the clip, and read back at a sixth of that scale, which is the
    /// division. What is left, an Add with a constant and a Mul of two activations, ONNX Runtime runs as
    /// QLinearAdd and QLinearMul on int8 instead of dequantizing, running HardSigmoid and Mul in float and
    /// quantizing again. The gate is exact at its ends (0 below −3, 1 above 3) and within 1/255 between.
    /// The node's input and output must already have their Q/DQ pairs (<see cref="QuantizeActivation"/>).
    /// </summary>
    public void DecomposeHardSwish(NodeProto hardSwish)
    {
        var x = hardSwish.Input[0];
        if (_hardSwish is null)
        {
            // One set of constants for every HardSwish of the model.
            var constant = model.UniqueName("three");
            model.Graph.Initializer.Add(Tensors.FromFloats(constant, [3f]));
            var p = QuantMath.Activation(new TensorRange(0, 6), options.Activations);
            var (sumScale, sumZero) = ScaleAndZero(constant, p);
            var sixth = model.UniqueName("s");
            model.Graph.Initializer.Add(Tensors.FromFloats(sixth, [p.Scale / 6]));
            _hardSwish = (constant, sumScale, sumZero, sixth);
        }
        var (three, scale, zero, sixthScale) = _hardSwish.Value;
        var shifted = model.UniqueName("hswish_shifted");
        var add = OpsetUpgrade.NewNode("Add", [x, three], [shifted], "");
        QuantizeConstantInputs(add);
        var quantized = model.UniqueName("q");
        var gate = model.UniqueName("hswish_gate");
        var index = model.Graph.Node.IndexOf(hardSwish);
        model.Graph.Node[index] = OpsetUpgrade.NewNode("Mul", [x, gate], [hardSwish.Output[0]], hardSwish.Name);
        model.Graph.Node.Add(add);
        model.Graph.Node.Add(OpsetUpgrade.NewNode("QuantizeLinear", [shifted, scale, zero], [quantized], ""));
        model.Graph.Node.Add(OpsetUpgrade.NewNode("DequantizeLinear", [quantized, sixthScale, zero], [gate], ""));
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
                var q = model.UniqueName("c");
                model.Graph.Initializer.Add(_activationType == DataType.Uint8
                    ? Tensors.Make(q, DataType.Uint8, Array.ConvertAll(values, v => (byte)QuantMath.Quantize(v, p, options.Activations)), [.. constant.Dims])
                    : Tensors.Make(q, DataType.Int8, Array.ConvertAll(values, v => (sbyte)QuantMath.Quantize(v, p, options.Activations)), [.. constant.Dims]));
                dequantized = model.UniqueName("dq");
                model.Graph.Node.Add(OpsetUpgrade.NewNode("DequantizeLinear", [q, scale, zero], [dequantized], ""));
                _constants[constant.Name] = dequantized;
            }
            node.Input[i] = dequantized;
        }
    }

    /// <summary>
    /// Per-channel (or per-tensor) symmetric int8 weight. Biases stay float: ONNX Runtime quantizes them to int32
    /// itself when it fuses the group (and TensorRT wants them float), which saves a scale per channel.
    /// </summary>
    public void QuantizeWeight(NodeProto node)
    {
        var weight = model.Initializer(node.Input[1]);
        if (weight is null)
        {
            QuantizeConstantInputs(node);
            return;
        }
        var axis = WeightAxis(node, weight, options.PerChannel);
        var key = $"{weight.Name}@{axis}";
        if (!_weights.TryGetValue(key, out var quantizedWeight))
            _weights[key] = quantizedWeight = QuantizeWeight(weight, axis, explicitZeroPoint: node.OpType != "Conv");
        node.Input[1] = quantizedWeight.Dequantized;
        if (node.OpType == "MatMul" && model.Initializer(node.Input[0]) is not null)
            QuantizeConstantInputs(node);

    }

    /// <summary>
    /// Makes nodes share one copy of identical small initializers (scales, zero points, constants): on a small
    /// model the hundreds of scalar copies are a measurable part of the file once the weights are int8.
    /// </summary>
    public void ShareIdenticalInitializers()
    {
        // An initializer that is also a graph input can be overridden at run time, and one a subgraph reads is read by
        // name from inside it: neither is merged nor kept.
        var graphInputs = model.Graph.Input.Select(i => i.Name).Concat(model.Graph.Node.SelectMany(OnnxModel.OuterReads)).ToHashSet();
        var first = new Dictionary<string, string>();
        var replaced = new Dictionary<string, string>();
        foreach (var t in model.Graph.Initializer.Where(t => Tensors.ElementCount(t) <= 16 && !graphInputs.Contains(t.Name)))
        {
            var key = $"{t.DataType}|{string.Join(',', t.Dims)}|{Convert.ToBase64String(Unnamed(t).ToByteArray())}";
            if (first.TryGetValue(key, out var kept))
                replaced[t.Name] = kept;
            else
                first[key] = t.Name;
        }
        foreach (var node in model.Graph.Node)
            for (var i = 0; i < node.Input.Count; i++)
                if (replaced.TryGetValue(node.Input[i], out var kept))
                    node.Input[i] = kept;
    }

    private static TensorProto Unnamed(TensorProto t)
    {
        var copy = t.Clone();
        copy.Name = "";
        return copy;
    }

    /// <summary>Drops initializers no node (nor subgraph) or graph output reads any more (the float weights that were replaced).</summary>
    public void RemoveUnusedInitializers()
    {
        var used = model.Graph.Node.SelectMany(OnnxModel.Reads).Concat(model.Graph.Output.Select(o => o.Name)).ToHashSet();
        var unused = model.Graph.Initializer.Where(t => !used.Contains(t.Name)).ToList();
        foreach (var t in unused)
            model.Graph.Initializer.Remove(t);
        var names = unused.Select(t => t.Name).ToHashSet();
        foreach (var input in model.Graph.Input.Where(i => names.Contains(i.Name)).ToList())
            model.Graph.Input.Remove(input);
    }

    /// <summary>
    /// Writes the graph compactly, for the OTA download's sake: on a small model the graph itself is a tenth of the
    /// file once the weights are int8. Every tensor inside the graph (not its inputs and outputs) gets a name of
    /// one to three letters and digits; attributes equal to their ONNX default are dropped (convolution and
    /// pooling strides, dilations, pads, groups and auto_pad, Gemm's alpha, beta and transposes, Reshape's
    /// allowzero); empty names and domains are not written. Node names, which exclusions refer to, stay, and so do
    /// the names subgraphs read from the top level (they are read by name from inside them).
    /// </summary>
    public void CompactGraph()
    {
        var keep = model.Graph.Input.Select(i => i.Name).Concat(model.Graph.Output.Select(o => o.Name))
            .Concat(model.Graph.Node.SelectMany(OnnxModel.OuterReads)).Append("").ToHashSet();
        var taken = model.SubgraphNames().ToHashSet();
        var names = new Dictionary<string, string>();
        var next = 0;
        string Short(string name)
        {
            if (keep.Contains(name))
                return name;
            if (!names.TryGetValue(name, out var s))
            {
                do
                    s = Base62(next++);
                while (keep.Contains(s) || taken.Contains(s));
                names[name] = s;
            }
            return s;
        }
        foreach (var t in model.Graph.Initializer)
            t.Name = Short(t.Name);
        foreach (var node in model.Graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
                node.Input[i] = Short(node.Input[i]);
            for (var i = 0; i < node.Output.Count; i++)
                node.Output[i] = Short(node.Output[i]);
            foreach (var a in node.Attribute.Where(a => IsDefault(node.OpType, a)).ToList())
                node.Attribute.Remove(a);
            if (node.Name.Length == 0)
                node.ClearName();
            if (node.Domain.Length == 0)
                node.ClearDomain();
        }
        model.Graph.ValueInfo.Clear();
    }

    private static string Base62(int n)
    {
        const string digits = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        var s = "";
        do
        {
            s = digits[n % 62] + s;
            n = n / 62 - 1;
        }
        while (n >= 0);
        return s;
    }

    /// <summary>An attribute whose value is the operator's default (for the operators the quantizer writes around).</summary>
    private static bool IsDefault(string op, AttributeProto a) => (op, a.Name) switch
    {
        ("Conv" or "MaxPool" or "AveragePool", "auto_pad") => a.S.ToStringUtf8() == "NOTSET",
        ("Conv" or "MaxPool" or "AveragePool", "strides" or "dilations") => a.Ints.All(v => v == 1),
        ("Conv" or "MaxPool" or "AveragePool", "pads") => a.Ints.All(v => v == 0),
        ("Conv", "group") => a.I == 1,
        ("MaxPool" or "AveragePool", "ceil_mode") => a.I == 0,
        ("MaxPool", "storage_order") => a.I == 0,
        ("Gemm", "alpha" or "beta") => a.F == 1f,
        ("Gemm", "transA" or "transB") => a.I == 0,
        ("Reshape", "allowzero") => a.I == 0,
        _ => false,
    };

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
            foreach (var input in OnnxModel.Reads(nodes[i]).Distinct())
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

    /// <summary>
    /// Symmetric int8 weights; the zero point (0) is left out for convolutions, which ONNX Runtime fuses
    /// without it, and written for Gemm and MatMul, whose fusions want it.
    /// </summary>
    private (string Dequantized, float[] Scales) QuantizeWeight(TensorProto weight, int? axis, bool explicitZeroPoint)
    {
        var values = Tensors.Floats(weight);
        var dims = weight.Dims.ToArray();
        var channels = axis is { } a ? (int)dims[a] : 1;
        var (q, scales) = QuantMath.SymmetricWeights(values, dims, axis);
        var qName = model.UniqueName("w");
        var scaleName = model.UniqueName("ws");
        model.Graph.Initializer.Add(Tensors.Make(qName, DataType.Int8, q, dims));
        if (axis is null)
        {
            model.Graph.Initializer.Add(Tensors.FromFloats(scaleName, scales));
        }
        else
        {
            model.Graph.Initializer.Add(Tensors.FromFloats(scaleName, scales, channels));
        }
        var dequantized = model.UniqueName("dq");
        var dq = OpsetUpgrade.NewNode("DequantizeLinear", [qName, scaleName], [dequantized], "");
        if (explicitZeroPoint)
        {
            var zero = model.UniqueName("wz");
            model.Graph.Initializer.Add(axis is null ? Tensors.Make(zero, DataType.Int8, new sbyte[1]) : Tensors.Make(zero, DataType.Int8, new sbyte[channels], channels));
            dq.Input.Add(zero);
        }
        if (axis is { } channelAxis)
            dq.Attribute.Add(OnnxModelBuilder.IntAttribute("axis", channelAxis));
        model.Graph.Node.Add(dq);
        return (dequantized, scales);
    }

    /// <summary>The output-channel axis of a weight, or null for one scale per tensor.</summary>
    private static int? WeightAxis(NodeProto node, TensorProto weight, bool perChannel)
    {
        if (!perChannel || weight.Dims.Count < 2)
            return null;
        return node.OpType switch
        {
            "Conv" => 0,
            "Gemm" => (node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I ?? 0) == 1 ? 0 : 1,
            "MatMul" => weight.Dims.Count - 1,
            _ => null,
        };
    }

    private (string Scale, string Zero) ScaleAndZero(string tensor, QuantParams p)
    {
        var scale = model.UniqueName("s");
        var zero = model.UniqueName("z");
        model.Graph.Initializer.Add(Tensors.FromFloats(scale, [p.Scale]));
        model.Graph.Initializer.Add(_activationType == DataType.Uint8
            ? Tensors.Make(zero, DataType.Uint8, [(byte)p.ZeroPoint])
            : Tensors.Make(zero, DataType.Int8, [(sbyte)p.ZeroPoint]));
        return (scale, zero);
    }
}
