using System.Net.Sockets;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>
/// A real Mosquitto broker (Debian's package, installed by scripts/test.sh) on a free loopback port, set up by
/// the shipped <c>packaging/mosquitto/setup-mosquitto.sh</c>: no anonymous clients, accounts in the
/// dynamic-security plugin with the fleet service as admin (<see cref="AdminUser"/>, <see cref="AdminPassword"/>).
/// </summary>
public sealed class Mosquitto : IDisposable
{
    public const string AdminUser = "edgefleet-fleet";

    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-mosquitto-").FullName;
    private readonly string _config;
    private readonly string _binary;
    private ChildProcess _process;

    /// <param name="bind">The listener's address: loopback, or 0.0.0.0 for devices in their own network namespace.</param>
    public Mosquitto(string bind = "127.0.0.1")
    {
        _binary = new[] { "/usr/sbin/mosquitto", "/usr/bin/mosquitto" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("mosquitto is not installed: run scripts/test.sh, which installs Debian's mosquitto package");
        Port = Repo.FreePort();
        // Mosquitto drops root for its own user, which must reach the dynamic-security file it rewrites.
        if (OperatingSystem.IsLinux())
            File.SetUnixFileMode(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
            | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

        var passwordFile = Path.Combine(_dir, "admin.password");
        using (var setup = ChildProcess.Start("setup-mosquitto", Path.Combine(Repo.Root, "packaging/mosquitto/setup-mosquitto.sh"),
            ["--conf-dir", Path.Combine(_dir, "conf.d"), "--state-dir", Path.Combine(_dir, "state"), "--port", $"{Port}", "--bind", bind,
             "--admin", AdminUser, "--password-file", passwordFile]))
        {
            if (setup.WaitForExit(TimeSpan.FromSeconds(30)) != 0)
                throw new InvalidOperationException("setup-mosquitto.sh failed:\n" + setup.Output);
        }
        AdminPassword = File.ReadAllText(passwordFile).Trim();
        _config = Path.Combine(_dir, "mosquitto.conf");
        File.WriteAllText(_config, $"""
            persistence false
            log_dest stderr
            log_type error
            log_type warning
            log_type notice
            include_dir {Path.Combine(_dir, "conf.d")}
            """);
        _process = Start();
    }

    public int Port { get; }

    public string AdminPassword { get; }

    /// <summary>What Mosquitto logged: refused connections, disabled clients.</summary>
    public string Output => _process.Output;

    private ChildProcess Start()
    {
        var process = ChildProcess.Start("mosquitto", _binary, ["-c", _config]);
        Wait.Until(() => CanConnect(Port), TimeSpan.FromSeconds(10), () => "mosquitto did not start:\n" + process.Output);
        return process;
    }

    /// <summary>Kills the broker (kill -9): every client loses its connection.</summary>
    public void Kill9() => _process.Kill9();

    /// <summary>Starts the broker again on the same port, with the accounts it had.</summary>
    public void Restart()
    {
        _process.Dispose();
        _process = Start();
    }

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
