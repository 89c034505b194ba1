namespace EdgeFleet.Fleet.Devices;

/// <summary>
/// A query over device tags, in the label-selector syntax operators know from Kubernetes: clauses joined by
/// commas, all of which must hold. <c>site=berlin</c> (or <c>==</c>), <c>site!=berlin</c> (also true when the
/// device has no <c>site</c>), <c>region in (eu,us)</c>, <c>tier notin (lab)</c>, <c>customer</c> (has the tag),
/// <c>!canary</c> (lacks it). The empty selector matches every device.
/// </summary>
public sealed class TagSelector
{
    public const int MaxLength = 1024;

    private readonly IReadOnlyList<Clause> _clauses;

    private TagSelector(string text, IReadOnlyList<Clause> clauses) => (Text, _clauses) = (text, clauses);

    /// <summary>The selector as written (trimmed).</summary>
    public string Text { get; }

    public bool Matches(IReadOnlyDictionary<string, string> tags) => _clauses.All(c => c.Matches(tags));

    /// <summary>Parses a selector; <paramref name="error"/> names the offending clause when it does not parse.</summary>
    public static bool TryParse(string? text, out TagSelector selector, out string? error)
    {
        selector = new TagSelector("", []);
        error = null;
        text = text?.Trim() ?? "";
        if (text.Length > MaxLength)
        {
            error = $"a selector is at most {MaxLength} characters";
            return false;
        }
        var clauses = new List<Clause>();
        foreach (var part in SplitTopLevel(text))
        {
            if (!TryParseClause(part.Trim(), out var clause, out error))
                return false;
            clauses.Add(clause);
        }
        selector = new TagSelector(text, clauses);
        return true;
    }

    private static bool TryParseClause(string s, out Clause clause, out string? error)
    {
        clause = default;
        error = null;
        if (s.Length == 0)
            return Fail("an empty clause (two commas, or a comma at an end)", out error);
        if (s[0] == '!' && !s.Contains('='))
        {
            var key = s[1..].Trim();
            if (!IsKey(key))
                return Fail($"'{s}': '!' must be followed by a tag name", out error);
            clause = new Clause(key, Op.Absent, []);
            return true;
        }
        var ne = s.IndexOf("!=", StringComparison.Ordinal);
        if (ne > 0)
            return Simple(s, s[..ne], s[(ne + 2)..], Op.NotEqual, out clause, out error);
        var eq = s.IndexOf('=');
        if (eq > 0)
        {
            var value = s[(eq + 1)..];
            return Simple(s, s[..eq], value.StartsWith('=') ? value[1..] : value, Op.Equal, out clause, out error);
        }
        var open = s.IndexOf('(');
        if (open > 0)
        {
            var head = s[..open].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (head.Length != 2 || head[1] is not ("in" or "notin") || !IsKey(head[0]) || !s.EndsWith(')'))
                return Fail($"'{s}': expected 'key in (a,b)' or 'key notin (a,b)'", out error);
            var values = s[(open + 1)..^1].Split(',', StringSplitOptions.TrimEntries);
            if (values.Any(v => v.Length == 0 || v.Contains('(') || v.Contains(')')))
                return Fail($"'{s}': the value list has an empty or malformed value", out error);
            clause = new Clause(head[0], head[1] == "in" ? Op.In : Op.NotIn, values);
            return true;
        }
        if (!IsKey(s))
            return Fail($"'{s}' is not a tag name, 'key=value', 'key!=value', 'key in (..)', 'key notin (..)' or '!key'", out error);
        clause = new Clause(s, Op.Exists, []);
        return true;
    }

    private static bool Simple(string s, string key, string value, Op op, out Clause clause, out string? error)
    {
        clause = default;
        key = key.Trim();
        value = value.Trim();
        if (!IsKey(key))
            return Fail($"'{s}': '{key}' is not a tag name (1-64 of letters, digits, '-', '_', '.')", out error);
        if (value.IndexOfAny(['=', '!', '(', ')']) >= 0)
            return Fail($"'{s}': the value may not contain '=', '!', '(' or ')'", out error);
        clause = new Clause(key, op, [value]);
        error = null;
        return true;
    }

    private static bool Fail(string message, out string? error)
    {
        error = message;
        return false;
    }

    /// <summary>Tag names as <see cref="Identity.IdentityApi.ValidateTags"/> allows them.</summary>
    public static bool IsKey(string key) =>
        key.Length is > 0 and <= 64 && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    /// <summary>Splits at commas outside parentheses; no clauses for an empty selector.</summary>
    private static IEnumerable<string> SplitTopLevel(string text)
    {
        if (text.Length == 0)
            yield break;
        var depth = 0;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '(')
                depth++;
            else if (text[i] == ')')
                depth--;
            else if (text[i] == ',' && depth == 0)
            {
                yield return text[start..i];
                start = i + 1;
            }
        }
        yield return text[start..];
    }

    private enum Op
    {
        Equal,
        NotEqual,
        In,
        NotIn,
        Exists,
        Absent,
    }

    private readonly record struct Clause(string Key, Op Op, string[] Values)
    {
        public bool Matches(IReadOnlyDictionary<string, string> tags)
        {
            var has = tags.TryGetValue(Key, out var value);
            return Op switch
            {
                Op.Equal or Op.In => has && Values.Contains(value, StringComparer.Ordinal),
                Op.NotEqual or Op.NotIn => !has || !Values.Contains(value, StringComparer.Ordinal),
                Op.Exists => has,
                _ => !has,
            };
        }
    }
}
