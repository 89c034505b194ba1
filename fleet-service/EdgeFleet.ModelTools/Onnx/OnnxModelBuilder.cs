using EdgeFleet.ModelTools.Onnx.Proto;
using Google.Protobuf;

namespace EdgeFleet.ModelTools.Onnx;

/// <summary>
/// Builds a standard ONNX model (default domain, one opset) node by node. Small on purpose: enough for
/// models the project writes itself, such as the demo classifier.
/// </summary>
public sealed class OnnxModelBuilder
{
    public const long IrVersion = 8;

    private readonly ModelProto _model;
    private readonly GraphProto _graph;

    public OnnxModelBuilder(string graphName, long opset = 17)
    {
        _graph = new GraphProto { Name = graphName };
        _model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "edgefleet-modeltools",
            ProducerVersion = typeof(OnnxModelBuilder).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
            Graph = _graph,
        };
        _model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
    }

    /// <summary>Adds a float32 graph input; a null dimension becomes the symbolic "batch".</summary>
    public OnnxModelBuilder Input(string name, params long?[] dims)
    {
        _graph.Input.Add(FloatValueInfo(name, dims));
        return this;
    }

    public OnnxModelBuilder Output(string name, params long?[] dims)
    {
        _graph.Output.Add(FloatValueInfo(name, dims));
        return this;
    }

    public OnnxModelBuilder Initializer(string name, ReadOnlySpan<float> values, params long[] dims)
    {
        var count = dims.Aggregate(1L, (a, b) => a * b);
        if (count != values.Length)
            throw new ArgumentException($"initializer {name}: {values.Length} values do not fill shape [{string.Join(',', dims)}]");
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims);
        // Little-endian raw bytes, as the format specifies.
        tensor.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values));
        _graph.Initializer.Add(tensor);
        return this;
    }

    public OnnxModelBuilder Node(string opType, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = $"{opType}_{_graph.Node.Count}", Domain = "" };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return this;
    }

    public OnnxModelBuilder Metadata(string key, string value)
    {
        _model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return this;
    }

    public OnnxModelBuilder Doc(string text)
    {
        _model.DocString = text;
        return this;
    }

    public ModelProto Build() => _model.Clone();

    public byte[] ToBytes() => _model.ToByteArray();

    public static AttributeProto IntAttribute(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static ValueInfoProto FloatValueInfo(string name, long?[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is { } v ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto
            {
                TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape },
            },
        };
    }
}
