namespace EdgeFleet.Fleet;

public static class LogText
{
    /// <summary>Client-supplied text goes into logs only bounded and printable.</summary>
    public static string Sanitize(string? text)
    {
        if (string.IsNullOrEmpty(text))
            return "(empty)";
        var clean = new string(text.Take(128).Select(c => char.IsControl(c) ? '?' : c).ToArray());
        return text.Length > 128 ? clean + "…" : clean;
    }
}
