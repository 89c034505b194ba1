using System.Net.Sockets;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>A real Mosquitto broker (Debian's package, installed by scripts/test.sh) on a free loopback port.</summary>
public sealed class Mosquitto : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-mosquitto-").FullName;
    private readonly string _config;
    private ChildProcess _process;

    public Mosquitto()
    {
        var binary = new[] { "/usr/sbin/mosquitto", "/usr/bin/mosquitto" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("mosquitto is not installed: run scripts/test.sh, which installs Debian's mosquitto package");
        Port = Repo.FreePort();
        _config = Path.Combine(_dir, "mosquitto.conf");
        File.WriteAllText(_config, $"""
            listener {Port} 127.0.0.1
            allow_anonymous true
            persistence false
            log_dest stdout
            log_type error
            log_type warning
            log_type notice
            """);
        _binary = binary;
        _process = Start();
    }

    private readonly string _binary;

    private ChildProcess Start()
    {
        var process = ChildProcess.Start("mosquitto", _binary, ["-c", _config]);
        Wait.Until(() => CanConnect(Port), TimeSpan.FromSeconds(10), () => "mosquitto did not start:\n" + process.Output);
        return process;
    }

    /// <summary>Kills the broker (kill -9): every client loses its connection.</summary>
    public void Kill9() => _process.Kill9();

    /// <summary>Starts the broker again on the same port.</summary>
    public void Restart()
    {
        _process.Dispose();
        _process = Start();
    }

    public int Port { get; }

    public static bool CanConnect(int port)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _process.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
