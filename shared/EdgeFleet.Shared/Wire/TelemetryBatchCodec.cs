using System.Buffers;
using System.Buffers.Text;
using System.IO.Compression;
using System.Text.Json;

namespace EdgeFleet.Shared.Wire;

/// <summary>
/// The records field of a <see cref="TelemetryBatch"/>: a JSON array of <see cref="TelemetryRecord"/>,
/// Brotli-compressed. Decoding is bounded (<see cref="Protocol.MaxBatchJsonBytes"/>), so a small payload
/// cannot expand into an unbounded allocation on the fleet.
/// </summary>
public static class TelemetryBatchCodec
{
    public const string Brotli = "br";
    public const string Identity = "identity";

    // Quality 5 with a 64 KiB window: most of Brotli's gain on small JSON batches at a few ms per MB.
    private const int Quality = 5;
    private const int Window = 16;

    /// <summary>A record's stored form: its JSON without the sequence number, which the buffer assigns later.</summary>
    public static byte[] Body(TelemetryRecord record) =>
        JsonSerializer.SerializeToUtf8Bytes(record with { Seq = 0 }, WireJsonContext.Default.TelemetryRecord);

    /// <summary>
    /// Writes the records' JSON array (each body with its sequence number put in front) and compresses it.
    /// Bodies must be JSON objects as <see cref="Body"/> makes them.
    /// </summary>
    public static byte[] Encode(IReadOnlyList<(long Seq, ReadOnlyMemory<byte> Body)> records, string encoding = Brotli)
    {
        var json = new ArrayBufferWriter<byte>(records.Count * 160 + 2);
        Write(json, "["u8);
        Span<byte> digits = stackalloc byte[20];
        for (var i = 0; i < records.Count; i++)
        {
            var (seq, body) = records[i];
            if (body.Length < 2 || body.Span[0] != (byte)'{')
                throw new ArgumentException($"record {seq} is not a JSON object", nameof(records));
            Write(json, i == 0 ? "{\"seq\":"u8 : ",{\"seq\":"u8);
            Utf8Formatter.TryFormat(seq, digits, out var n);
            Write(json, digits[..n]);
            Write(json, body.Length > 2 ? ","u8 : ""u8);
            Write(json, body.Span[1..]);
        }
        Write(json, "]"u8);
        if (encoding == Identity)
            return json.WrittenSpan.ToArray();
        if (encoding != Brotli)
            throw new ArgumentException($"unknown encoding {encoding}", nameof(encoding));
        var compressed = new byte[BrotliEncoder.GetMaxCompressedLength(json.WrittenCount)];
        if (!BrotliEncoder.TryCompress(json.WrittenSpan, compressed, out var written, Quality, Window))
            throw new InvalidOperationException("Brotli compression failed");
        return compressed.AsSpan(0, written).ToArray();
    }

    /// <summary>A batch of records that already carry their sequence numbers (ascending), e.g. from a simulator.</summary>
    public static TelemetryBatch CreateBatch(string deviceId, string streamId, IReadOnlyList<TelemetryRecord> records, long? pendingFrom = null, string encoding = Brotli) => new()
    {
        DeviceId = deviceId,
        StreamId = streamId,
        FirstSeq = records[0].Seq,
        LastSeq = records[^1].Seq,
        Count = records.Count,
        PendingFrom = pendingFrom ?? records[0].Seq,
        Encoding = encoding,
        Records = Encode(records.Select(r => (r.Seq, (ReadOnlyMemory<byte>)Body(r))).ToList(), encoding),
    };

    /// <summary>Decompresses and validates the records of a batch that <see cref="WireReader"/> accepted.</summary>
    public static WireResult<List<TelemetryRecord>> Decode(TelemetryBatch batch)
    {
        byte[]? rented = null;
        try
        {
            ReadOnlySpan<byte> json;
            if (batch.Encoding == Brotli)
            {
                rented = ArrayPool<byte>.Shared.Rent(Protocol.MaxBatchJsonBytes);
                using var decoder = new BrotliDecoder();
                var status = decoder.Decompress(batch.Records, rented.AsSpan(0, Protocol.MaxBatchJsonBytes), out _, out var written);
                if (status == OperationStatus.DestinationTooSmall)
                    return Fail(WireError.TooLarge, $"records expand beyond {Protocol.MaxBatchJsonBytes} bytes");
                if (status != OperationStatus.Done)
                    return Fail(WireError.Malformed, $"records are not a complete Brotli stream ({status})");
                json = rented.AsSpan(0, written);
            }
            else
            {
                json = batch.Records;
            }
            return Validate(batch, json);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static WireResult<List<TelemetryRecord>> Validate(TelemetryBatch batch, ReadOnlySpan<byte> json)
    {
        List<TelemetryRecord>? records;
        try
        {
            records = JsonSerializer.Deserialize(json, WireJsonContext.Default.ListTelemetryRecord);
        }
        catch (JsonException e)
        {
            return Fail(WireError.Malformed, $"records are not valid telemetry: {e.Message.ReplaceLineEndings(" ")}");
        }
        if (records is null || records.Count != batch.Count)
            return Fail(WireError.Invalid, $"batch says {batch.Count} records, holds {records?.Count ?? 0}");
        for (var i = 0; i < records.Count; i++)
        {
            var r = records[i];
            if (r is null)
                return Fail(WireError.Invalid, $"records[{i}] is null");
            if (i > 0 && r.Seq <= records[i - 1].Seq)
                return Fail(WireError.Invalid, $"records[{i}].seq {r.Seq} is not above the previous {records[i - 1].Seq}");
            if (r.Validate(i) is { } error)
                return Fail(WireError.Invalid, error);
        }
        if (records[0].Seq != batch.FirstSeq || records[^1].Seq != batch.LastSeq)
            return Fail(WireError.Invalid, $"records run {records[0].Seq}..{records[^1].Seq}, the batch says {batch.FirstSeq}..{batch.LastSeq}");
        return new WireResult<List<TelemetryRecord>>(records, WireError.None, "");
    }

    private static WireResult<List<TelemetryRecord>> Fail(WireError error, string reason) => WireResult<List<TelemetryRecord>>.Fail(error, reason);

    private static void Write(ArrayBufferWriter<byte> writer, ReadOnlySpan<byte> bytes) => writer.Write(bytes);
}
