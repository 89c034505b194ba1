using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using System.Numerics.Tensors;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Evens out the channels of a tensor between two convolutions (Conv A → Conv B, nothing in between) before
/// per-tensor activation quantization, in the manner of cross-layer equalization and SmoothQuant: channel c of
/// A's output is divided by s_c (A's weights and bias for that channel) and B's weights for input channel c are
/// multiplied by s_c, so the float model computes exactly the same. With s_c = √(max|X_c| / max|W_c|), a
/// channel whose activations dwarf the others no longer sets the scale for all of them, and B's per-channel
/// weight scales absorb the difference.
/// </summary>
internal static class ChannelEqualizer
{
    public static int Equalize(OnnxModel model, SampleSet samples, QuantizationOptions options)
    {
        var pairs = Pairs(model);
        if (pairs.Count == 0)
            return 0;
        var ranges = ChannelRanges(model, pairs.Select(p => p.A.Output[0]).ToArray(), samples, options);
        var changed = 0;
        foreach (var (a, b) in pairs)
        {
            if (!ranges.TryGetValue(a.Output[0], out var activation))
                continue;
            var wa = model.Initializer(a.Input[1])!;
            var wb = model.Initializer(b.Input[1])!;
            var weightsA = Tensors.Floats(wa);
            var weightsB = Tensors.Floats(wb);
            var channels = (int)wa.Dims[0];
            if (activation.Length != channels || wb.Dims[1] != channels)
                continue;
            var outB = (int)wb.Dims[0];
            var kernelB = weightsB.Length / (outB * channels);
            var kernelA = weightsA.Length / channels;
            var biasA = a.Input.Count > 2 && a.Input[2].Length > 0 ? Tensors.Floats(model.Initializer(a.Input[2])!) : null;
            var scales = new float[channels];
            for (var c = 0; c < channels; c++)
            {
                var weightMax = 0f;
                for (var o = 0; o < outB; o++)
                    for (var k = 0; k < kernelB; k++)
                        weightMax = Math.Max(weightMax, Math.Abs(weightsB[(o * channels + c) * kernelB + k]));
                scales[c] = activation[c] > 0 && weightMax > 0 ? (float)Math.Clamp(Math.Sqrt(activation[c] / weightMax), 1e-3, 1e3) : 1f;
            }
            for (var c = 0; c < channels; c++)
            {
                for (var k = 0; k < kernelA; k++)
                    weightsA[c * kernelA + k] /= scales[c];
                if (biasA is not null)
                    biasA[c] /= scales[c];
                for (var o = 0; o < outB; o++)
                    for (var k = 0; k < kernelB; k++)
                        weightsB[(o * channels + c) * kernelB + k] *= scales[c];
            }
            Replace(model, a, 1, weightsA, [.. wa.Dims]);
            if (biasA is not null)
                Replace(model, a, 2, biasA, channels);
            Replace(model, b, 1, weightsB, [.. wb.Dims]);
            changed++;
        }
        return changed;
    }

    /// <summary>Conv A whose only reader is a non-grouped Conv B, both with constant weights.</summary>
    private static List<(NodeProto A, NodeProto B)> Pairs(OnnxModel model)
    {
        var consumers = model.Consumers();
        var outputs = model.Graph.Output.Select(o => o.Name).ToHashSet();
        var weightUses = model.Graph.Node.SelectMany(OnnxModel.Reads).GroupBy(i => i).ToDictionary(g => g.Key, g => g.Count());
        var pairs = new List<(NodeProto, NodeProto)>();
        foreach (var a in model.Graph.Node.Where(n => n.OpType == "Conv" && n.Output.Count == 1))
        {
            if (outputs.Contains(a.Output[0]) || consumers.GetValueOrDefault(a.Output[0]) is not [{ OpType: "Conv" } b] || b.Input[0] != a.Output[0])
                continue;
            if ((b.Attribute.FirstOrDefault(x => x.Name == "group")?.I ?? 1) != 1)
                continue;
            if (model.Initializer(a.Input[1]) is null || model.Initializer(b.Input[1]) is null || weightUses[a.Input[1]] > 1 || weightUses[b.Input[1]] > 1
                || (a.Input.Count > 2 && a.Input[2].Length > 0 && (model.Initializer(a.Input[2]) is null || weightUses[a.Input[2]] > 1)))
                continue;
            pairs.Add((a, b));
        }
        return pairs;
    }

    /// <summary>Per-channel (axis 1) largest magnitude of each tensor over the samples.</summary>
    private static Dictionary<string, float[]> ChannelRanges(OnnxModel model, string[] tensors, SampleSet samples, QuantizationOptions options)
    {
        var result = new Dictionary<string, float[]>();
        TensorObserver.Run(model, tensors, samples, options, (name, value) =>
        {
            var shape = value.GetTensorTypeAndShape().Shape;
            if (shape.Length < 2)
                return;
            var values = value.GetTensorDataAsSpan<float>();
            var channels = (int)shape[1];
            var inner = (int)shape.Skip(2).Aggregate(1L, (x, y) => x * y);
            if (!result.TryGetValue(name, out var max))
                result[name] = max = new float[channels];
            for (var n = 0; n < shape[0]; n++)
            {
                for (var c = 0; c < channels; c++)
                {
                    var slice = values.Slice((int)((n * channels + c) * inner), inner);
                    max[c] = Math.Max(max[c], Math.Max(Math.Abs(TensorPrimitives.Min(slice)), Math.Abs(TensorPrimitives.Max(slice))));
                }
            }
        });
        return result;
    }

    private static void Replace(OnnxModel model, NodeProto node, int input, float[] values, params long[] dims)
    {
        var old = model.Initializer(node.Input[input])!;
        var replacement = Tensors.FromFloats(model.UniqueName($"{old.Name}_equalized"), values, dims);
        model.Graph.Initializer[model.Graph.Initializer.IndexOf(old)] = replacement;
        node.Input[input] = replacement.Name;
    }
}
