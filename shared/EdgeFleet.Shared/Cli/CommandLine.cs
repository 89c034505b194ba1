namespace EdgeFleet.Shared.Cli;

/// <summary>
/// A deliberately small parser: a command word, then <c>--name value</c> options and <c>--flag</c> switches.
/// Reflection-free, so it trims and runs under NativeAOT.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, string> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    /// <summary>Options given last with no value: an error when the command knows them, an unknown option when not.</summary>
    private readonly HashSet<string> _bare = new(StringComparer.Ordinal);

    private CommandLine(string command) => Command = command;

    public string Command { get; }

    public static CommandLine Parse(string[] args, IReadOnlySet<string> flagNames)
    {
        var first = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "";
        var line = new CommandLine(first);
        for (var i = first.Length > 0 ? 1 : 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new UsageException($"unexpected argument '{arg}'");
            var name = arg[2..];
            var eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
                line._options[name[..eq]] = name[(eq + 1)..];
            else if (flagNames.Contains(name))
                line._flags.Add(name);
            else if (i + 1 < args.Length)
                line._options[name] = args[++i];
            else
                line._bare.Add(name);
        }
        return line;
    }

    public bool Has(string flag) => _flags.Contains(flag);

    public string? Get(string name) =>
        _bare.Contains(name) ? throw new UsageException($"option --{name} needs a value") : _options.GetValueOrDefault(name);

    public string Require(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int GetInt(string name, int fallback) =>
        Get(name) is not { } text ? fallback
        : int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value
        : throw new UsageException($"--{name} must be an integer, got '{text}'");

    /// <summary>A number (<c>--hours 1.5</c>); one sentence naming the option when it is not one.</summary>
    public double GetDouble(string name, double fallback) => Get(name) is not { } text ? fallback : ParseDouble(name, text);

    /// <summary>A finite number in invariant form, or a usage error naming <paramref name="name"/>.</summary>
    public static double ParseDouble(string name, string text) =>
        double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v)
            && double.IsFinite(v) ? v : throw new UsageException($"--{name} must be a number, got '{text}'");

    /// <summary>Fails on options the command does not know, so a typo is not silently ignored; then on a known one given no value.</summary>
    public void AllowOnly(params string[] names)
    {
        foreach (var name in _options.Keys.Concat(_flags).Concat(_bare))
        {
            if (!names.Contains(name))
                throw new UsageException($"unknown option --{name} for '{Command}'");
        }
        foreach (var name in _bare)
            throw new UsageException($"option --{name} needs a value");
    }
}

public sealed class UsageException(string message) : Exception(message);
