using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Profiles;
using EdgeFleet.Shared.Cli;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.Agent.Cli;

public sealed record LatencySummary(double P50Ms, double P95Ms, double P99Ms, double MeanMs);

public sealed record BenchReport(string Model, int Threads, int Runs, int Warmup, IReadOnlyList<string> Providers,
    Dictionary<string, long[]> InputShapes, LatencySummary Agent, LatencySummary Raw, double RatioP50, double RatioP95);

/// <summary>
/// <c>edgefleet-agent bench --model M</c>: the model through the agent's steady-state path (ModelSession on the
/// hardware profile, pre-allocated input and output tensors) and through plain ONNX Runtime (a session with
/// the same thread count, outputs allocated per run, as an application would write it), in one process,
/// interleaved run by run with the order alternating, on the same random input.
/// </summary>
public static class BenchCommand
{
    public static int Run(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("model", "threads", "runs", "warmup", "shape", "profile", "profiles", "json");
        var path = args.Require("model");
        var threads = args.GetInt("threads", 1);
        var runs = args.GetInt("runs", 200);
        var warmup = args.GetInt("warmup", 20);
        if (threads < 0 || runs < 1 || warmup < 0)
            throw new UsageException("--threads ≥ 0, --runs ≥ 1, --warmup ≥ 0");
        try
        {
            var profile = args.Get("profile") is { } name
                ? HardwareProfiles.Load(Path.Combine(args.Get("profiles") ?? HardwareProfiles.DefaultDirectory, name + ".json"))
                : null;
            using var session = ModelSession.Load(path, threads, profile);
            var shapes = Shapes(args.Get("shape"), session);
            using var agent = new BoundRunner(session, shapes);
            agent.FillRandom(new Random(7));

            using var rawOptions = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
            using var raw = new InferenceSession(path, rawOptions);
            var names = raw.InputMetadata.Keys.ToArray();
            var outputs = raw.OutputMetadata.Keys.ToArray();
            // The same input tensors: ONNX Runtime only reads them.
            var rawInputs = agent.InputValues;
            using var runOptions = new RunOptions();
            void Raw()
            {
                using var result = raw.Run(runOptions, names, rawInputs, outputs);
            }
            for (var i = 0; i < warmup; i++)
            {
                agent.Run();
                Raw();
            }
            var agentMs = new List<double>(runs);
            var rawMs = new List<double>(runs);
            for (var i = 0; i < runs; i++)
            {
                if (i % 2 == 0)
                {
                    agentMs.Add(Time(agent.Run));
                    rawMs.Add(Time(Raw));
                }
                else
                {
                    rawMs.Add(Time(Raw));
                    agentMs.Add(Time(agent.Run));
                }
            }
            var a = Summary(agentMs);
            var r = Summary(rawMs);
            var inputShapes = shapes.Count > 0 ? shapes.ToDictionary() : session.Inputs.ToDictionary(s => s.Name, s => s.Dims);
            var report = new BenchReport(Path.GetFileName(path), threads, runs, warmup, session.Providers.Providers, inputShapes, a, r,
                a.P50Ms / r.P50Ms, a.P95Ms / r.P95Ms);
            stdout.WriteLine(args.Has("json")
                ? JsonSerializer.Serialize(report, BenchJsonContext.Default.BenchReport)
                : $"""
                  {report.Model}: {runs} runs after {warmup} warm-up, {threads} thread(s), on {string.Join(" > ", report.Providers)}
                    agent path      p50 {a.P50Ms:F3} ms  p95 {a.P95Ms:F3} ms  p99 {a.P99Ms:F3} ms
                    ONNX Runtime    p50 {r.P50Ms:F3} ms  p95 {r.P95Ms:F3} ms  p99 {r.P99Ms:F3} ms
                    agent / raw     p50 {report.RatioP50:F3}   p95 {report.RatioP95:F3}
                  """);
            return 0;
        }
        catch (Exception e) when (e is InferenceException or HardwareProfileException or OnnxRuntimeException)
        {
            stderr.WriteLine($"error: {e.Message.Split('\n')[0]}");
            return 1;
        }
    }

    /// <summary><c>--shape x=1x3x48x192[,y=…]</c>; a model with only a symbolic batch dimension gets batch 1.</summary>
    private static Dictionary<string, long[]> Shapes(string? text, ModelSession session)
    {
        var shapes = new Dictionary<string, long[]>();
        foreach (var part in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var (name, dims) = part.Split('=', 2) is [var n, var d] ? (n, d) : throw new UsageException("--shape is NAME=DxDxD[,NAME=…]");
            shapes[name] = [.. dims.Split('x').Select(d => long.TryParse(d, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : throw new UsageException($"--shape {part}: dimensions are positive integers"))];
        }
        foreach (var spec in session.Inputs.Where(s => !shapes.ContainsKey(s.Name)))
        {
            if (spec.Dims.Skip(1).All(d => d >= 0) && spec.Dims.Length > 0 && spec.Dims[0] < 0)
                shapes[spec.Name] = [1, .. spec.Dims.Skip(1)];
        }
        return shapes;
    }

    private static double Time(Action run)
    {
        var start = Stopwatch.GetTimestamp();
        run();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private static LatencySummary Summary(List<double> ms)
    {
        ms.Sort();
        double At(double q) => ms[Math.Min(ms.Count - 1, (int)Math.Ceiling(q * ms.Count) - 1)];
        return new LatencySummary(At(0.50), At(0.95), At(0.99), ms.Average());
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(BenchReport))]
internal sealed partial class BenchJsonContext : JsonSerializerContext;
