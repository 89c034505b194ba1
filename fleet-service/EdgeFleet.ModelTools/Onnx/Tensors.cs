using System.Runtime.InteropServices;
using EdgeFleet.ModelTools.Onnx.Proto;
using Google.Protobuf;
using DataType = EdgeFleet.ModelTools.Onnx.Proto.TensorProto.Types.DataType;

namespace EdgeFleet.ModelTools.Onnx;

/// <summary>Reading and making initializers (little-endian raw data, as the format specifies).</summary>
public static class Tensors
{
    public static long ElementCount(TensorProto tensor) => tensor.Dims.Aggregate(1L, (a, b) => a * b);

    public static float[] Floats(TensorProto tensor)
    {
        if (tensor.DataType != (int)DataType.Float)
            throw new OnnxFormatException($"tensor {tensor.Name} is {ElementTypeName(tensor.DataType)}, not float");
        if (tensor.HasRawData)
        {
            if (tensor.RawData.Length != ElementCount(tensor) * 4)
                throw new OnnxFormatException($"tensor {tensor.Name}: {tensor.RawData.Length} bytes of raw data for {ElementCount(tensor)} floats");
            return MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
        }
        return [.. tensor.FloatData];
    }

    public static long[] Int64s(TensorProto tensor) => tensor.DataType switch
    {
        (int)DataType.Int64 when tensor.HasRawData => MemoryMarshal.Cast<byte, long>(tensor.RawData.Span).ToArray(),
        (int)DataType.Int64 => [.. tensor.Int64Data],
        (int)DataType.Int32 when tensor.HasRawData => [.. MemoryMarshal.Cast<byte, int>(tensor.RawData.Span).ToArray().Select(i => (long)i)],
        (int)DataType.Int32 => [.. tensor.Int32Data.Select(i => (long)i)],
        _ => throw new OnnxFormatException($"tensor {tensor.Name} is {ElementTypeName(tensor.DataType)}, not an integer type"),
    };

    public static TensorProto Make<T>(string name, DataType type, ReadOnlySpan<T> values, params long[] dims) where T : unmanaged
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)) };
        tensor.Dims.AddRange(dims);
        return tensor;
    }

    public static TensorProto FromFloats(string name, ReadOnlySpan<float> values, params long[] dims) => Make(name, DataType.Float, values, dims);

    public static string ElementTypeName(int type) =>
        Enum.IsDefined(typeof(DataType), type) ? ((DataType)type).ToString().ToLowerInvariant() : $"type {type}";
}
