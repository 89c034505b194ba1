using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Dynamic INT8 quantization, for models without calibration data: MatMul and Gemm weights are stored as int8
/// (one scale per output column), and activations are quantized at run time from their own range:
/// DynamicQuantizeLinear → MatMulInteger → Cast → Mul by (input scale × weight scale) [→ Add bias], which ONNX
/// Runtime fuses into one DynamicQuantizeMatMul kernel. Convolutions stay float in this mode; they gain from
/// static quantization.
/// </summary>
public static class DynamicQuantizer
{
    /// <param name="sample">An input sample the result is run on before it is returned (see <see cref="ServingCheck"/>).</param>
    public static (OnnxModel Model, QuantizationReport Report) Quantize(OnnxModel fp32, QuantizationOptions options,
        IReadOnlyList<SampleTensor>? sample = null)
    {
        var inputBytes = fp32.ToBytes().LongLength;
        var model = ModelPreprocessor.Prepare(fp32);
        var types = TypeInference.Infer(model);
        var quantizedInputs = new Dictionary<string, (string Q, string Scale, string Zero)>();
        var done = new List<NodeProto>();
        var excluded = 0;
        foreach (var node in model.Graph.Node.ToList())
        {
            if (node.OpType is not ("MatMul" or "Gemm") || node.Domain is not ("" or "ai.onnx"))
                continue;
            if (options.ExcludeNodes.Contains(node.Name) || options.ExcludeOpTypes.Contains(node.OpType))
            {
                excluded++;
                continue;
            }
            if (model.Initializer(node.Input[1]) is not { DataType: (int)DataType.Float, Dims.Count: 2 } weight || types.GetValueOrDefault(node.Input[0]) != (int)DataType.Float)
                continue;
            if (node.OpType == "Gemm" && !node.Attribute.All(a => a.Name switch { "transA" => a.I == 0, "alpha" or "beta" => a.F == 1f, _ => true }))
                continue;
            Replace(model, node, weight, quantizedInputs, options);
            done.Add(node);
        }
        if (done.Count == 0)
            throw new QuantizationException("no MatMul or Gemm with a constant 2-D weight to quantize dynamically");
        new QdqRewriter(model, options).RemoveUnusedInitializers();
        model.Proto.ProducerName = "edgefleet-modeltools";
        model.Proto.MetadataProps.Add(new StringStringEntryProto { Key = "edgefleet.quantization", Value = "dynamic;weights=int8;activations=uint8-runtime" });
        var report = new QuantizationReport("dynamic", done.Count, done.GroupBy(n => n.OpType).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            excluded, 0, 0, inputBytes, model.ToBytes().LongLength) { KeptFloat = QuantizationReport.SubgraphsKeptFloat(model) };
        ServingCheck.Verify(model, sample, "the quantized model", fp32);
        return (model, report);
    }

    private static void Replace(OnnxModel model, NodeProto node, TensorProto weight, Dictionary<string, (string Q, string Scale, string Zero)> quantizedInputs, QuantizationOptions options)
    {
        var transB = node.OpType == "Gemm" && (node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I ?? 0) == 1;
        var w = Tensors.Floats(weight);
        long rows = weight.Dims[0], cols = weight.Dims[1];
        var (k, n) = transB ? (cols, rows) : (rows, cols);
        float At(long r, long c) => transB ? w[c * cols + r] : w[r * cols + c];
        var maxAbs = new float[options.PerChannel ? n : 1];
        for (long r = 0; r < k; r++)
            for (long c = 0; c < n; c++)
                maxAbs[options.PerChannel ? c : 0] = Math.Max(maxAbs[options.PerChannel ? c : 0], Math.Abs(At(r, c)));
        var scales = Array.ConvertAll(maxAbs, QuantMath.SymmetricScale);
        var q = new sbyte[k * n];
        for (long r = 0; r < k; r++)
            for (long c = 0; c < n; c++)
                q[r * n + c] = QuantMath.QuantizeSymmetric(At(r, c), scales[options.PerChannel ? c : 0]);

        var stem = node.Name.Length > 0 ? node.Name : node.Output[0];
        var wq = model.UniqueName($"{weight.Name}_int8");
        var ws = model.UniqueName($"{weight.Name}_scale");
        var wz = model.UniqueName($"{weight.Name}_zero_point");
        model.Graph.Initializer.Add(Tensors.Make(wq, DataType.Int8, q, k, n));
        model.Graph.Initializer.Add(Tensors.FromFloats(ws, scales, scales.Length));
        model.Graph.Initializer.Add(Tensors.Make(wz, DataType.Int8, new sbyte[1]));

        var input = node.Input[0];
        var index = model.Graph.Node.IndexOf(node);
        var added = new List<NodeProto>();
        if (!quantizedInputs.TryGetValue(input, out var xq))
        {
            xq = (model.UniqueName($"{input}_uint8"), model.UniqueName($"{input}_scale"), model.UniqueName($"{input}_zero_point"));
            added.Add(OpsetUpgrade.NewNode("DynamicQuantizeLinear", [input], [xq.Q, xq.Scale, xq.Zero], model.UniqueName($"{input}_DynamicQuantizeLinear")));
            quantizedInputs[input] = xq;
        }
        var product = model.UniqueName($"{stem}_int32");
        var asFloat = model.UniqueName($"{stem}_float");
        var scale = model.UniqueName($"{stem}_output_scale");
        var scaled = node.OpType == "Gemm" && node.Input.Count > 2 && node.Input[2].Length > 0 ? model.UniqueName($"{stem}_scaled") : node.Output[0];
        added.Add(OpsetUpgrade.NewNode("MatMulInteger", [xq.Q, wq, xq.Zero, wz], [product], model.UniqueName($"{stem}_MatMulInteger")));
        added.Add(OpsetUpgrade.NewNode("Cast", [product], [asFloat], model.UniqueName($"{stem}_Cast"), OnnxModelBuilder.IntAttribute("to", (int)DataType.Float)));
        added.Add(OpsetUpgrade.NewNode("Mul", [xq.Scale, ws], [scale], model.UniqueName($"{stem}_ScaleProduct")));
        added.Add(OpsetUpgrade.NewNode("Mul", [asFloat, scale], [scaled], model.UniqueName($"{stem}_Rescale")));
        if (scaled != node.Output[0])
            added.Add(OpsetUpgrade.NewNode("Add", [scaled, node.Input[2]], [node.Output[0]], model.UniqueName($"{stem}_Bias")));
        model.Graph.Node.Remove(node);
        for (var i = 0; i < added.Count; i++)
            model.Graph.Node.Insert(index + i, added[i]);
    }
}
