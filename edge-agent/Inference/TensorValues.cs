using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// JSON numbers to and from tensor elements of every fixed-size type ONNX has, checked on the way in: a float type
/// takes finite values (after rounding to its precision), an integer type whole numbers within its range, bool 0 or 1.
/// </summary>
public static class TensorValues
{
    /// <summary>
    /// Writes <paramref name="values"/> into a tensor's bytes as <paramref name="type"/>; the reason one does not fit, or null.
    /// </summary>
    public static string? Write(TensorElementType type, ReadOnlySpan<double> values, Span<byte> bytes, string input)
    {
        for (var i = 0; i < values.Length; i++)
        {
            var v = values[i];
            switch (type)
            {
                case TensorElementType.Float:
                    var f = (float)v;
                    if (!float.IsFinite(f))
                        return NonFinite(input, f, i);
                    MemoryMarshal.Cast<byte, float>(bytes)[i] = f;
                    break;
                case TensorElementType.Double:
                    if (!double.IsFinite(v))
                        return NonFinite(input, v, i);
                    MemoryMarshal.Cast<byte, double>(bytes)[i] = v;
                    break;
                case TensorElementType.Float16:
                    var h = (Half)v;
                    if (!Half.IsFinite(h))
                        return NonFinite(input, v, i);
                    MemoryMarshal.Cast<byte, Half>(bytes)[i] = h;
                    break;
                case TensorElementType.BFloat16:
                    var b = (float)v;
                    if (!float.IsFinite(b))
                        return NonFinite(input, v, i);
                    MemoryMarshal.Cast<byte, ushort>(bytes)[i] = ToBFloat16(b);
                    break;
                case TensorElementType.Bool:
                    if (v is not (0 or 1))
                        return $"input '{input}' is bool; element {i} is {Text(v)}, not 0 or 1";
                    bytes[i] = (byte)v;
                    break;
                default:
                    if (Range(type) is not { } range)
                        return $"input '{input}' is {TensorSpec.ElementTypeName(type)}, which JSON input does not support";
                    if (v != Math.Floor(v) || v < range.Min || v > range.Max)
                    {
                        return $"input '{input}' is {TensorSpec.ElementTypeName(type)}; element {i} is {Text(v)}, " +
                            $"not a whole number in [{Text(range.Min)}, {Text(range.Max)}]";
                    }
                    WriteInteger(type, bytes, i, v);
                    break;
            }
        }
        return null;
    }

    /// <summary>A tensor's elements as doubles (64-bit integers beyond 2^53 lose their last digits).</summary>
    public static double[]? Read(TensorElementType type, ReadOnlySpan<byte> bytes) => type switch
    {
        TensorElementType.Float => Doubles(MemoryMarshal.Cast<byte, float>(bytes), x => x),
        TensorElementType.Double => MemoryMarshal.Cast<byte, double>(bytes).ToArray(),
        TensorElementType.Float16 => Doubles(MemoryMarshal.Cast<byte, Half>(bytes), x => (double)x),
        TensorElementType.BFloat16 => Doubles(MemoryMarshal.Cast<byte, ushort>(bytes), x => BitConverter.Int32BitsToSingle(x << 16)),
        TensorElementType.Int64 => Doubles(MemoryMarshal.Cast<byte, long>(bytes), x => x),
        TensorElementType.UInt64 => Doubles(MemoryMarshal.Cast<byte, ulong>(bytes), x => x),
        TensorElementType.Int32 => Doubles(MemoryMarshal.Cast<byte, int>(bytes), x => x),
        TensorElementType.UInt32 => Doubles(MemoryMarshal.Cast<byte, uint>(bytes), x => x),
        TensorElementType.Int16 => Doubles(MemoryMarshal.Cast<byte, short>(bytes), x => x),
        TensorElementType.UInt16 => Doubles(MemoryMarshal.Cast<byte, ushort>(bytes), x => x),
        TensorElementType.Int8 => Doubles(MemoryMarshal.Cast<byte, sbyte>(bytes), x => x),
        TensorElementType.UInt8 or TensorElementType.Bool => Doubles(bytes, x => x),
        _ => null,
    };

    private static (double Min, double Max)? Range(TensorElementType type) => type switch
    {
        TensorElementType.Int64 => (long.MinValue, 9.2233720368547748E18), // the largest double below 2^63
        TensorElementType.UInt64 => (0, 1.8446744073709550E19),
        TensorElementType.Int32 => (int.MinValue, int.MaxValue),
        TensorElementType.UInt32 => (0, uint.MaxValue),
        TensorElementType.Int16 => (short.MinValue, short.MaxValue),
        TensorElementType.UInt16 => (0, ushort.MaxValue),
        TensorElementType.Int8 => (sbyte.MinValue, sbyte.MaxValue),
        TensorElementType.UInt8 => (0, byte.MaxValue),
        _ => null,
    };

    private static void WriteInteger(TensorElementType type, Span<byte> bytes, int i, double v)
    {
        switch (type)
        {
            case TensorElementType.Int64: MemoryMarshal.Cast<byte, long>(bytes)[i] = (long)v; break;
            case TensorElementType.UInt64: MemoryMarshal.Cast<byte, ulong>(bytes)[i] = (ulong)v; break;
            case TensorElementType.Int32: MemoryMarshal.Cast<byte, int>(bytes)[i] = (int)v; break;
            case TensorElementType.UInt32: MemoryMarshal.Cast<byte, uint>(bytes)[i] = (uint)v; break;
            case TensorElementType.Int16: MemoryMarshal.Cast<byte, short>(bytes)[i] = (short)v; break;
            case TensorElementType.UInt16: MemoryMarshal.Cast<byte, ushort>(bytes)[i] = (ushort)v; break;
            case TensorElementType.Int8: MemoryMarshal.Cast<byte, sbyte>(bytes)[i] = (sbyte)v; break;
            default: bytes[i] = (byte)v; break;
        }
    }

    /// <summary>Round to nearest even, as ONNX Runtime converts float32 to bfloat16.</summary>
    private static ushort ToBFloat16(float value)
    {
        var bits = (uint)BitConverter.SingleToInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    private static double[] Doubles<T>(ReadOnlySpan<T> values, Func<T, double> convert)
    {
        var result = new double[values.Length];
        for (var i = 0; i < values.Length; i++)
            result[i] = convert(values[i]);
        return result;
    }

    private static string NonFinite(string input, double value, int i) =>
        $"input '{input}' holds a non-finite value ({Text(value)}) at element {i}";

    private static string Text(double value) => value.ToString(CultureInfo.InvariantCulture);
}
