namespace EdgeFleet.Shared.Cli;

/// <summary>
/// A deliberately small parser: a command word, then <c>--name value</c> options and <c>--flag</c> switches.
/// Reflection-free, so it trims and runs under NativeAOT.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, string> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

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
                throw new UsageException($"option --{name} needs a value");
        }
        return line;
    }

    public bool Has(string flag) => _flags.Contains(flag);

    public string? Get(string name) => _options.GetValueOrDefault(name);

    public string Require(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int GetInt(string name, int fallback) =>
        Get(name) is not { } text ? fallback
        : int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value
        : throw new UsageException($"--{name} must be an integer, got '{text}'");

    /// <summary>Fails on options the command does not know, so a typo is not silently ignored.</summary>
    public void AllowOnly(params string[] names)
    {
        foreach (var name in _options.Keys.Concat(_flags))
        {
            if (!names.Contains(name))
                throw new UsageException($"unknown option --{name} for '{Command}'");
        }
    }
}

public sealed class UsageException(string message) : Exception(message);
