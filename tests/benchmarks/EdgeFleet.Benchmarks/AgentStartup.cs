using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using EdgeFleet.ModelTools.Demo;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// The NativeAOT agent's start-up and footprint: time from process start to READY=1 on a notify socket, and
/// resident memory idling with the demo model loaded, 5 s after start and once settled (by default 90 s:
/// past the first collections and the telemetry log's first checkpoints; RSS read at 5 s alone hid growth). Baselines in the same run: the same binary's
/// <c>--version</c> (process start and exit, nothing else), the agent's idle memory without a model, and ONNX
/// Runtime alone: <c>ort-footprint.c</c>, a C process that loads the same library and model with the same
/// session settings and runs it as the agent's idle loop does (built here with <c>cc</c>; left out without one).
/// </summary>
public static class AgentStartup
{
    public static async Task<int> RunAsync(int runs, int settleSeconds)
    {
        var agent = Environment.GetEnvironmentVariable("EDGEFLEET_AGENT_AOT") ?? FindAgent();
        var dir = Directory.CreateTempSubdirectory("edgefleet-bench-startup-").FullName;
        try
        {
            var modelPath = Path.Combine(dir, "vibration.onnx");
            await File.WriteAllBytesAsync(modelPath, DemoModelTrainer.Train(seed: 42, perClass: 200, epochs: 20).OnnxBytes);
            var version = new List<double>();
            var ready = new List<double>();
            var rssModel = new List<double>();
            var rssModelSettled = new List<double>();
            var rssBare = new List<double>();
            var rssBareSettled = new List<double>();
            var rssOrt = new List<double>();
            var footprint = BuildFootprint(dir);
            for (var i = 0; i < runs; i++)
            {
                version.Add(TimeVersion(agent));
                // The agent with the model and the one without run side by side: each is started and timed to
                // READY on its own, then both idle until their resident sets are read, early and settled.
                await using var withModel = await Running.StartAsync(agent, dir, $"m{i}", modelPath);
                await using var bare = await Running.StartAsync(agent, dir, $"b{i}", null);
                ready.Add(withModel.ReadyMs);
                rssModel.Add(await withModel.RssMbAtAsync(TimeSpan.FromSeconds(5)));
                rssBare.Add(await bare.RssMbAtAsync(TimeSpan.FromSeconds(5)));
                rssModelSettled.Add(await withModel.RssMbAtAsync(TimeSpan.FromSeconds(settleSeconds)));
                rssBareSettled.Add(await bare.RssMbAtAsync(TimeSpan.FromSeconds(settleSeconds)));
                if (footprint is not null)
                    rssOrt.Add(OrtAloneMb(footprint, Path.Combine(Path.GetDirectoryName(agent)!, "libonnxruntime.so"), modelPath));
            }
            var ortLine = rssOrt.Count == 0 ? "  baseline, ONNX Runtime alone:        (no C compiler or ONNX Runtime header: left out)"
                : string.Create(CultureInfo.InvariantCulture,
                    $"  baseline, ONNX Runtime alone (C):   {Median(rssOrt),7:F1} MB   the agent's own share, settled: {Median(rssModelSettled) - Median(rssOrt):F1} MB");
            var binary = new FileInfo(agent).Length / 1e6;
            var settled = Median(rssModelSettled);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                agent-startup: {agent} ({binary:F2} MB), median of {runs}
                  READY=1 after start:                 {Median(ready),7:F1} ms   (target <= 200 ms: {(Median(ready) <= 200 ? "met" : "NOT met")})
                  baseline, --version start to exit:   {Median(version),7:F1} ms   ratio {Median(ready) / Median(version):F1}
                  idle RSS, demo model, {settleSeconds,3} s:      {settled,7:F1} MB   (target <= 50 MB: {(settled <= 50 ? "met" : "NOT met")}); at 5 s {Median(rssModel):F1} MB
                  baseline, without a model, {settleSeconds,3} s: {Median(rssBareSettled),7:F1} MB   ratio {settled / Median(rssBareSettled):F2}; at 5 s {Median(rssBare):F1} MB
                {ortLine}
                  binary without libonnxruntime.so:    {binary,7:F2} MB   (target <= 15 MB: {(binary <= 15 ? "met" : "NOT met")})
                """));
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string FindAgent()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var path = Path.Combine(d.FullName, "artifacts/agent/linux-x64/edgefleet-agent");
            if (File.Exists(path))
                return path;
        }
        throw new InvalidOperationException("no NativeAOT agent: run packaging/publish-agent.sh linux-x64 or set EDGEFLEET_AGENT_AOT");
    }

    private static readonly string[] Compilers = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"];

    /// <summary>Compiles ort-footprint.c against the ONNX Runtime package's C header; null without a compiler or header.</summary>
    private static string? BuildFootprint(string dir)
    {
        var version = System.Xml.Linq.XDocument.Load(Path.Combine(Repo.Root, "Directory.Packages.props")).Descendants("PackageVersion")
            .First(e => (string?)e.Attribute("Include") == "Microsoft.ML.OnnxRuntime").Attribute("Version")!.Value;
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var include = Path.Combine(packages, "microsoft.ml.onnxruntime", version, "build", "native", "include");
        var compiler = Compilers.FirstOrDefault(File.Exists);
        if (compiler is null || !Directory.Exists(include))
            return null;
        var output = Path.Combine(dir, "ort-footprint");
        Repo.Capture(compiler, "-O2", "-I", include, "-o", output, Path.Combine(Repo.Root, "tests/benchmarks/EdgeFleet.Benchmarks/ort-footprint.c"), "-ldl");
        return output;
    }

    private static double OrtAloneMb(string footprint, string library, string model)
    {
        var output = Repo.Capture(footprint, library, model, "features", "1,8", "probabilities");
        var line = output.Split('\n').First(l => l.StartsWith("idle-rss-kb ", StringComparison.Ordinal));
        return double.Parse(line["idle-rss-kb ".Length..], CultureInfo.InvariantCulture) / 1024;
    }

    private static double TimeVersion(string agent)
    {
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(new ProcessStartInfo(agent, "--version") { RedirectStandardOutput = true })!;
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return sw.Elapsed.TotalMilliseconds;
    }

    /// <summary>An agent process started with a notify socket, timed to its READY=1.</summary>
    private sealed class Running : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly Socket _socket;
        private readonly Stopwatch _clock;

        private Running(Process process, Socket socket, Stopwatch clock, double readyMs)
        {
            _process = process;
            _socket = socket;
            _clock = clock;
            ReadyMs = readyMs;
        }

        public double ReadyMs { get; }


        public static async Task<Running> StartAsync(string agent, string dir, string name, string? modelPath)
        {
            var socketPath = Path.Combine(dir, name + ".sock");
            var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(socketPath));
            var config = new JsonObject
            {
                ["deviceId"] = "bench-" + name,
                ["stateDirectory"] = Path.Combine(dir, name),
                ["broker"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = 9 },
                ["ota"] = new JsonObject { ["rootPath"] = Path.Combine(dir, "no-root.json") },
            };
            if (modelPath is not null)
                config["model"] = new JsonObject { ["name"] = "vibration-classifier", ["version"] = "1.0.0", ["path"] = modelPath };
            var configPath = Path.Combine(dir, name + ".json");
            await File.WriteAllTextAsync(configPath, config.ToJsonString());

            var info = new ProcessStartInfo(agent) { RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add("run");
            info.ArgumentList.Add("--config");
            info.ArgumentList.Add(configPath);
            info.Environment["NOTIFY_SOCKET"] = socketPath;
            var clock = Stopwatch.StartNew();
            var process = Process.Start(info)!;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var buffer = new byte[4096];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (!Encoding.UTF8.GetString(buffer, 0, await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)).Contains("READY=1", StringComparison.Ordinal))
            {
            }
            return new Running(process, socket, clock, clock.Elapsed.TotalMilliseconds);
        }

        /// <summary>VmRSS once the process is <paramref name="age"/> old (at once if it is older).</summary>
        public async Task<double> RssMbAtAsync(TimeSpan age)
        {
            if (age - _clock.Elapsed is { TotalMilliseconds: > 0 } wait)
                await Task.Delay(wait);
            var rss = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return double.Parse(rss.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        }

        public async ValueTask DisposeAsync()
        {
            _process.Kill();
            await _process.WaitForExitAsync();
            _process.Dispose();
            _socket.Dispose();
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
