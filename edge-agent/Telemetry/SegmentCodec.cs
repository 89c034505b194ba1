using System.Buffers.Binary;
using System.IO.Compression;
using LiteDB;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>A record as the buffer keeps it: everything but the body lives in memory for the whole buffer.</summary>
internal readonly record struct StoredRecord(long Seq, long TsMillis, TelemetryKind Kind, TelemetryPriority Priority, ReadOnlyMemory<byte> Body)
{
    /// <summary>What the record counts against the byte limit: its body plus its header in the segment.</summary>
    public int Size => Body.Length + SegmentCodec.HeaderBytes;
}

/// <summary>
/// Records of one class committed together are packed into one LiteDB document (a segment), so a group
/// commit of thousands of records is a handful of inserts. Layout per record, little-endian:
/// seq (8) · ts unix ms (8) · kind (1) · priority (1) · body length (4) · body (UTF-8 JSON).
/// The packed records are stored Brotli-compressed (<c>z</c>, with the packed length in <c>n</c>) when that
/// saves space, else as they are (<c>b</c>, also the format of files written before compression): every
/// page a commit writes is flash wear, and a window of similar JSON records shrinks several times.
/// </summary>
internal static class SegmentCodec
{
    public const int HeaderBytes = 22;

    /// <summary>Largest packed segment a document may claim (a group is at most 4 MiB).</summary>
    private const int MaxPackedBytes = 64 * 1024 * 1024;

    // Quality 1: the saturated append rate (tens of thousands of records a second) pays for compression too.
    private const int Quality = 1;
    private const int Window = 22;

    /// <summary>The fields of a segment document holding these records (compressed when that is smaller).</summary>
    public static void Store(BsonDocument doc, IReadOnlyList<StoredRecord> records)
    {
        var packed = Pack(records);
        var compressed = new byte[BrotliEncoder.GetMaxCompressedLength(packed.Length)];
        doc.Remove("b");
        doc.Remove("z");
        doc.Remove("n");
        if (BrotliEncoder.TryCompress(packed, compressed, out var written, Quality, Window) && written < packed.Length * 9L / 10)
        {
            doc["z"] = compressed.AsSpan(0, written).ToArray();
            doc["n"] = packed.Length;
        }
        else
        {
            doc["b"] = packed;
        }
    }

    /// <summary>The records of a segment document; throws <see cref="InvalidDataException"/> for a damaged one.</summary>
    public static List<StoredRecord> Load(BsonDocument doc)
    {
        if (!doc["z"].IsBinary)
            return doc["b"].IsBinary ? Unpack(doc["b"].AsBinary) : throw new InvalidDataException("segment has neither packed nor compressed records");
        var length = doc["n"].IsInt32 ? doc["n"].AsInt32 : -1;
        if (length is < 0 or > MaxPackedBytes)
            throw new InvalidDataException($"segment claims {length} packed bytes");
        var packed = new byte[length];
        if (!BrotliDecoder.TryDecompress(doc["z"].AsBinary, packed, out var written) || written != length)
            throw new InvalidDataException($"segment does not decompress to its {length} bytes");
        return Unpack(packed);
    }

    public static byte[] Pack(IReadOnlyList<StoredRecord> records)
    {
        var size = 0;
        foreach (var r in records)
            size += r.Size;
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        foreach (var r in records)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span, r.Seq);
            BinaryPrimitives.WriteInt64LittleEndian(span[8..], r.TsMillis);
            span[16] = (byte)r.Kind;
            span[17] = (byte)r.Priority;
            BinaryPrimitives.WriteInt32LittleEndian(span[18..], r.Body.Length);
            r.Body.Span.CopyTo(span[HeaderBytes..]);
            span = span[r.Size..];
        }
        return bytes;
    }

    /// <summary>Reads a segment back; throws <see cref="InvalidDataException"/> for a damaged one.</summary>
    public static List<StoredRecord> Unpack(byte[] bytes)
    {
        var records = new List<StoredRecord>();
        var offset = 0;
        while (offset < bytes.Length)
        {
            if (bytes.Length - offset < HeaderBytes)
                throw new InvalidDataException($"segment ends inside a record header at byte {offset}");
            var span = bytes.AsSpan(offset);
            var length = BinaryPrimitives.ReadInt32LittleEndian(span[18..]);
            if (length < 0 || length > span.Length - HeaderBytes)
                throw new InvalidDataException($"record at byte {offset} claims {length} bytes of body, {span.Length - HeaderBytes} are left");
            var kind = (TelemetryKind)span[16];
            var priority = (TelemetryPriority)span[17];
            if (!Enum.IsDefined(kind) || !Enum.IsDefined(priority))
                throw new InvalidDataException($"record at byte {offset} has kind {span[16]} and priority {span[17]}");
            records.Add(new StoredRecord(
                BinaryPrimitives.ReadInt64LittleEndian(span),
                BinaryPrimitives.ReadInt64LittleEndian(span[8..]),
                kind,
                priority,
                bytes.AsMemory(offset + HeaderBytes, length)));
            offset += HeaderBytes + length;
        }
        return records;
    }
}
