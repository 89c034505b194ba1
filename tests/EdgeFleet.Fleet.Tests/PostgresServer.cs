using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace EdgeFleet.TestServers;

/// <summary>
/// A real PostgreSQL server from Debian's <c>postgresql</c> package (scripts/test.sh installs it): a fresh
/// cluster in a temporary directory on a free loopback port, started once per test collection, one database
/// per test. Run as the <c>postgres</c> user when the tests run as root, since PostgreSQL refuses root.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private const string User = "edgefleet";
    private readonly string _dir;
    private readonly string _bin;
    private readonly Process _server;
    private int _databases;

    public PostgresServer()
    {
        _bin = FindBin();
        _dir = Directory.CreateTempSubdirectory("edgefleet-pg-").FullName;
        var asRoot = Environment.UserName == "root";
        if (asRoot)
            Run("chown", ["-R", "postgres:postgres", _dir]);
        Port = FreePort();
        var data = Path.Combine(_dir, "data");
        RunAs(asRoot, Path.Combine(_bin, "initdb"), ["-D", data, "-U", User, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
        _server = Start(asRoot, Path.Combine(_bin, "postgres"),
            ["-D", data, "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-k", _dir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300"]);
        Admin = $"Host=127.0.0.1;Port={Port};Username={User};Database=postgres;Pooling=false;Timeout=5";
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                using var conn = new NpgsqlConnection(Admin);
                conn.Open();
                break;
            }
            catch (NpgsqlException) when (DateTime.UtcNow < deadline && !_server.HasExited)
            {
                Thread.Sleep(100);
            }
        }
    }

    public int Port { get; }

    /// <summary>The maintenance database, for creating others.</summary>
    public string Admin { get; }

    /// <summary>Creates an empty database and returns its connection string.</summary>
    public string CreateDatabase()
    {
        var name = $"t{Environment.ProcessId}_{Interlocked.Increment(ref _databases)}";
        using (var conn = new NpgsqlConnection(Admin))
        {
            conn.Open();
            using var create = new NpgsqlCommand($"create database {name}", conn);
            create.ExecuteNonQuery();
        }
        return $"Host=127.0.0.1;Port={Port};Username={User};Database={name};Maximum Pool Size=50";
    }

    private static string FindBin()
    {
        var bins = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(v => Path.Combine(v, "bin")).Where(b => File.Exists(Path.Combine(b, "initdb")))
                .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var v) ? v : 0).ToList()
            : [];
        return bins.FirstOrDefault() ?? throw new InvalidOperationException(
            "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql (scripts/test.sh does)");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static ProcessStartInfo Info(bool asRoot, string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(asRoot ? "runuser" : file) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asRoot)
        {
            info.ArgumentList.Add("-u");
            info.ArgumentList.Add("postgres");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(file);
        }
        foreach (var a in args)
            info.ArgumentList.Add(a);
        return info;
    }

    private static void Run(string file, IEnumerable<string> args) => RunInfo(Info(false, file, args));

    private static void RunAs(bool asRoot, string file, IEnumerable<string> args) => RunInfo(Info(asRoot, file, args));

    private static void RunInfo(ProcessStartInfo info)
    {
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{info.FileName} {string.Join(' ', info.ArgumentList)} failed ({p.ExitCode}): {error}{output.Result}");
    }

    private static Process Start(bool asRoot, string file, IEnumerable<string> args)
    {
        var p = Process.Start(Info(asRoot, file, args))!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    public void Dispose()
    {
        if (!_server.HasExited)
        {
            // SIGINT: PostgreSQL's fast shutdown. runuser passes the signal on to it.
            Process.Start("kill", ["-INT", _server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            if (!_server.WaitForExit(10_000))
                _server.Kill(entireProcessTree: true);
        }
        _server.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
