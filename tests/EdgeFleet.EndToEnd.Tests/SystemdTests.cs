using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The agent as a systemd service, without systemd as PID 1: the unit file checked by systemd-analyze in a
/// scratch root, and the sd_notify protocol against a real datagram socket standing in for systemd's.
/// </summary>
[Collection("processes")]
public partial class SystemdTests(DemoModel model, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<DemoModel>
{
    private static string Unit => Path.Combine(Repo.Root, "packaging/systemd/edgefleet-agent.service");

    [GeneratedRegex(@"Overall exposure level for edgefleet-agent\.service: (\d+\.\d+)")]
    private static partial Regex Exposure();

    [Fact]
    public void The_unit_passes_systemd_analyze_verify_and_scores_low_exposure()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        using var root = new UnitRoot(Unit, Repo.AotAgent, "usr/bin/edgefleet-agent");
        var (verify, verifyOutput) = root.Verify();
        Assert.True(verify == 0, "systemd-analyze verify: " + verifyOutput);
        var (_, security) = Run("systemd-analyze", "security", "--offline=true", $"--root={root.Path}", root.UnitPath);
        var score = double.Parse(Exposure().Match(security).Groups[1].Value, CultureInfo.InvariantCulture);
        output.WriteLine($"systemd-analyze security exposure: {score}");
        Assert.True(score <= 3.0, $"exposure {score} (0 best, 10 worst):\n{security}");

        // The check has teeth: a unit whose binary is missing fails.
        File.Delete(System.IO.Path.Combine(root.Path, "usr/bin/edgefleet-agent"));
        Assert.NotEqual(0, root.Verify().ExitCode);
    }

    [Fact]
    public void The_fleet_service_publishes_self_contained_runs_from_its_folder_and_its_unit_verifies()
    {
        var (publish, published) = Run(Path.Combine(Repo.Root, "packaging/fleet/publish-fleet.sh"), "linux-x64");
        Assert.True(publish == 0, published);
        var folder = published.Trim().Split('\n')[^1];
        Assert.True(File.Exists(Path.Combine(folder, "libcoreclr.so")), "not self-contained: no runtime in " + folder);

        // It runs from its folder alone (no dotnet host) and serves its API.
        var data = Directory.CreateTempSubdirectory("edgefleet-fleet-published-").FullName;
        var http = Repo.FreePort();
        using (var fleet = ChildProcess.Start("fleet", Path.Combine(folder, "edgefleet-fleet"),
            ["--urls", $"http://127.0.0.1:{http}", "--Fleet:Broker:Port", Repo.FreePort().ToString(CultureInfo.InvariantCulture),
             "--Fleet:Storage:Path", Path.Combine(data, "fleet.db"), "--Fleet:Storage:ArtifactsPath", Path.Combine(data, "artifacts")]))
        {
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
            Wait.Until(() =>
            {
                try
                {
                    return client.GetStringAsync(new Uri("/api/health", UriKind.Relative)).Result.Contains("\"brokerConnected\":true", StringComparison.Ordinal);
                }
                catch (AggregateException)
                {
                    return false;
                }
            }, TimeSpan.FromSeconds(60), () => fleet.Output);
        }
        Directory.Delete(data, recursive: true);

        // Its unit verifies in a scratch root with the publish where ExecStart expects it.
        using var root = new UnitRoot(Path.Combine(Repo.Root, "packaging/fleet/edgefleet-fleet.service"), Path.Combine(folder, "edgefleet-fleet"), "opt/edgefleet-fleet/edgefleet-fleet");
        var (verify, verifyOutput) = root.Verify();
        Assert.True(verify == 0, verifyOutput);
    }

    [Fact]
    public async Task The_agent_reports_ready_status_and_watchdog_pings_over_the_notify_socket_and_stopping_on_sigterm()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-notify-").FullName;
        var socketPath = Path.Combine(dir, "notify.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        var config = Path.Combine(dir, "agent.json");
        File.WriteAllText(config, new JsonObject
        {
            ["deviceId"] = "notified",
            ["stateDirectory"] = Path.Combine(dir, "state"),
            ["broker"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = Repo.FreePort() }, // no broker: READY must not wait for one
            ["model"] = new JsonObject { ["name"] = "vibration-classifier", ["version"] = "1.0.0", ["path"] = model.Path },
        }.ToJsonString());

        var aot = File.Exists(Repo.AotAgent);
        var environment = new Dictionary<string, string> { ["NOTIFY_SOCKET"] = socketPath, ["WATCHDOG_USEC"] = "400000" };
        var started = Stopwatch.StartNew();
        using var agent = aot
            ? ChildProcess.Start("agent", Repo.AotAgent, ["run", "--config", config], environment: environment)
            : ChildProcess.Start("agent", "dotnet", [Repo.AgentDll, "run", "--config", config], environment: environment);

        var ready = await ReceiveAsync(socket, m => m.Contains("READY=1", StringComparison.Ordinal), agent);
        output.WriteLine($"READY=1 {started.ElapsedMilliseconds} ms after the process started ({(aot ? "NativeAOT" : "JIT")})");
        Assert.Contains("STATUS=serving vibration-classifier 1.0.0", ready, StringComparison.Ordinal);
        Assert.Contains($"MAINPID={agent.Pid}", ready, StringComparison.Ordinal);

        var pings = Stopwatch.StartNew();
        for (var i = 0; i < 3; i++)
            await ReceiveAsync(socket, m => m.Contains("WATCHDOG=1", StringComparison.Ordinal), agent);
        Assert.True(pings.Elapsed < TimeSpan.FromSeconds(2), $"3 watchdog pings took {pings.Elapsed} at a 0.4 s watchdog");

        agent.Terminate();
        await ReceiveAsync(socket, m => m.Contains("STOPPING=1", StringComparison.Ordinal), agent);
        Assert.Equal(0, agent.WaitForExit(TimeSpan.FromSeconds(10)));
        Directory.Delete(dir, recursive: true);
    }

    private static async Task<string> ReceiveAsync(Socket socket, Func<string, bool> wanted, ChildProcess agent)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (true)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException("no such notification within 20 s; agent output:\n" + agent.Output);
            }
            var message = Encoding.UTF8.GetString(buffer, 0, n);
            if (wanted(message))
                return message;
        }
    }

    /// <summary>Runs a command to its end; a publish (restore, build, self-contained copy) may take minutes on a busy machine.</summary>
    private static (int ExitCode, string Output) Run(string command, params string[] args)
    {
        using var process = ChildProcess.Start(command, command, args);
        return (process.WaitForExit(TimeSpan.FromSeconds(300)), process.Output);
    }

    /// <summary>A scratch root for systemd-analyze: systemd's own units, our unit, and the binary its ExecStart names.</summary>
    private sealed class UnitRoot : IDisposable
    {
        public UnitRoot(string unit, string binary, string binaryPath)
        {
            Assert.True(File.Exists(binary), $"no binary at {binary}: run the publish scripts (scripts/test.sh does)");
            CopyDirectory("/usr/lib/systemd/system", System.IO.Path.Combine(Path, "usr/lib/systemd/system"));
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.Combine(Path, binaryPath))!);
            File.Copy(binary, System.IO.Path.Combine(Path, binaryPath));
            UnitPath = "/etc/systemd/system/" + System.IO.Path.GetFileName(unit);
            Directory.CreateDirectory(System.IO.Path.Combine(Path, "etc/systemd/system"));
            File.Copy(unit, Path + UnitPath);
        }

        public string Path { get; } = Directory.CreateTempSubdirectory("edgefleet-unit-root-").FullName;

        public string UnitPath { get; }

        public (int ExitCode, string Output) Verify() => Run("systemd-analyze", "verify", $"--root={Path}", UnitPath);

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var entry in new DirectoryInfo(from).EnumerateFileSystemInfos())
        {
            var target = Path.Combine(to, entry.Name);
            if (entry.LinkTarget is { } link)
                File.CreateSymbolicLink(target, link);
            else if (entry is DirectoryInfo)
                CopyDirectory(entry.FullName, target);
            else
                File.Copy(entry.FullName, target);
        }
    }
}
