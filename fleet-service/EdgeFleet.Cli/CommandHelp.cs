namespace EdgeFleet.Cli;

/// <summary>
/// <c>edgefleet COMMAND --help</c>: the usage text's entries for that command alone, with the notes that apply to all.
/// An entry is a line <c>edgefleet WORDS …</c> and the more indented lines under it; its first line may name several
/// commands (<c>rollout pause|resume|approve</c>, <c>model list | model show</c>). The usage text stays the one list.
/// </summary>
public static class CommandHelp
{
    private const string Entry = "  edgefleet ";

    /// <summary>The entries that name <paramref name="command"/>, then the closing notes; null when none does.</summary>
    public static string? For(string usage, string command)
    {
        var lines = usage.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        var entries = new List<List<string>>();
        var notes = new List<string>();
        var inEntries = false;
        foreach (var line in lines)
        {
            if (line.StartsWith(Entry, StringComparison.Ordinal))
            {
                entries.Add([line]);
                inEntries = true;
            }
            else if (inEntries && line.StartsWith("   ", StringComparison.Ordinal))
            {
                entries[^1].Add(line);
            }
            else if (inEntries)
            {
                notes.Add(line);
            }
        }
        var matching = entries.Where(e => Names(e[0]).Contains(command)).ToList();
        if (matching.Count == 0)
            return null;
        return "Usage:\n" + string.Join('\n', matching.SelectMany(e => e)) + "\n" + string.Join('\n', notes).TrimEnd() + "\n";
    }

    /// <summary>The commands an entry's first line names: "rollout pause|resume" → rollout pause, rollout resume.</summary>
    public static IEnumerable<string> Names(string firstLine)
    {
        foreach (var alternative in firstLine[Entry.Length..].Split(" | "))
        {
            var words = alternative.Trim().Split(' ').TakeWhile(w => w.Length > 0 && !w.StartsWith('-') && !w.StartsWith('[') && !w.StartsWith('(')
                && w.All(c => char.IsLower(c) || c == '-' || c == '|')).ToList();
            if (words.Count == 0)
                continue;
            IEnumerable<string> names = [""];
            foreach (var word in words)
                names = names.SelectMany(prefix => word.Split('|').Select(w => prefix.Length == 0 ? w : prefix + " " + w));
            foreach (var name in names)
                yield return name;
        }
    }
}
