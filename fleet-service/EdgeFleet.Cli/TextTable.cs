using System.Globalization;
using System.Text.Json.Nodes;

namespace EdgeFleet.Cli;

/// <summary>
/// A table for the terminal whose columns are as wide as their widest cell, so a long device id or model name never
/// pushes the columns after it out of line. Numbers align right; the last column is not padded.
/// </summary>
internal sealed class TextTable(params string[] headers)
{
    private readonly List<string[]> _rows = [];
    private readonly HashSet<int> _right = [];

    /// <summary>Aligns the given columns (by index) to the right.</summary>
    public TextTable Right(params int[] columns)
    {
        _right.UnionWith(columns);
        return this;
    }

    /// <summary>A row; a null cell prints as "-".</summary>
    public void Add(params object?[] cells) =>
        _rows.Add([.. cells.Select(c => c switch
        {
            null => "-",
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => c.ToString() is { Length: > 0 } text ? text : "-",
        })]);

    public int Count => _rows.Count;

    public void Write(TextWriter writer)
    {
        var widths = headers.Select((h, i) => _rows.Select(r => i < r.Length ? r[i].Length : 0).Append(h.Length).Max()).ToArray();
        foreach (var row in _rows.Prepend(headers))
        {
            var cells = row.Select((cell, i) => i == row.Length - 1 && !_right.Contains(i) ? cell
                : _right.Contains(i) ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]));
            writer.WriteLine(string.Join("  ", cells).TrimEnd());
        }
    }

    /// <summary>An ISO 8601 time from the API as the CLI prints every time: UTC to the second ("2026-12-03 11:45:11Z").</summary>
    public static string Time(JsonNode? value) =>
        value is null ? "-"
        : DateTimeOffset.TryParse(value.ToString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture)
            : value.ToString();
}
