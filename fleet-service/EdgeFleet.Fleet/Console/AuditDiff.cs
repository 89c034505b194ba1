using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeFleet.Fleet.Console;

/// <summary>
/// An audit entry's before and after as a person reads them: for two JSON objects, the fields that changed, one per
/// line (<c>state: open → acknowledged</c>); for anything else, the texts themselves with their line breaks.
/// </summary>
public static class AuditDiff
{
    public static IReadOnlyList<string> Lines(string? before, string? after)
    {
        if (Parse(before) is { } b && Parse(after) is { } a)
        {
            var keys = b.Select(kv => kv.Key).Concat(a.Select(kv => kv.Key)).Distinct(StringComparer.Ordinal);
            return [.. keys.Select(k => (k, Text(b[k]), Text(a[k]))).Where(x => x.Item2 != x.Item3).Select(x => $"{x.k}: {x.Item2} → {x.Item3}")];
        }
        return [.. new[] { before is { Length: > 0 } ? "before: " + Text(before) : null, after is { Length: > 0 } ? "after: " + Text(after) : null }
            .OfType<string>()];
    }

    private static JsonObject? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.TrimStart()[0] != '{')
            return null;
        try
        {
            return JsonNode.Parse(text) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>A value as text: a string without its quotes and escapes, anything else as compact JSON, absence as "–".</summary>
    private static string Text(JsonNode? value) => value switch
    {
        null => "–",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => value.ToJsonString(),
    };

    private static string Text(string raw) => Parse(raw) is { } o ? string.Join(", ", o.Select(kv => $"{kv.Key}: {Text(kv.Value)}")) : raw;
}
