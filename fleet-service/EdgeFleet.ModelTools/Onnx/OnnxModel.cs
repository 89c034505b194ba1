using EdgeFleet.ModelTools.Onnx.Proto;
using Google.Protobuf;

namespace EdgeFleet.ModelTools.Onnx;

/// <summary>A model file could not be read or written; the message says which part and why.</summary>
public sealed class OnnxFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// An ONNX model in memory: the protobuf message (fields we do not model are kept as unknown fields and
/// written back unchanged) plus the small graph API the quantizer needs. External-data tensors are read into
/// memory on load and written out again on save when a threshold is given.
/// </summary>
public sealed class OnnxModel
{
    public OnnxModel(ModelProto proto)
    {
        Proto = proto;
        if (proto.Graph is null)
            throw new OnnxFormatException("the model has no graph");
    }

    public ModelProto Proto { get; }

    public GraphProto Graph => Proto.Graph;

    /// <summary>The opset version of the default (ai.onnx) domain, or 0 when the model does not import it.</summary>
    public long Opset => Proto.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 0;

    public static OnnxModel Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxFormatException($"cannot read {path}: {e.Message}", e);
        }
        return Parse(bytes, Path.GetDirectoryName(Path.GetFullPath(path)));
    }

    /// <summary>Parses model bytes; <paramref name="externalDataDirectory"/> resolves external-data tensors.</summary>
    public static OnnxModel Parse(ReadOnlySpan<byte> bytes, string? externalDataDirectory = null)
    {
        if (bytes.IsEmpty)
            throw new OnnxFormatException("the file is empty");
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new OnnxFormatException($"not an ONNX model (protobuf: {e.Message})", e);
        }
        if (proto.Graph is null || proto.IrVersion <= 0)
            throw new OnnxFormatException("not an ONNX model (no graph or no IR version)");
        if (proto.Graph.Node.Count == 0)
            throw new OnnxFormatException("the model's graph has no nodes");
        var model = new OnnxModel(proto);
        foreach (var tensor in model.AllTensors().Where(t => t.DataLocation == TensorProto.Types.DataLocation.External))
            ExternalData.Read(tensor, externalDataDirectory ?? throw new OnnxFormatException($"tensor {tensor.Name} has external data but the model was not read from a file"));
        return model;
    }

    /// <summary>
    /// Writes the model. With <paramref name="externalDataThreshold"/>, tensors of at least that many bytes go
    /// to <c>{file}.data</c> beside it (needed above protobuf's 2 GB limit). The write is atomic.
    /// </summary>
    public void Save(string path, long? externalDataThreshold = null)
    {
        var copy = Proto.Clone();
        var full = Path.GetFullPath(path);
        if (externalDataThreshold is { } threshold)
            ExternalData.Write(new OnnxModel(copy).AllTensors(), full, threshold);
        var temp = full + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            copy.WriteTo(file);
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, full, overwrite: true);
    }

    public byte[] ToBytes() => Proto.ToByteArray();

    public OnnxModel Clone() => new(Proto.Clone());

    public TensorProto? Initializer(string name) => Graph.Initializer.FirstOrDefault(t => t.Name == name);

    public bool IsInitializer(string name) => Graph.Initializer.Any(t => t.Name == name);

    /// <summary>Tensor name → the node that produces it (graph inputs and initializers have none).</summary>
    public Dictionary<string, NodeProto> Producers()
    {
        var map = new Dictionary<string, NodeProto>();
        foreach (var node in Graph.Node)
            foreach (var output in node.Output.Where(o => o.Length > 0))
                map[output] = node;
        return map;
    }

    /// <summary>
    /// Tensor name → the nodes that read it: as an input, or from inside one of their subgraphs (an <c>If</c> branch or a
    /// <c>Loop</c> or <c>Scan</c> body reads the tensors of the scope around it by name).
    /// </summary>
    public Dictionary<string, List<NodeProto>> Consumers()
    {
        var map = new Dictionary<string, List<NodeProto>>();
        foreach (var node in Graph.Node)
            foreach (var input in Reads(node).Where(i => i.Length > 0))
            {
                if (!map.TryGetValue(input, out var list))
                    map[input] = list = [];
                if (!list.Contains(node))
                    list.Add(node);
            }
        return map;
    }

    /// <summary>Every tensor a node reads: its inputs, then the outer-scope tensors its subgraphs read (<see cref="OuterReads"/>).</summary>
    public static IEnumerable<string> Reads(NodeProto node) => node.Attribute.Any(IsGraph) ? node.Input.Concat(OuterReads(node)) : node.Input;

    /// <summary>
    /// The names a node's subgraphs read from the scope around the node: read inside (at any depth) and not defined there.
    /// </summary>
    public static IReadOnlySet<string> OuterReads(NodeProto node)
    {
        var reads = new HashSet<string>(StringComparer.Ordinal);
        foreach (var graph in Subgraphs(node))
            reads.UnionWith(OuterReads(graph));
        return reads;
    }

    /// <summary>The graphs a node holds in its attributes (<c>If</c>'s branches, a <c>Loop</c>'s or <c>Scan</c>'s body).</summary>
    public static IEnumerable<GraphProto> Subgraphs(NodeProto node) =>
        node.Attribute.Where(IsGraph).SelectMany(a => a.G is { } g ? a.Graphs.Prepend(g) : a.Graphs);

    /// <summary>
    /// Every name used inside the subgraphs (tensors, node names, subgraph inputs, outputs and initializers): a new
    /// top-level name must not be one of them, since ONNX forbids a subgraph to shadow a name of its outer scope.
    /// </summary>
    public IEnumerable<string> SubgraphNames() => Graph.Node.SelectMany(Subgraphs).SelectMany(NamesIn);

    private static IEnumerable<string> NamesIn(GraphProto graph) =>
        graph.Input.Select(i => i.Name).Concat(graph.Output.Select(o => o.Name)).Concat(graph.Initializer.Select(i => i.Name))
            .Concat(graph.Node.SelectMany(n => n.Input.Concat(n.Output).Append(n.Name)))
            .Concat(graph.Node.SelectMany(Subgraphs).SelectMany(NamesIn));

    /// <summary>Whether any node of the graph has a subgraph.</summary>
    public bool HasSubgraphs => Graph.Node.Any(n => n.Attribute.Any(IsGraph));

    /// <summary>Every node inside the graph's subgraphs, at any depth, with the node that holds it at the top level.</summary>
    public IEnumerable<(NodeProto Holder, NodeProto Node)> SubgraphNodes() =>
        Graph.Node.SelectMany(holder => Inner(holder).Select(node => (holder, node)));

    private static IEnumerable<NodeProto> Inner(NodeProto node) => Subgraphs(node).SelectMany(g => g.Node).SelectMany(n => Inner(n).Prepend(n));

    private static bool IsGraph(AttributeProto a) => a.G is not null || a.Graphs.Count > 0;

    private static HashSet<string> OuterReads(GraphProto graph)
    {
        var defined = graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name))
            .Concat(graph.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        var reads = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            reads.UnionWith(Reads(node).Where(r => r.Length > 0 && !defined.Contains(r)));
        reads.UnionWith(graph.Output.Select(o => o.Name).Where(o => !defined.Contains(o)));
        return reads;
    }

    /// <summary>Element types known for tensors: graph inputs, outputs, value infos and initializers.</summary>
    public Dictionary<string, int> ElementTypes()
    {
        var map = new Dictionary<string, int>();
        foreach (var vi in Graph.Input.Concat(Graph.ValueInfo).Concat(Graph.Output))
            if (vi.Type?.TensorType is { } t && t.HasElemType)
                map[vi.Name] = t.ElemType;
        foreach (var init in Graph.Initializer)
            map[init.Name] = init.DataType;
        return map;
    }

    /// <summary>Graph inputs that are not also initializers (older models list initializers as inputs).</summary>
    public IEnumerable<ValueInfoProto> RealInputs()
    {
        var inits = Graph.Initializer.Select(i => i.Name).ToHashSet();
        return Graph.Input.Where(i => !inits.Contains(i.Name));
    }

    /// <summary>A tensor or node name not yet used in the graph.</summary>
    public string UniqueName(string stem)
    {
        _names ??= Graph.Node.SelectMany(n => n.Input.Concat(n.Output).Append(n.Name))
            .Concat(Graph.Initializer.Select(i => i.Name)).Concat(Graph.Input.Select(i => i.Name)).Concat(SubgraphNames()).ToHashSet();
        var name = stem;
        for (var i = 1; !_names.Add(name); i++)
            name = $"{stem}_{i}";
        return name;
    }

    private HashSet<string>? _names;

    /// <summary>Every tensor in the model: initializers and tensor attributes, in subgraphs too.</summary>
    public IEnumerable<TensorProto> AllTensors() => TensorsOf(Graph);

    private static IEnumerable<TensorProto> TensorsOf(GraphProto graph)
    {
        foreach (var t in graph.Initializer)
            yield return t;
        foreach (var attribute in graph.Node.SelectMany(n => n.Attribute))
        {
            if (attribute.T is { } t)
                yield return t;
            foreach (var ts in attribute.Tensors)
                yield return ts;
            foreach (var g in attribute.Graphs.Prepend(attribute.G).Where(g => g is not null))
                foreach (var inner in TensorsOf(g))
                    yield return inner;
        }
    }
}
