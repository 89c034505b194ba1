using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// NumPy's .npy format (version 1-3, little-endian, C order): float32, float64 (read as float32), int64, int32,
/// uint8 and int8 arrays. Enough for calibration and validation data written by <c>numpy.save</c>.
/// </summary>
public static partial class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static SampleTensor Read(string path, string name)
    {
        var bytes = File.ReadAllBytes(path);
        try
        {
            return Parse(bytes, name);
        }
        catch (FormatException e)
        {
            throw new SampleDataException($"{path}: {e.Message}");
        }
    }

    public static SampleTensor Parse(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 10 || !bytes[..6].SequenceEqual(Magic))
            throw new FormatException("not a .npy file (bad magic)");
        var major = bytes[6];
        var headerLength = major == 1 ? BitConverter.ToUInt16(bytes[8..10]) : (int)BitConverter.ToUInt32(bytes[8..12]);
        var start = major == 1 ? 10 : 12;
        if (start + headerLength > bytes.Length)
            throw new FormatException("truncated header");
        var header = Encoding.Latin1.GetString(bytes.Slice(start, headerLength));
        var descr = Descr().Match(header) is { Success: true } d ? d.Groups[1].Value : throw new FormatException("header has no descr");
        if (FortranTrue().IsMatch(header))
            throw new FormatException("Fortran-ordered arrays are not supported; save with C order");
        var shapeText = ShapeRegex().Match(header) is { Success: true } s ? s.Groups[1].Value : throw new FormatException("header has no shape");
        var shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var data = bytes[(start + headerLength)..];
        var size = descr switch
        {
            "<f4" or "<i4" => 4,
            "<f8" or "<i8" => 8,
            "|u1" or "|i1" => 1,
            _ => throw new FormatException($"element type {descr} is not supported (float32, float64, int64, int32, uint8, int8)"),
        };
        if (data.Length < count * size)
            throw new FormatException($"truncated data: {data.Length} bytes for {count} elements of {size} bytes");
        var raw = data[..(int)(count * size)];
        Array values = descr switch
        {
            "<f4" => MemoryMarshal.Cast<byte, float>(raw).ToArray(),
            "<f8" => Array.ConvertAll(MemoryMarshal.Cast<byte, double>(raw).ToArray(), v => (float)v),
            "<i8" => MemoryMarshal.Cast<byte, long>(raw).ToArray(),
            "<i4" => MemoryMarshal.Cast<byte, int>(raw).ToArray(),
            "|u1" => raw.ToArray(),
            _ => MemoryMarshal.Cast<byte, sbyte>(raw).ToArray(),
        };
        return new SampleTensor(name, shape, values);
    }

    public static void Write(string path, ReadOnlySpan<float> values, params long[] shape)
    {
        var dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}";
        var padded = header.PadRight((header.Length + 11 + 63) / 64 * 64 - 11) + "\n";
        using var file = File.Create(path);
        file.Write(Magic);
        file.Write([1, 0]);
        file.Write(BitConverter.GetBytes((ushort)padded.Length));
        file.Write(Encoding.Latin1.GetBytes(padded));
        file.Write(MemoryMarshal.AsBytes(values));
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex Descr();

    [GeneratedRegex(@"'fortran_order'\s*:\s*True")]
    private static partial Regex FortranTrue();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
