using EdgeFleet.ModelTools.Onnx.Proto;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Onnx;

/// <summary>
/// Moves a model's default-domain opset up to a target version (the quantizer needs 13 for per-channel
/// QuantizeLinear/DequantizeLinear), rewriting the operators whose form changed on the way: attributes that
/// became inputs (Clip, Slice, Squeeze, Unsqueeze, Split, ReduceSum, Pad, Dropout) and Softmax's old 2-D
/// semantics. Operators whose meaning changed in ways we do not rewrite are refused by name.
/// </summary>
public static class OpsetUpgrade
{
    private static readonly Dictionary<string, string> Refused = new()
    {
        ["Upsample"] = "Upsample was removed in opset 10; export the model with Resize",
        ["Scatter"] = "Scatter was removed in opset 11; export the model with ScatterElements",
        ["Resize"] = "Resize before opset 11 used different coordinate rules",
        ["TopK"] = "TopK before opset 10 took k as an attribute",
    };

    public static void Upgrade(OnnxModel model, long target)
    {
        var from = model.Opset;
        if (from == 0)
            throw new OnnxFormatException("the model does not import the default ONNX domain");
        if (from >= target)
            return;
        if (from < 7)
            throw new OnnxFormatException($"opset {from} is older than 7, the oldest this tool upgrades");
        foreach (var node in model.Graph.Node.ToList())
        {
            if (node.Domain is not ("" or "ai.onnx"))
                continue;
            if (Refused.TryGetValue(node.OpType, out var why) && (node.OpType != "Resize" || from < 11) && (node.OpType != "TopK" || from < 10))
                throw new OnnxFormatException($"cannot upgrade node {node.Name} from opset {from}: {why}");
            switch (node.OpType)
            {
                case "Clip" when from < 11:
                    AttributesToInputs(model, node, [("min", DataType.Float), ("max", DataType.Float)]);
                    break;
                case "Slice" when from < 10:
                    AttributesToInputs(model, node, [("starts", DataType.Int64), ("ends", DataType.Int64), ("axes", DataType.Int64)]);
                    break;
                case "Pad" when from < 11:
                    AttributesToInputs(model, node, [("pads", DataType.Int64), ("value", DataType.Float)]);
                    break;
                case "Dropout" when from < 12:
                    node.Attribute.Remove(node.Attribute.FirstOrDefault(a => a.Name == "is_test"));
                    AttributesToInputs(model, node, [("ratio", DataType.Float)]);
                    break;
                case "Squeeze" or "Unsqueeze" or "ReduceSum" when from < 13:
                    AttributesToInputs(model, node, [("axes", DataType.Int64)]);
                    break;
                case "Split" when from < 13:
                    AttributesToInputs(model, node, [("split", DataType.Int64)]);
                    break;
                case "BatchNormalization" when from < 9:
                    if (node.Attribute.FirstOrDefault(a => a.Name == "spatial") is { } spatial)
                    {
                        if (spatial.I != 1)
                            throw new OnnxFormatException($"cannot upgrade node {node.Name}: BatchNormalization with spatial=0");
                        node.Attribute.Remove(spatial);
                    }
                    break;
                case "Softmax" or "LogSoftmax" or "Hardmax" when from < 13:
                    KeepTwoDimensionalSemantics(model, node);
                    break;
            }
        }
        model.Proto.OpsetImport.First(o => o.Domain is "" or "ai.onnx").Version = target;
        if (model.Proto.IrVersion < 7)
            model.Proto.IrVersion = 7;
    }

    /// <summary>Moves attributes, in the operator's input order, to constant inputs ("" where absent).</summary>
    private static void AttributesToInputs(OnnxModel model, NodeProto node, (string Name, DataType Type)[] order)
    {
        var names = new List<string>();
        foreach (var (name, type) in order)
        {
            var attribute = node.Attribute.FirstOrDefault(a => a.Name == name);
            if (attribute is null)
            {
                names.Add("");
                continue;
            }
            node.Attribute.Remove(attribute);
            var tensorName = model.UniqueName($"{node.Name}_{name}");
            model.Graph.Initializer.Add(type == DataType.Float
                ? Tensors.FromFloats(tensorName, [attribute.F])
                : Tensors.Make<long>(tensorName, DataType.Int64, attribute.Ints.ToArray(), attribute.Ints.Count));
            names.Add(tensorName);
        }
        while (names.Count > 0 && names[^1].Length == 0)
            names.RemoveAt(names.Count - 1);
        while (node.Input.Count > 1)
            node.Input.RemoveAt(node.Input.Count - 1);
        node.Input.AddRange(names);
    }

    /// <summary>
    /// Before opset 13 these operators flattened their input to 2-D at <c>axis</c> (default 1); from 13 they act
    /// on one axis (default -1). Flatten, apply on axis 1, and reshape back keeps the old meaning exactly.
    /// </summary>
    private static void KeepTwoDimensionalSemantics(OnnxModel model, NodeProto node)
    {
        var axisAttribute = node.Attribute.FirstOrDefault(a => a.Name == "axis");
        var axis = axisAttribute?.I ?? 1;
        if (axisAttribute is not null)
            node.Attribute.Remove(axisAttribute);
        var input = node.Input[0];
        var output = node.Output[0];
        var shape = model.UniqueName($"{node.Name}_shape");
        var flat = model.UniqueName($"{node.Name}_2d");
        var result = model.UniqueName($"{node.Name}_out2d");
        var index = model.Graph.Node.IndexOf(node);
        model.Graph.Node.Insert(index, NewNode("Shape", [input], [shape], model.UniqueName($"{node.Name}_Shape")));
        model.Graph.Node.Insert(index + 1, NewNode("Flatten", [input], [flat], model.UniqueName($"{node.Name}_Flatten"), OnnxModelBuilder.IntAttribute("axis", axis)));
        node.Input[0] = flat;
        node.Output[0] = result;
        node.Attribute.Add(OnnxModelBuilder.IntAttribute("axis", 1));
        model.Graph.Node.Insert(index + 3, NewNode("Reshape", [result, shape], [output], model.UniqueName($"{node.Name}_Reshape")));
    }

    internal static NodeProto NewNode(string op, string[] inputs, string[] outputs, string name, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name, Domain = "" };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        return node;
    }
}
