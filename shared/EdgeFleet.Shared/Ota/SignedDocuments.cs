using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace EdgeFleet.Shared.Ota;

/// <summary>Signs trust documents and manifests: the signatures cover the canonical bytes of the body.</summary>
public static class SignedDocuments
{
    /// <summary>Builds the envelope <c>{"signatures":[...],"signed":{...}}</c>, the body in canonical form.</summary>
    public static byte[] Sign<T>(T body, JsonTypeInfo<T> type, IEnumerable<SigningKey> keys)
    {
        using var parsed = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(body, type));
        var canonical = CanonicalJson.Serialize(parsed.RootElement);
        var output = new MemoryStream();
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("signatures");
            foreach (var key in keys)
            {
                writer.WriteStartObject();
                writer.WriteString("keyId", key.KeyId);
                writer.WriteString("sig", Convert.ToBase64String(key.Sign(canonical)));
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WritePropertyName("signed");
            writer.WriteRawValue(canonical, skipInputValidation: true);
            writer.WriteEndObject();
        }
        return output.ToArray();
    }

    /// <summary>
    /// Parses an envelope: strict JSON, then the body's canonical bytes (what the signatures cover) and the
    /// body as <typeparamref name="T"/>. Nothing here is trusted yet; the caller checks the signatures.
    /// </summary>
    public static Verified<Parsed<T>> Parse<T>(ReadOnlyMemory<byte> envelope, JsonTypeInfo<T> type, string typeName, int maxBytes = 256 * 1024)
        where T : class, ISignedBody
    {
        var what = typeName;
        if (envelope.Length == 0)
            return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} is empty");
        if (envelope.Length > maxBytes)
            return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} is {envelope.Length} bytes, the limit is {maxBytes}");
        if (envelope.Span.StartsWith("\uFEFF"u8))
            return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} begins with a byte-order mark; signed documents are plain UTF-8");
        try
        {
            using var document = CanonicalJson.Parse(envelope);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("signed", out var body) || body.ValueKind != JsonValueKind.Object)
                return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} has no signed object");
            if (!root.TryGetProperty("signatures", out var signatures) || signatures.ValueKind != JsonValueKind.Array)
                return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} has no signatures array");
            if (CaseVariant(body) is { } variant)
                return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} has members '{variant.A}' and '{variant.B}', which differ only in case");
            var canonical = CanonicalJson.Serialize(body);
            var parsed = JsonSerializer.Deserialize(canonical, type);
            if (parsed is null)
                return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} body is null");
            if (parsed.Type != typeName)
                return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"expected a {typeName} document, got type '{parsed.Type}'");
            if (parsed.Version < 1)
                return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what}'s version is {parsed.Version}; versions start at 1");
            var sigs = new List<(string KeyId, byte[] Sig)>();
            foreach (var entry in signatures.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object
                    || !entry.TryGetProperty("keyId", out var id) || id.ValueKind != JsonValueKind.String
                    || !entry.TryGetProperty("sig", out var sig) || sig.ValueKind != JsonValueKind.String)
                    return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"a signature of the {what} lacks keyId or sig");
                if (!sig.TryGetBytesFromBase64(out var bytes))
                    return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"a signature of the {what} is not base64");
                sigs.Add((id.GetString()!, bytes));
            }
            return new Verified<Parsed<T>>(new Parsed<T>(parsed, canonical, sigs), null);
        }
        catch (JsonException e)
        {
            return Verified<Parsed<T>>.Fail(OtaError.Malformed, $"the {what} is not valid: {OneLine(e.Message)}");
        }
    }

    /// <summary>Two member names of one object that differ only in case, anywhere in <paramref name="element"/>; null when none.</summary>
    private static (string A, string B)? CaseVariant(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                foreach (var member in element.EnumerateObject())
                {
                    if (!seen.TryAdd(member.Name, member.Name))
                        return (seen[member.Name], member.Name);
                    if (CaseVariant(member.Value) is { } inner)
                        return inner;
                }
                return null;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    if (CaseVariant(item) is { } inner)
                        return inner;
                }
                return null;
            default:
                return null;
        }
    }

    private static string OneLine(string text)
    {
        var line = text.ReplaceLineEndings(" ");
        return line.Length > 200 ? line[..200] + "…" : line;
    }
}

/// <summary>A parsed, not yet verified, signed document.</summary>
public sealed record Parsed<T>(T Body, byte[] Canonical, IReadOnlyList<(string KeyId, byte[] Sig)> Signatures);
