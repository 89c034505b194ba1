using EdgeFleet.ModelTools.Onnx;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Element types of every tensor in a graph, from declared types where the model has them and otherwise by
/// propagating through the operators' type rules (most ops keep their first input's type). The quantizer uses
/// it to leave integer paths (shape arithmetic) alone.
/// </summary>
internal static class TypeInference
{
    public static Dictionary<string, int> Infer(OnnxModel model)
    {
        var types = model.ElementTypes();
        foreach (var node in model.Graph.Node)
        {
            for (var i = 0; i < node.Output.Count; i++)
            {
                if (node.Output[i].Length == 0 || types.ContainsKey(node.Output[i]))
                    continue;
                var first = node.Input.Count > 0 && types.TryGetValue(node.Input[0], out var t) ? t : (int)DataType.Float;
                types[node.Output[i]] = (node.OpType, i) switch
                {
                    ("Shape" or "Size" or "NonZero" or "ArgMax" or "ArgMin" or "NonMaxSuppression", _) => (int)DataType.Int64,
                    ("TopK" or "MaxPool", 1) => (int)DataType.Int64,
                    ("Equal" or "Less" or "Greater" or "LessOrEqual" or "GreaterOrEqual" or "Not" or "And" or "Or" or "Xor" or "IsNaN" or "IsInf", _) => (int)DataType.Bool,
                    ("Cast", _) => (int)(node.Attribute.FirstOrDefault(a => a.Name == "to")?.I ?? first),
                    ("Constant", _) => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T?.DataType ?? (int)DataType.Float,
                    ("ConstantOfShape", _) => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T?.DataType ?? (int)DataType.Float,
                    ("Where", _) => node.Input.Count > 1 && types.TryGetValue(node.Input[1], out var w) ? w : first,
                    ("QuantizeLinear" or "DynamicQuantizeLinear", 0) => node.Input.Count > 2 && types.TryGetValue(node.Input[2], out var z) ? z : (int)DataType.Uint8,
                    ("DequantizeLinear", _) => (int)DataType.Float,
                    _ => first,
                };
            }
        }
        return types;
    }
}
