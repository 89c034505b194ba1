using System.Buffers.Binary;
using ZstdSharp.Unsafe;

namespace EdgeFleet.Shared.Ota;

/// <summary>How a delta encodes its target.</summary>
public enum DeltaMethod : byte
{
    /// <summary>
    /// Generic: the target compressed with Zstandard using the base as its prefix (what <c>zstd --patch-from</c>
    /// does): any byte run the two share costs a match, wherever it sits.
    /// </summary>
    ZstdPatch = 1,

    /// <summary>
    /// ONNX-aware: each initializer of the target is XORed with the base's initializer of the same name and size,
    /// then split into byte planes (all first bytes, then all second bytes, ...), and the whole compressed with
    /// Zstandard. A retrained weight changes its low mantissa bits; its sign, exponent and high mantissa bytes XOR
    /// to zero and the planes of zeros cost almost nothing.
    /// </summary>
    XorPlanes = 2,
}

/// <summary>A region of the target predicted by a region of the base (<see cref="DeltaMethod.XorPlanes"/>).</summary>
public readonly record struct DeltaSegment(long Offset, long Length, long BaseOffset, byte ElementSize);

/// <summary>
/// Model deltas: what a device that has one model file needs to rebuild another. Both sides must agree on the
/// format, so it lives here: the fleet encodes (choosing per pair the smaller of the two methods), the agent applies.
/// The delta is not trusted: the signed manifest names its SHA-256 and the target's, and the agent checks the
/// rebuilt file against the target's before it goes anywhere near ONNX Runtime.
/// </summary>
/// <remarks>
/// Layout: <c>"EFD1"</c>, the method (1 byte), the target's length (8 bytes, big-endian), for
/// <see cref="DeltaMethod.XorPlanes"/> the segment count (4 bytes) and the segments (offset, length, base offset:
/// 8 bytes each; element size: 1 byte), then one Zstandard frame.
/// </remarks>
public static class ModelDelta
{
    /// <summary>Largest target a delta may rebuild (the device holds base, delta and target in memory).</summary>
    public const long MaxTargetBytes = 512L << 20;

    private static ReadOnlySpan<byte> Magic => "EFD1"u8;
    private const int HeaderBytes = 4 + 1 + 8;
    private const int SegmentBytes = 8 + 8 + 8 + 1;

    /// <summary>The Zstandard level the fleet encodes with (compression is done once per pair; rebuilding costs the same at any level).</summary>
    public const int Level = 19;

    public static byte[] Encode(ReadOnlySpan<byte> baseBytes, ReadOnlySpan<byte> target, DeltaMethod method, IReadOnlyList<DeltaSegment>? segments = null)
    {
        if (target.Length > MaxTargetBytes)
            throw new ArgumentException($"targets over {MaxTargetBytes} bytes are sent whole", nameof(target));
        segments ??= [];
        if (method == DeltaMethod.XorPlanes && Check(segments, target.Length, baseBytes.Length) is { } problem)
            throw new ArgumentException(problem, nameof(segments));
        byte[] body;
        if (method == DeltaMethod.ZstdPatch)
        {
            body = Compress(target, baseBytes);
        }
        else
        {
            var x = target.ToArray();
            foreach (var s in segments)
            {
                var region = x.AsSpan((int)s.Offset, (int)s.Length);
                Xor(region, baseBytes.Slice((int)s.BaseOffset, (int)s.Length));
                Planes(region, s.ElementSize, split: true);
            }
            body = Compress(x, []);
        }
        var count = method == DeltaMethod.XorPlanes ? segments.Count : 0;
        var header = HeaderBytes + (method == DeltaMethod.XorPlanes ? 4 + (count * SegmentBytes) : 0);
        var delta = new byte[header + body.Length];
        Magic.CopyTo(delta);
        delta[4] = (byte)method;
        BinaryPrimitives.WriteInt64BigEndian(delta.AsSpan(5), target.Length);
        if (method == DeltaMethod.XorPlanes)
        {
            BinaryPrimitives.WriteInt32BigEndian(delta.AsSpan(HeaderBytes), count);
            var at = HeaderBytes + 4;
            foreach (var s in segments)
            {
                BinaryPrimitives.WriteInt64BigEndian(delta.AsSpan(at), s.Offset);
                BinaryPrimitives.WriteInt64BigEndian(delta.AsSpan(at + 8), s.Length);
                BinaryPrimitives.WriteInt64BigEndian(delta.AsSpan(at + 16), s.BaseOffset);
                delta[at + 24] = s.ElementSize;
                at += SegmentBytes;
            }
        }
        body.CopyTo(delta.AsSpan(header));
        return delta;
    }

    /// <summary>The method a delta was encoded with, or null when it is not a delta.</summary>
    public static DeltaMethod? MethodOf(ReadOnlySpan<byte> delta) =>
        delta.Length >= HeaderBytes && delta[..4].SequenceEqual(Magic) && Enum.IsDefined((DeltaMethod)delta[4]) ? (DeltaMethod)delta[4] : null;

    /// <summary>
    /// Rebuilds the target from <paramref name="baseBytes"/>. Throws <see cref="InvalidDataException"/> with the
    /// reason for anything that is not a well-formed delta of a <paramref name="expectedLength"/>-byte target; a
    /// well-formed delta against the wrong base yields other bytes, which the caller's hash check refuses.
    /// </summary>
    public static byte[] Apply(ReadOnlySpan<byte> baseBytes, ReadOnlySpan<byte> delta, long expectedLength)
    {
        if (MethodOf(delta) is not { } method)
            throw new InvalidDataException("not a model delta (no EFD1 header, or an unknown method)");
        var length = BinaryPrimitives.ReadInt64BigEndian(delta[5..]);
        if (length != expectedLength || length < 0 || length > MaxTargetBytes)
            throw new InvalidDataException($"the delta rebuilds {length} bytes; the manifest declares {expectedLength}");
        var at = HeaderBytes;
        List<DeltaSegment> segments = [];
        if (method == DeltaMethod.XorPlanes)
        {
            if (delta.Length < at + 4)
                throw new InvalidDataException("the delta ends inside its segment table");
            var count = BinaryPrimitives.ReadInt32BigEndian(delta[at..]);
            at += 4;
            if (count < 0 || (long)count * SegmentBytes > delta.Length - at)
                throw new InvalidDataException($"the delta's segment table ({count} segments) does not fit in it");
            for (var i = 0; i < count; i++, at += SegmentBytes)
            {
                segments.Add(new DeltaSegment(BinaryPrimitives.ReadInt64BigEndian(delta[at..]), BinaryPrimitives.ReadInt64BigEndian(delta[(at + 8)..]),
                    BinaryPrimitives.ReadInt64BigEndian(delta[(at + 16)..]), delta[at + 24]));
            }
            if (Check(segments, length, baseBytes.Length) is { } problem)
                throw new InvalidDataException(problem);
        }
        var target = Decompress(delta[at..], (int)length, method == DeltaMethod.ZstdPatch ? baseBytes : []);
        foreach (var s in segments)
        {
            var region = target.AsSpan((int)s.Offset, (int)s.Length);
            Planes(region, s.ElementSize, split: false);
            Xor(region, baseBytes.Slice((int)s.BaseOffset, (int)s.Length));
        }
        return target;
    }

    private static string? Check(IReadOnlyList<DeltaSegment> segments, long targetLength, long baseLength)
    {
        long end = 0;
        foreach (var s in segments)
        {
            if (s.ElementSize is not (1 or 2 or 4 or 8) || s.Length <= 0 || s.Length % s.ElementSize != 0)
                return $"a delta segment at {s.Offset} has length {s.Length} and element size {s.ElementSize}";
            if (s.Offset < end || s.Offset > targetLength - s.Length || s.BaseOffset < 0 || s.BaseOffset > baseLength - s.Length)
                return $"a delta segment at {s.Offset} ({s.Length} bytes, base at {s.BaseOffset}) overlaps another or lies outside the files";
            end = s.Offset + s.Length;
        }
        return null;
    }

    private static void Xor(Span<byte> target, ReadOnlySpan<byte> with)
    {
        var vectors = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(target);
        var others = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(with);
        for (var i = 0; i < vectors.Length; i++)
            vectors[i] ^= others[i];
        for (var i = vectors.Length * 8; i < target.Length; i++)
            target[i] ^= with[i];
    }

    /// <summary>Splits elements into byte planes (or joins them back).</summary>
    private static void Planes(Span<byte> region, int elementSize, bool split)
    {
        if (elementSize == 1)
            return;
        var n = region.Length / elementSize;
        var copy = region.ToArray();
        for (var i = 0; i < n; i++)
        {
            for (var b = 0; b < elementSize; b++)
            {
                if (split)
                    region[(b * n) + i] = copy[(i * elementSize) + b];
                else
                    region[(i * elementSize) + b] = copy[(b * n) + i];
            }
        }
    }

    private static int WindowLog(long bytes)
    {
        var log = 10;
        while ((1L << log) < bytes && log < 30)
            log++;
        return log;
    }

    private static unsafe byte[] Compress(ReadOnlySpan<byte> data, ReadOnlySpan<byte> prefix)
    {
        var context = Methods.ZSTD_createCCtx();
        try
        {
            Ok(Methods.ZSTD_CCtx_setParameter(context, ZSTD_cParameter.ZSTD_c_compressionLevel, Level));
            Ok(Methods.ZSTD_CCtx_setParameter(context, ZSTD_cParameter.ZSTD_c_windowLog, WindowLog(data.Length + prefix.Length)));
            Ok(Methods.ZSTD_CCtx_setParameter(context, ZSTD_cParameter.ZSTD_c_enableLongDistanceMatching, 1));
            var output = new byte[(int)Methods.ZSTD_compressBound((nuint)data.Length)];
            fixed (byte* p = prefix)
            fixed (byte* src = data)
            fixed (byte* dst = output)
            {
                if (prefix.Length > 0)
                    Ok(Methods.ZSTD_CCtx_refPrefix(context, p, (nuint)prefix.Length));
                var written = Ok(Methods.ZSTD_compress2(context, dst, (nuint)output.Length, src, (nuint)data.Length));
                return output.AsSpan(0, (int)written).ToArray();
            }
        }
        finally
        {
            Methods.ZSTD_freeCCtx(context);
        }
    }

    private static unsafe byte[] Decompress(ReadOnlySpan<byte> frame, int length, ReadOnlySpan<byte> prefix)
    {
        var context = Methods.ZSTD_createDCtx();
        try
        {
            Ok(Methods.ZSTD_DCtx_setParameter(context, ZSTD_dParameter.ZSTD_d_windowLogMax, 31));
            var output = new byte[length];
            fixed (byte* p = prefix)
            fixed (byte* src = frame)
            fixed (byte* dst = output)
            {
                if (prefix.Length > 0)
                    Ok(Methods.ZSTD_DCtx_refPrefix(context, p, (nuint)prefix.Length));
                var written = Methods.ZSTD_decompressDCtx(context, dst, (nuint)output.Length, src, (nuint)frame.Length);
                if (Methods.ZSTD_isError(written))
                    throw new InvalidDataException($"the delta's Zstandard frame is damaged: {Methods.ZSTD_getErrorName(written)}");
                if ((long)written != length)
                    throw new InvalidDataException($"the delta rebuilds {written} bytes; the manifest declares {length}");
            }
            return output;
        }
        finally
        {
            Methods.ZSTD_freeDCtx(context);
        }
    }

    private static nuint Ok(nuint result) => Methods.ZSTD_isError(result)
        ? throw new InvalidOperationException($"zstd: {Methods.ZSTD_getErrorName(result)}")
        : result;
}
