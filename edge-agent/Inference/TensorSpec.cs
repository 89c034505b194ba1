using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Agent.Inference;

/// <summary>A model input or output as its metadata declares it; -1 marks a symbolic dimension.</summary>
public sealed record TensorSpec(string Name, TensorElementType ElementType, long[] Dims, string[] SymbolicDims)
{
    public static TensorSpec From(string name, NodeMetadata meta) =>
        new(name, meta.IsTensor ? meta.ElementDataType : TensorElementType.DataTypeMax,
            meta.Dimensions.Select(d => (long)d).ToArray(), meta.SymbolicDimensions);

    public string ShapeText => "[" + string.Join(", ", Dims.Select((d, i) => d >= 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : SymbolicName(i))) + "]";

    public string TypeName => ElementTypeName(ElementType);

    /// <summary>The most elements one input may have: what one .NET array can hold, so no count overflows anywhere.</summary>
    public const long MaxElements = int.MaxValue;

    /// <summary>Checks a shape against this spec (rank, dimensions, element count); returns the reason it does not fit, or null.</summary>
    public string? CheckShape(ReadOnlySpan<long> shape)
    {
        if (shape.Length != Dims.Length)
            return $"input '{Name}' has rank {shape.Length}, the model expects {ShapeText}";
        var count = 1L;
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 1)
                return $"input '{Name}' dimension {i} is {shape[i]}; dimensions must be at least 1";
            if (Dims[i] >= 0 && shape[i] != Dims[i])
                return $"input '{Name}' has shape [{string.Join(", ", shape.ToArray())}], the model expects {ShapeText}";
            // Checked before multiplying: count ≤ MaxElements and shape[i] ≤ MaxElements keep the product in range.
            if (shape[i] > MaxElements || count > MaxElements / shape[i])
                return $"input '{Name}' shape [{string.Join(", ", shape.ToArray())}] has more than {MaxElements} elements";
            count *= shape[i];
        }
        return null;
    }

    /// <summary>The number of elements of a shape that <see cref="CheckShape"/> accepted.</summary>
    public static long ElementCount(ReadOnlySpan<long> shape)
    {
        var count = 1L;
        foreach (var d in shape)
            count *= d;
        return count;
    }

    /// <summary>Why a float input holds a value the model must not see (NaN, ±∞, or a value beyond float32's range), or null.</summary>
    public string? CheckFinite(ReadOnlySpan<float> values)
    {
        for (var i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                return $"input '{Name}' holds a non-finite value ({values[i].ToString(System.Globalization.CultureInfo.InvariantCulture)}) at element {i}";
        }
        return null;
    }

    /// <summary>Bytes per element of a fixed-size numeric type; null for strings and non-tensors.</summary>
    public static int? ElementSize(TensorElementType type) => type switch
    {
        TensorElementType.Float or TensorElementType.Int32 or TensorElementType.UInt32 => 4,
        TensorElementType.Double or TensorElementType.Int64 or TensorElementType.UInt64 => 8,
        TensorElementType.Float16 or TensorElementType.BFloat16 or TensorElementType.Int16 or TensorElementType.UInt16 => 2,
        TensorElementType.Int8 or TensorElementType.UInt8 or TensorElementType.Bool => 1,
        _ => null,
    };

    public static string ElementTypeName(TensorElementType type) =>
        type == TensorElementType.DataTypeMax ? "non-tensor" : EdgeFleet.Shared.Ota.TensorTypes.Name((int)type);

    private string SymbolicName(int i) => i < SymbolicDims.Length && !string.IsNullOrEmpty(SymbolicDims[i]) ? SymbolicDims[i] : "?";
}
