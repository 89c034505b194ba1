using EdgeFleet.Shared.Ota;

namespace EdgeFleet.ModelTools.Onnx;

/// <summary>
/// Makes model deltas (<see cref="ModelDelta"/>): both methods for a pair of files, keeping the smaller. The
/// ONNX-aware method needs to know where each initializer's raw bytes sit in both files; that is read here from the
/// protobuf wire format directly (offsets, which a parsed message no longer has).
/// </summary>
public static class ModelDeltas
{
    /// <summary>A delta of one method, with its size.</summary>
    public sealed record Candidate(DeltaMethod Method, byte[] Bytes, TimeSpan EncodeTime);

    /// <summary>Every method that applies to the pair, smallest first.</summary>
    public static IReadOnlyList<Candidate> Encode(byte[] baseBytes, byte[] target)
    {
        var candidates = new List<Candidate>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        candidates.Add(new Candidate(DeltaMethod.ZstdPatch, ModelDelta.Encode(baseBytes, target, DeltaMethod.ZstdPatch), clock.Elapsed));
        var segments = Segments(baseBytes, target);
        if (segments.Count > 0)
        {
            clock.Restart();
            candidates.Add(new Candidate(DeltaMethod.XorPlanes, ModelDelta.Encode(baseBytes, target, DeltaMethod.XorPlanes, segments), clock.Elapsed));
        }
        return [.. candidates.OrderBy(c => c.Bytes.Length)];
    }

    /// <summary>Where a raw initializer sits in a model file.</summary>
    public readonly record struct RawInitializer(string Name, long Offset, long Length, byte ElementSize);

    /// <summary>
    /// The target's raw initializers that the base has too, under the same name and with the same byte length:
    /// each predicted by the base's. Empty when either file is not an ONNX model.
    /// </summary>
    public static IReadOnlyList<DeltaSegment> Segments(byte[] baseBytes, byte[] target)
    {
        var inBase = new Dictionary<string, RawInitializer>(StringComparer.Ordinal);
        foreach (var i in RawInitializers(baseBytes))
            inBase.TryAdd(i.Name, i);
        return [.. RawInitializers(target)
            .Where(t => inBase.TryGetValue(t.Name, out var b) && b.Length == t.Length && b.ElementSize == t.ElementSize)
            .Select(t => new DeltaSegment(t.Offset, t.Length, inBase[t.Name].Offset, t.ElementSize))
            .OrderBy(s => s.Offset)];
    }

    /// <summary>
    /// The top graph's weights stored as <c>raw_data</c>, in file order: its initializers, and the values of its
    /// Constant nodes (named <c>node:</c> and the node's output). Empty for anything that is not a model.
    /// </summary>
    public static IReadOnlyList<RawInitializer> RawInitializers(byte[] model)
    {
        var found = new List<RawInitializer>();
        try
        {
            var reader = new Wire(model, 0, model.Length);
            while (reader.Next(out var field, out var type, out var start, out var length))
            {
                if (field != 7 || type != 2)
                    continue; // ModelProto.graph
                var graph = new Wire(model, start, start + length);
                while (graph.Next(out var gField, out var gType, out var tStart, out var tLength))
                {
                    if (gField == 5 && gType == 2 && Tensor(model, tStart, tStart + tLength, null) is { } tensor)
                        found.Add(tensor); // GraphProto.initializer
                    else if (gField == 1 && gType == 2 && ConstantValue(model, tStart, tStart + tLength) is { } constant)
                        found.Add(constant); // a Constant node's value (exporters such as paddle2onnx keep weights there)
                }
            }
        }
        catch (InvalidDataException)
        {
            return [];
        }
        return found;
    }

    /// <summary>The tensor attribute of a node (NodeProto.attribute[].t), named after the node's first output.</summary>
    private static RawInitializer? ConstantValue(byte[] model, long start, long end)
    {
        var reader = new Wire(model, start, end);
        string? output = null;
        (long Start, long End)? value = null;
        while (reader.Next(out var field, out var type, out var at, out var length))
        {
            if (field == 2 && type == 2 && output is null)
                output = System.Text.Encoding.UTF8.GetString(model, (int)at, (int)length);
            else if (field == 5 && type == 2)
            {
                var attribute = new Wire(model, at, at + length);
                while (attribute.Next(out var aField, out var aType, out var tAt, out var tLength))
                {
                    if (aField == 5 && aType == 2)
                        value = (tAt, tAt + tLength);
                }
            }
        }
        return output is not null && value is { } v ? Tensor(model, v.Start, v.End, "node:" + output) : null;
    }

    private static RawInitializer? Tensor(byte[] model, long start, long end, string? nameOverride)
    {
        var reader = new Wire(model, start, end);
        string? name = nameOverride;
        long dataType = 0;
        (long Offset, long Length)? raw = null;
        while (reader.Next(out var field, out var type, out var at, out var length))
        {
            if (field == 2 && type == 0)
                dataType = length; // data_type (a varint: Next returns its value as the length)
            else if (field == 8 && type == 2 && nameOverride is null)
                name = System.Text.Encoding.UTF8.GetString(model, (int)at, (int)length);
            else if (field == 9 && type == 2)
                raw = (at, length);
        }
        byte size = dataType switch
        {
            1 or 6 or 12 => 4, // float, int32, uint32
            7 or 11 or 13 => 8, // int64, double, uint64
            4 or 5 or 10 or 16 => 2, // uint16, int16, float16, bfloat16
            2 or 3 or 9 => 1, // uint8, int8, bool
            _ => 0,
        };
        return name is null || raw is not { } r || size == 0 || r.Length == 0 || r.Length % size != 0 ? null
            : new RawInitializer(name, r.Offset, r.Length, size);
    }

    /// <summary>A cursor over protobuf fields: for a varint field, the value comes back as <c>length</c>.</summary>
    private struct Wire(byte[] data, long position, long end)
    {
        public bool Next(out int field, out int type, out long start, out long length)
        {
            (field, type, start, length) = (0, 0, 0, 0);
            if (position >= end)
                return false;
            var key = Varint();
            field = (int)(key >> 3);
            type = (int)(key & 7);
            switch (type)
            {
                case 0:
                    length = (long)Varint();
                    start = position;
                    return true;
                case 1:
                    start = position;
                    position += 8;
                    break;
                case 2:
                    length = (long)Varint();
                    start = position;
                    if (length < 0 || length > end - position)
                        throw new InvalidDataException("a length-delimited field runs past its message");
                    position += length;
                    return true;
                case 5:
                    start = position;
                    position += 4;
                    break;
                default:
                    throw new InvalidDataException($"wire type {type} is not used by ONNX");
            }
            if (position > end)
                throw new InvalidDataException("a field runs past its message");
            return true;
        }

        private ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (position >= end)
                    throw new InvalidDataException("a varint runs past its message");
                var b = data[position++];
                value |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80)
                    return value;
            }
            throw new InvalidDataException("a varint is longer than 10 bytes");
        }
    }
}
