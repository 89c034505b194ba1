using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Wire;

/// <summary>
/// <c>ef/v1/{d}/ota/chunk/get</c>: a device asks the fleet for <see cref="Length"/> bytes of the artifact
/// <see cref="Sha256"/> from <see cref="Offset"/>. The answer comes on the device's own <c>ota/chunk/data</c> as a
/// <see cref="ChunkFrame"/>. Requests are idempotent: a device resumes or repeats one freely (after a reconnect,
/// or when an answer is late), so no state is kept between them on either side but the bytes on the device's disk.
/// </summary>
public sealed record ChunkRequest : IWireMessage
{
    /// <summary>Largest range one request may ask for: a frame stays well inside <see cref="Protocol.MaxPayloadBytes"/>.</summary>
    public const int MaxLength = 240 * 1024;

    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    /// <summary>The artifact, by its SHA-256 (64 lowercase hex digits), as the signed manifest names it.</summary>
    public required string Sha256 { get; init; }

    public required long Offset { get; init; }

    public required int Length { get; init; }

    public string? Validate() =>
        !ChunkFrame.IsSha256(Sha256) ? "sha256 must be 64 lowercase hex digits"
        : Offset < 0 ? "offset must not be negative"
        : Length is < 1 or > MaxLength ? $"length must be 1-{MaxLength}"
        : null;
}

/// <summary>What a <see cref="ChunkFrame"/> says about its request.</summary>
public enum ChunkStatus : byte
{
    /// <summary>The frame carries the requested bytes (fewer only at the artifact's end).</summary>
    Data = 0,

    /// <summary>The device's desired state names no artifact with this SHA-256: not for this device.</summary>
    NotAllowed = 1,

    /// <summary>The fleet has no artifact with this SHA-256.</summary>
    Unknown = 2,

    /// <summary>The request is malformed, or its offset lies past the artifact's end.</summary>
    BadRequest = 3,
}

/// <summary>
/// The binary answer on <c>ota/chunk/data</c>: a fixed 53-byte header, then the bytes (or, when the status is not
/// <see cref="ChunkStatus.Data"/>, a UTF-8 reason). Header: <c>"EFC1"</c>, status (1 byte), the artifact's SHA-256
/// (32 bytes), the offset and the artifact's total length (8 bytes each, big-endian). Binary so that a chunk costs
/// its bytes plus 53, not a base64 third more.
/// </summary>
public readonly record struct ChunkFrame(ChunkStatus Status, string Sha256, long Offset, long Total, ReadOnlyMemory<byte> Body)
{
    public const int HeaderBytes = 4 + 1 + 32 + 8 + 8;
    private static ReadOnlySpan<byte> Magic => "EFC1"u8;

    /// <summary>The reason of a refusal (statuses other than <see cref="ChunkStatus.Data"/>).</summary>
    public string Reason => Status == ChunkStatus.Data ? "" : Encoding.UTF8.GetString(Body.Span);

    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    public static bool IsSha256(string? value) =>
        value is { Length: 64 } && value.AsSpan().IndexOfAnyExcept(LowerHex) < 0;

    /// <summary>A data frame: the header, then <paramref name="bytes"/>.</summary>
    public static byte[] Write(string sha256, long offset, long total, ReadOnlySpan<byte> bytes)
    {
        var frame = new byte[HeaderBytes + bytes.Length];
        WriteHeader(frame, ChunkStatus.Data, sha256, offset, total);
        bytes.CopyTo(frame.AsSpan(HeaderBytes));
        return frame;
    }

    /// <summary>A data frame whose bytes the caller fills in: <c>frame[HeaderBytes..]</c>.</summary>
    public static byte[] Allocate(string sha256, long offset, long total, int length)
    {
        var frame = new byte[HeaderBytes + length];
        WriteHeader(frame, ChunkStatus.Data, sha256, offset, total);
        return frame;
    }

    /// <summary>A refusal frame; the reason is cut to 512 bytes.</summary>
    public static byte[] Refuse(ChunkStatus status, string? sha256, long offset, string reason)
    {
        var text = Encoding.UTF8.GetBytes(reason.Length > 512 ? reason[..512] : reason);
        var frame = new byte[HeaderBytes + text.Length];
        WriteHeader(frame, status, IsSha256(sha256) ? sha256! : new string('0', 64), Math.Max(0, offset), 0);
        text.CopyTo(frame.AsSpan(HeaderBytes));
        return frame;
    }

    private static void WriteHeader(Span<byte> frame, ChunkStatus status, string sha256, long offset, long total)
    {
        Magic.CopyTo(frame);
        frame[4] = (byte)status;
        if (Convert.FromHexString(sha256, frame.Slice(5, 32), out _, out var written) != System.Buffers.OperationStatus.Done || written != 32)
            throw new ArgumentException("sha256 must be 64 hex digits", nameof(sha256));
        BinaryPrimitives.WriteInt64BigEndian(frame[37..], offset);
        BinaryPrimitives.WriteInt64BigEndian(frame[45..], total);
    }

    /// <summary>Reads a frame; null (with the reason) for anything that is not one.</summary>
    public static ChunkFrame? TryRead(ReadOnlyMemory<byte> payload, out string? problem)
    {
        var span = payload.Span;
        problem = span.Length < HeaderBytes ? $"{span.Length} bytes, shorter than the {HeaderBytes}-byte header"
            : !span[..4].SequenceEqual(Magic) ? "not a chunk frame (no EFC1 magic)"
            : span[4] > (byte)ChunkStatus.BadRequest ? $"unknown status {span[4]}"
            : null;
        if (problem is not null)
            return null;
        var offset = BinaryPrimitives.ReadInt64BigEndian(span[37..]);
        var total = BinaryPrimitives.ReadInt64BigEndian(span[45..]);
        var status = (ChunkStatus)span[4];
        if (offset < 0 || total < 0 || (status == ChunkStatus.Data && offset + (span.Length - HeaderBytes) > total))
        {
            problem = $"offset {offset} and {span.Length - HeaderBytes} bytes do not fit a total of {total}";
            return null;
        }
        return new ChunkFrame(status, Convert.ToHexStringLower(span.Slice(5, 32)), offset, total, payload[HeaderBytes..]);
    }
}
