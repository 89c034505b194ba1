using EdgeFleet.Agent.Cli;
using EdgeFleet.Agent;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Identity;

const string Usage = """
    edgefleet-agent: runs models on this device and keeps it in sync with the fleet.

    Usage:
      edgefleet-agent run [--config PATH]          run the agent (the systemd service does this)
      edgefleet-agent infer --model M --input F    run model M on the JSON tensors in F ('-' for stdin)
                            [--threads N]
      edgefleet-agent verify-manifest --manifest M --keyset K [--root R] [--profile P]
                            [--installed N] [--model-id ID] [--artifact F] [--json]
                                                   check a signed manifest (and its model file) as an update would
      edgefleet-agent enroll --fleet URL --token T [--token-file F] [--config PATH] [--json]
                                                   register this device with the fleet (one-time token)
      edgefleet-agent buffer [--config PATH] [--json]
                                                   show and check the telemetry buffer of a stopped agent
      edgefleet-agent bench --model M [--threads N] [--runs N] [--warmup N] [--shape x=1x3x48x192]
                            [--profile P] [--json]
                                                   the model through the agent's path and plain ONNX Runtime, interleaved
      edgefleet-agent profile detect [--profiles DIR] [--root DIR] [--json]
                                                   name the hardware profile that fits this device, with reasons
      edgefleet-agent profile show --name P [--model M] [--profiles DIR] [--json]
                                                   a profile's settings; with a model, the providers it really gets
      edgefleet-agent --version                    print the version
      edgefleet-agent --help                       print this help

    The configuration defaults to /etc/edgefleet/agent.json.
    """;

try
{
    // Two-word commands: "profile detect", "profile show".
    var line = CommandLine.Parse(args is ["profile", var verb, ..] && !verb.StartsWith("--", StringComparison.Ordinal) ? ["profile " + verb, .. args[2..]] : args,
        new HashSet<string> { "help", "version", "json" });
    if (line.Has("version"))
    {
        Console.WriteLine($"edgefleet-agent {AgentRuntime.Version}");
        return 0;
    }
    if (line.Has("help") || line.Command is "" or "help")
    {
        Console.WriteLine(Usage);
        return line.Command is "" && !line.Has("help") ? 2 : 0;
    }
    return line.Command switch
    {
        "run" => await AgentHost.RunAsync(line).ConfigureAwait(false),
        "infer" => InferCommand.Run(line, Console.Out, Console.Error),
        "enroll" => await EnrollCommand.RunAsync(line, Console.Out, Console.Error).ConfigureAwait(false),
        "buffer" => BufferCommand.Run(line, Console.Out, Console.Error),
        "bench" => BenchCommand.Run(line, Console.Out, Console.Error),
        "profile detect" => ProfileCommand.Detect(line, Console.Out, Console.Error),
        "profile show" => ProfileCommand.Show(line, Console.Out, Console.Error),
        "verify-manifest" => await VerifyManifestCommand.RunAsync(line, Console.Out, Console.Error).ConfigureAwait(false),
        _ => throw new UsageException($"unknown command '{line.Command}' (see --help)"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (ConfigException e)
{
    Console.Error.WriteLine($"error: configuration: {e.Message}");
    return 1;
}
