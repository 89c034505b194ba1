using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace EdgeFleet.Shared.Wire;

/// <summary>Why an incoming payload was refused. Stable: these names reach logs and operators.</summary>
public enum WireError
{
    None,
    Empty,
    TooLarge,
    Malformed,
    UnsupportedVersion,
    Invalid,
    DeviceMismatch,
}

/// <summary>A parsed message, or the reason it was refused.</summary>
public readonly record struct WireResult<T>(T? Message, WireError Error, string Reason)
    where T : class
{
    public bool Ok => Error == WireError.None;

    public static WireResult<T> Fail(WireError error, string reason) => new(null, error, reason);
}

/// <summary>
/// The one way incoming payloads are read: size limit, strict JSON, protocol version, the message's
/// own invariants, and the topic's device id. Never throws for bad input.
/// </summary>
public static class WireReader
{
    public static WireResult<T> Read<T>(ReadOnlySpan<byte> payload, JsonTypeInfo<T> type, string? topicDeviceId = null)
        where T : class, IWireMessage
    {
        if (payload.IsEmpty)
            return WireResult<T>.Fail(WireError.Empty, "payload is empty");
        if (payload.Length > Protocol.MaxPayloadBytes)
            return WireResult<T>.Fail(WireError.TooLarge, $"payload is {payload.Length} bytes, the limit is {Protocol.MaxPayloadBytes}");

        var version = PeekVersion(payload);
        if (version is { } v && v != Protocol.Version)
            return WireResult<T>.Fail(WireError.UnsupportedVersion, $"protocol version {v} is not supported (this side speaks {Protocol.Version})");

        T? message;
        try
        {
            message = JsonSerializer.Deserialize(payload, type);
        }
        catch (JsonException e)
        {
            return WireResult<T>.Fail(WireError.Malformed, $"not a valid {typeof(T).Name}: {OneLine(e.Message)}");
        }
        if (message is null)
            return WireResult<T>.Fail(WireError.Malformed, $"not a valid {typeof(T).Name}: null");
        if (message.V != Protocol.Version)
            return WireResult<T>.Fail(WireError.UnsupportedVersion, $"protocol version {message.V} is not supported (this side speaks {Protocol.Version})");
        if (!DeviceId.IsValid(message.DeviceId))
            return WireResult<T>.Fail(WireError.Invalid, "deviceId is not a valid device id");
        if (topicDeviceId is not null && !string.Equals(topicDeviceId, message.DeviceId, StringComparison.Ordinal))
            return WireResult<T>.Fail(WireError.DeviceMismatch, $"deviceId '{message.DeviceId}' does not match the topic's '{topicDeviceId}'");
        if (message.Validate() is { } reason)
            return WireResult<T>.Fail(WireError.Invalid, reason);
        return new WireResult<T>(message, WireError.None, "");
    }

    public static byte[] Write<T>(T message, JsonTypeInfo<T> type) where T : IWireMessage =>
        JsonSerializer.SerializeToUtf8Bytes(message, type);

    /// <summary>Reads a top-level "v" first, so a future version gets "unsupported", not a schema complaint.</summary>
    private static int? PeekVersion(ReadOnlySpan<byte> payload)
    {
        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 16 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                return null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isVersion = reader.ValueTextEquals("v"u8);
                if (!reader.Read())
                    return null;
                if (isVersion)
                    return reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var v) ? v : null;
                reader.Skip();
            }
        }
        catch (JsonException)
        {
        }
        return null;
    }

    private static string OneLine(string text)
    {
        var line = text.ReplaceLineEndings(" ");
        return line.Length > 200 ? line[..200] + "…" : line;
    }
}
