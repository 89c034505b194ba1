using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Pads the channels around a depthwise convolution up to a multiple of <c>multiple</c>, an exact rewrite of the
/// float model. ONNX Runtime's fast int8 depthwise kernels (MLAS's symmetric convolution) take a channel count
/// that is a multiple of 16 on x86 (8 on arm64); any other count falls back to a generic kernel that on
/// PaddleOCR's classifier is 3-6× slower (104 µs against 16 µs in float for 200 channels of 5×5).
/// <para>
/// The channels of a depthwise convolution are tied to the tensors around it: the convolution that produces its
/// input, the element-wise activations, pooling and squeeze-and-excitation gates in between, and the convolution
/// that reads its output. The rewrite finds that region of tensors (all with the same channel count), gives the
/// producing convolutions zero filters for the new channels (so the new channels are 0), the depthwise ones zero
/// filters too, and the reading convolutions zero weights for them (so they contribute nothing). A region that
/// reaches anything else that depends on the channel count (a reshape, a concatenation, a per-channel constant,
/// a graph input or output) is left alone.
/// </para>
/// </summary>
internal static class DepthwisePadding
{
    /// <summary>Ops that work channel by channel and keep the channel count.</summary>
    private static readonly HashSet<string> ChannelWise =
        ["Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "LeakyRelu", "Identity", "GlobalAveragePool", "MaxPool", "AveragePool"];

    public static int Pad(OnnxModel model, int multiple)
    {
        if (multiple <= 1)
            return 0;
        var padded = 0;
        var done = new HashSet<NodeProto>();
        foreach (var conv in model.Graph.Node.Where(n => IsDepthwise(model, n, out _)).ToList())
        {
            if (done.Contains(conv) || !IsDepthwise(model, conv, out var channels) || channels % multiple == 0)
                continue;
            if (Region(model, conv, channels) is not { } region)
                continue;
            var extra = (channels + multiple - 1) / multiple * multiple - channels;
            foreach (var (node, role) in region.Convolutions)
            {
                Widen(model, node, role, channels, extra);
                done.Add(node);
            }
            var tensors = region.Tensors;
            foreach (var info in model.Graph.ValueInfo.Where(v => tensors.Contains(v.Name)).ToList())
                model.Graph.ValueInfo.Remove(info);
            padded++;
        }
        return padded;
    }

    private enum Role
    {
        /// <summary>Writes the region: new zero filters.</summary>
        Producer,

        /// <summary>Reads the region: zero weights for the new input channels.</summary>
        Consumer,

        /// <summary>Depthwise inside the region: new zero filters, one more group each.</summary>
        Depthwise,
    }

    private sealed record ChannelRegion(HashSet<string> Tensors, Dictionary<NodeProto, Role> Convolutions);

    /// <summary>The tensors that must have the depthwise convolution's channel count, and the convolutions at and inside their edge; null when the region cannot be padded.</summary>
    private static ChannelRegion? Region(OnnxModel model, NodeProto start, int channels)
    {
        var producers = new Dictionary<string, NodeProto>();
        foreach (var node in model.Graph.Node)
            foreach (var output in node.Output)
                producers[output] = node;
        var consumers = model.Consumers();
        var graphEnds = model.Graph.Input.Select(i => i.Name).Concat(model.Graph.Output.Select(o => o.Name)).ToHashSet();
        var tensors = new HashSet<string>();
        var convolutions = new Dictionary<NodeProto, Role> { [start] = Role.Depthwise };
        var work = new Stack<string>([start.Input[0], start.Output[0]]);

        bool Claim(NodeProto node, Role role)
        {
            if (convolutions.TryGetValue(node, out var existing))
                return existing == role;
            convolutions[node] = role;
            return true;
        }

        while (work.TryPop(out var tensor))
        {
            if (!tensors.Add(tensor))
                continue;
            if (graphEnds.Contains(tensor) || model.IsInitializer(tensor))
                return null;
            if (!producers.TryGetValue(tensor, out var producer))
                return null;
            // Where the tensor comes from.
            switch (producer.OpType)
            {
                case "Conv" when IsDepthwise(model, producer, out var c) && c == channels:
                    if (!Claim(producer, Role.Depthwise))
                        return null;
                    work.Push(producer.Input[0]);
                    break;
                case "Conv" when Group(producer) == 1 && model.Initializer(producer.Input[1]) is { } w && w.Dims[0] == channels && BiasIsConstant(model, producer):
                    if (!Claim(producer, Role.Producer))
                        return null;
                    break;
                case var op when ChannelWise.Contains(op) && producer.Input.Skip(1).All(i => i.Length == 0 || IsScalar(model, i)):
                    work.Push(producer.Input[0]);
                    break;
                case "Mul" or "Add" when producer.Input.Count == 2:
                    foreach (var input in producer.Input.Where(i => !IsScalar(model, i)))
                        work.Push(input);
                    break;
                default:
                    return null;
            }
            // Where it goes.
            foreach (var consumer in consumers.GetValueOrDefault(tensor) ?? [])
            {
                switch (consumer.OpType)
                {
                    case "Conv" when consumer.Input[0] == tensor && IsDepthwise(model, consumer, out var c) && c == channels:
                        if (!Claim(consumer, Role.Depthwise))
                            return null;
                        work.Push(consumer.Output[0]);
                        break;
                    case "Conv" when consumer.Input[0] == tensor && Group(consumer) == 1 && model.Initializer(consumer.Input[1]) is { } w && w.Dims[1] == channels:
                        if (!Claim(consumer, Role.Consumer))
                            return null;
                        break;
                    case var op when ChannelWise.Contains(op) && consumer.Input[0] == tensor:
                        work.Push(consumer.Output[0]);
                        break;
                    case "Mul" or "Add" when consumer.Input.Count == 2:
                        foreach (var input in consumer.Input.Where(i => !IsScalar(model, i)))
                            work.Push(input);
                        work.Push(consumer.Output[0]);
                        break;
                    default:
                        return null;
                }
            }
        }
        return new ChannelRegion(tensors, convolutions);
    }

    private static void Widen(OnnxModel model, NodeProto conv, Role role, int channels, int extra)
    {
        var weight = model.Initializer(conv.Input[1])!;
        var values = Tensors.Floats(weight);
        var dims = weight.Dims.ToArray();
        float[] widened;
        if (role == Role.Consumer)
        {
            // [M, C, k...] → [M, C + extra, k...], zeros for the new input channels.
            var outputs = (int)dims[0];
            var kernel = values.Length / (outputs * channels);
            widened = new float[outputs * (channels + extra) * kernel];
            for (var o = 0; o < outputs; o++)
                Array.Copy(values, o * channels * kernel, widened, o * (channels + extra) * kernel, channels * kernel);
            dims[1] = channels + extra;
        }
        else
        {
            // [C, k...] → [C + extra, k...], zero filters (and zero biases) for the new output channels.
            widened = new float[values.Length / channels * (channels + extra)];
            Array.Copy(values, widened, values.Length);
            dims[0] = channels + extra;
            if (conv.Input.Count > 2 && conv.Input[2].Length > 0)
            {
                var bias = Tensors.Floats(model.Initializer(conv.Input[2])!);
                Array.Resize(ref bias, channels + extra);
                conv.Input[2] = Add(model, $"{conv.Name}_bias_padded", bias, channels + extra);
            }
            if (role == Role.Depthwise)
            {
                var group = conv.Attribute.First(a => a.Name == "group");
                group.I = channels + extra;
            }
        }
        conv.Input[1] = Add(model, $"{weight.Name}_padded", widened, dims);
    }

    private static string Add(OnnxModel model, string stem, float[] values, params long[] dims)
    {
        var name = model.UniqueName(stem);
        model.Graph.Initializer.Add(Tensors.FromFloats(name, values, dims));
        return name;
    }

    /// <summary>A convolution with one group per channel (and one channel per group) and constant weights.</summary>
    private static bool IsDepthwise(OnnxModel model, NodeProto node, out int channels)
    {
        channels = (int)Group(node);
        return node.OpType == "Conv" && channels > 1 && model.Initializer(node.Input[1]) is { } w && w.Dims.Count >= 3
            && w.Dims[0] == channels && w.Dims[1] == 1 && BiasIsConstant(model, node);
    }

    private static bool BiasIsConstant(OnnxModel model, NodeProto conv) =>
        conv.Input.Count < 3 || conv.Input[2].Length == 0 || model.Initializer(conv.Input[2]) is not null;

    private static long Group(NodeProto node) => node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1;

    private static bool IsScalar(OnnxModel model, string name) => model.Initializer(name) is { } t && Tensors.ElementCount(t) == 1;
}
