using EdgeFleet.ModelTools.Onnx;

namespace EdgeFleet.Tests.Common;

/// <summary>
/// A model as a retraining run that fine-tunes only its head leaves it: the float weights (initializers or Constant
/// nodes) read by the last <c>layers</c> nodes of the graph get small relative updates (Gaussian, <c>scale</c> of each weight); everything
/// else is byte for byte the base's. Written with the project's ONNX writer, as any retrained export would be.
/// </summary>
public static class FineTune
{
    public static byte[] Head(byte[] model, int layers, double scale = 1e-3, int seed = 11)
    {
        var parsed = OnnxModel.Parse(model);
        var graph = parsed.Proto.Graph;
        var head = graph.Node.Skip(Math.Max(0, graph.Node.Count - layers)).SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        var random = new Random(seed);
        var constants = graph.Node.Where(n => n.OpType == "Constant" && n.Output.Count > 0 && head.Contains(n.Output[0]))
            .SelectMany(n => n.Attribute).Where(a => a.T is not null).Select(a => a.T);
        foreach (var tensor in graph.Initializer.Where(t => head.Contains(t.Name)).Concat(constants).Where(t => t.DataType == 1 && t.RawData.Length >= 4))
        {
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
            for (var i = 0; i < values.Length; i++)
            {
                var gaussian = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
                values[i] = (float)(values[i] * (1 + (scale * gaussian)));
            }
            tensor.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        }
        return parsed.ToBytes();
    }
}
