using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EdgeFleet.Shared.Ota;

/// <summary>
/// The canonical form that signatures cover, so that signer and verifier hash the same bytes whatever
/// whitespace, key order or escaping the transport used. The rules (docs/security.md):
/// <list type="bullet">
/// <item>UTF-8, no whitespace outside strings, no byte-order mark.</item>
/// <item>Object members sorted by the UTF-8 bytes of their names; duplicate names are an error.</item>
/// <item>Strings: only <c>"</c>, <c>\</c> and U+0000–U+001F are escaped (<c>\"</c>, <c>\\</c>, <c>\u00xx</c>
///   with lower-case hex); every other character is written as itself; unpaired surrogates are an error.</item>
/// <item>Numbers: integers that fit in 64 bits in plain decimal; any other number as the shortest
///   string that round-trips the IEEE-754 double (.NET "R": <c>0.1</c>, <c>1E-07</c>, <c>1.5E+300</c>).</item>
/// <item><c>true</c>, <c>false</c>, <c>null</c> as themselves; arrays keep their order.</item>
/// </list>
/// </summary>
public static class CanonicalJson
{
    public const int MaxDepth = 32;

    private static readonly JsonDocumentOptions Strict = new()
    {
        MaxDepth = MaxDepth,
        AllowDuplicateProperties = false,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
    };

    /// <summary>Parses JSON strictly: no comments, no trailing commas, no duplicate member names.</summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> json) => JsonDocument.Parse(json, Strict);

    public static byte[] Serialize(JsonElement element)
    {
        var output = new MemoryStream();
        try
        {
            Write(output, element, 0);
        }
        catch (InvalidOperationException e)
        {
            // System.Text.Json refuses to decode unpaired surrogate escapes into a string.
            throw new JsonException(e.Message, e);
        }
        return output.ToArray();
    }

    private static void Write(MemoryStream output, JsonElement element, int depth)
    {
        if (depth > MaxDepth)
            throw new JsonException($"nested deeper than {MaxDepth}");
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var members = new List<(byte[] Name, JsonElement Value)>();
                foreach (var property in element.EnumerateObject())
                    members.Add((Utf8(property.Name), property.Value));
                members.Sort((a, b) => a.Name.AsSpan().SequenceCompareTo(b.Name));
                for (var i = 1; i < members.Count; i++)
                {
                    if (members[i].Name.AsSpan().SequenceEqual(members[i - 1].Name))
                        throw new JsonException($"duplicate member '{Encoding.UTF8.GetString(members[i].Name)}'");
                }
                output.WriteByte((byte)'{');
                for (var i = 0; i < members.Count; i++)
                {
                    if (i > 0)
                        output.WriteByte((byte)',');
                    WriteString(output, members[i].Name);
                    output.WriteByte((byte)':');
                    Write(output, members[i].Value, depth + 1);
                }
                output.WriteByte((byte)'}');
                break;
            case JsonValueKind.Array:
                output.WriteByte((byte)'[');
                var first = true;
                foreach (var item in element.EnumerateArray())
                {
                    if (!first)
                        output.WriteByte((byte)',');
                    first = false;
                    Write(output, item, depth + 1);
                }
                output.WriteByte((byte)']');
                break;
            case JsonValueKind.String:
                WriteString(output, Utf8(element.GetString()!));
                break;
            case JsonValueKind.Number:
                var text = element.TryGetInt64(out var integer)
                    ? integer.ToString(CultureInfo.InvariantCulture)
                    : element.GetDouble().ToString("R", CultureInfo.InvariantCulture);
                output.Write(Encoding.ASCII.GetBytes(text));
                break;
            case JsonValueKind.True:
                output.Write("true"u8);
                break;
            case JsonValueKind.False:
                output.Write("false"u8);
                break;
            case JsonValueKind.Null:
                output.Write("null"u8);
                break;
            default:
                throw new JsonException($"unexpected JSON value kind {element.ValueKind}");
        }
    }

    private static byte[] Utf8(string text)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetBytes(text);
        }
        catch (EncoderFallbackException)
        {
            throw new JsonException("a string contains an unpaired surrogate");
        }
    }

    private static void WriteString(MemoryStream output, ReadOnlySpan<byte> utf8)
    {
        output.WriteByte((byte)'"');
        foreach (var b in utf8)
        {
            switch (b)
            {
                case (byte)'"':
                    output.Write("\\\""u8);
                    break;
                case (byte)'\\':
                    output.Write("\\\\"u8);
                    break;
                case < 0x20:
                    output.Write("\\u00"u8);
                    output.WriteByte((byte)"0123456789abcdef"[b >> 4]);
                    output.WriteByte((byte)"0123456789abcdef"[b & 0xF]);
                    break;
                default:
                    output.WriteByte(b);
                    break;
            }
        }
        output.WriteByte((byte)'"');
    }
}
