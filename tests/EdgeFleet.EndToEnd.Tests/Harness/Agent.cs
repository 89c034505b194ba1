using System.Text.Json.Nodes;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>An edge agent process with its own configuration and state directory.</summary>
public sealed class Agent : IDisposable
{
    private readonly string _configPath;
    private readonly bool _aot;
    private readonly IReadOnlyDictionary<string, string>? _environment;
    private readonly ImpairedLink? _link;
    private ChildProcess _process;

    /// <param name="configure">Changes to the generated configuration (telemetry limits, log level, input rate).</param>
    /// <remarks>The agent enrolls with <paramref name="fleet"/> (a fresh one-time token) before it starts, as a field engineer would.</remarks>
    /// <param name="environment">Extra environment of the agent process (not of its commands), e.g. <see cref="FakeClock"/>'s.</param>
    public Agent(string directory, string deviceId, Fleet fleet, string modelPath, string condition, bool aot = false, JsonObject? ota = null,
        Action<JsonObject>? configure = null, IReadOnlyDictionary<string, string>? environment = null, ImpairedLink? link = null)
    {
        _environment = environment;
        _link = link;
        var brokerPort = fleet.BrokerPort;
        DeviceId = deviceId;
        _aot = aot;
        StateDirectory = Path.Combine(directory, deviceId);
        Directory.CreateDirectory(StateDirectory);
        _configPath = Path.Combine(StateDirectory, "agent.json");
        var config = new JsonObject
        {
            ["deviceId"] = deviceId,
            ["stateDirectory"] = StateDirectory,
            ["broker"] = new JsonObject { ["host"] = link?.HostAddress ?? "127.0.0.1", ["port"] = brokerPort, ["maxReconnectSeconds"] = 2 },
            ["model"] = new JsonObject { ["name"] = "vibration-classifier", ["version"] = "1.0.0", ["path"] = modelPath },
            ["input"] = new JsonObject { ["kind"] = "demoVibration", ["condition"] = condition, ["rateHz"] = 20 },
            // Tests want telemetry in seconds: a 1 s commit window instead of the default 10 s (flash wear is not a concern here).
            ["telemetry"] = new JsonObject { ["maxBatchAgeSeconds"] = 0.2, ["healthIntervalSeconds"] = 2, ["commitWindowSeconds"] = 1 },
        };
        if (ota is not null)
            config["ota"] = ota;
        configure?.Invoke(config);
        File.WriteAllText(_configPath, config.ToJsonString());
        var (exit, output) = RunCommand("enroll", "--fleet", fleet.Url, "--token", fleet.EnrollmentToken().GetAwaiter().GetResult());
        Assert.True(exit == 0, $"enroll failed ({exit}):\n{output}");
        _process = Start();
    }

    public string DeviceId { get; }

    public string ConfigPath => _configPath;

    /// <summary>Runs another agent command (same binary) on this agent's configuration and waits for it.</summary>
    public (int ExitCode, string Output) RunCommand(params string[] args)
    {
        string[] all = [.. args, "--config", _configPath];
        using var command = _aot
            ? ChildProcess.Start(DeviceId + "-cmd", Repo.AotAgent, all)
            : ChildProcess.Start(DeviceId + "-cmd", "dotnet", [Repo.AgentDll, .. all]);
        var exit = command.WaitForExit(TimeSpan.FromSeconds(60));
        return (exit, command.Output);
    }

    public string StateDirectory { get; }

    public string Output => _process.Output;

    public bool Exited => _process.Exited;

    public void Kill9() => _process.Kill9();

    public void Restart()
    {
        _process.Dispose();
        _process = Start();
    }

    /// <summary>The process's own pid (for kill -9 from outside the harness).</summary>
    public int Pid => _process.Pid;

    /// <summary>The agent process, inside the link's network namespace when it has one (its commands run outside).</summary>
    private ChildProcess Start()
    {
        string[] command = _aot ? [Repo.AotAgent, "run", "--config", _configPath] : ["dotnet", Repo.AgentDll, "run", "--config", _configPath];
        return _link is null
            ? ChildProcess.Start(DeviceId, command[0], command[1..], environment: _environment)
            : ChildProcess.Start(DeviceId, "ip", _link.Command(command), environment: _environment);
    }

    public void Dispose() => _process.Dispose();
}
