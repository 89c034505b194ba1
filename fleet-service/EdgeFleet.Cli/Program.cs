using EdgeFleet.Cli;
using EdgeFleet.Shared.Cli;

const string Usage = """
    edgefleet: the fleet operator's and ML engineer's command line.

    Usage:
      edgefleet model demo --out PATH [--seed N] [--json]   train the demo vibration classifier and write it as ONNX
      edgefleet devices list [--fleet URL] [--json]         list the devices a fleet service knows
      edgefleet --version | --help

    --fleet defaults to $EDGEFLEET_URL, then http://127.0.0.1:5080.
    """;

try
{
    var line = CommandLine.Parse(args.Length >= 2 && !args[1].StartsWith("--", StringComparison.Ordinal) ? [args[0] + " " + args[1], .. args[2..]] : args,
        new HashSet<string> { "help", "version", "json" });
    if (line.Has("version"))
    {
        Console.WriteLine($"edgefleet {typeof(Commands).Assembly.GetName().Version?.ToString(3)}");
        return 0;
    }
    if (line.Has("help") || line.Command is "" or "help")
    {
        Console.WriteLine(Usage);
        return line.Command is "" && !line.Has("help") ? 2 : 0;
    }
    return line.Command switch
    {
        "model demo" => Commands.ModelDemo(line),
        "devices list" => await Commands.DevicesListAsync(line).ConfigureAwait(false),
        _ => throw new UsageException($"unknown command '{line.Command}' (see --help)"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (CommandException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
