using System.Globalization;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Agent.Cli;

/// <summary>
/// <c>edgefleet-agent buffer</c>: opens the telemetry buffer of a stopped agent (the running agent holds an
/// exclusive lock on it), prints what waits in it and what was evicted, and reads every record to check
/// the file. Exit code 0 when the file is consistent, 1 when it is not or cannot be opened.
/// </summary>
public static class BufferCommand
{
    public static int Run(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("config", "json");
        var config = AgentConfigLoader.Load(args.Get("config") ?? AgentConfigLoader.DefaultPath);
        var path = Path.Combine(config.StateDirectory, "telemetry.db");
        if (!File.Exists(path))
        {
            stderr.WriteLine($"error: no telemetry buffer at {path}");
            return 1;
        }
        TelemetryBuffer buffer;
        try
        {
            buffer = new TelemetryBuffer(path, config.Telemetry, TimeProvider.System);
        }
        catch (IOException e)
        {
            stderr.WriteLine($"error: cannot open {path} (is the agent running? stop it first): {e.Message}");
            return 1;
        }
        using (buffer)
        {
            var problems = buffer.Check();
            var evicted = buffer.Evictions;
            if (args.Has("json"))
            {
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{{\"ok\":{(problems.Count == 0 ? "true" : "false")},\"stream\":\"{buffer.StreamId}\",\"lastSeq\":{buffer.LastSeq},\"ackedSeq\":{buffer.AckedSeq},\"records\":{buffer.Count},\"bytes\":{buffer.Bytes},\"evicted\":{evicted.Records},\"problems\":{problems.Count}}}"));
            }
            else
            {
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                    telemetry buffer {path}
                      stream {buffer.StreamId}, last sequence {buffer.LastSeq}, acknowledged up to {buffer.AckedSeq}
                      waiting: {buffer.Count} records, {buffer.Bytes} bytes
                      evicted since the stream began: {evicted.Records} ({evicted.OverCapacity} over capacity, {evicted.Expired} expired)
                    """));
                foreach (var problem in problems)
                    stdout.WriteLine($"  problem: {problem}");
                stdout.WriteLine(problems.Count == 0 ? "ok: every record reads back and matches the index" : $"{problems.Count} problems");
            }
            return problems.Count == 0 ? 0 : 1;
        }
    }
}
