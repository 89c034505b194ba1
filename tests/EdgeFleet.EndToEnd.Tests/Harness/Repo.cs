using System.Net;
using System.Net.Sockets;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>Where the built programs are, and free loopback ports.</summary>
public static class Repo
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    public static string Root { get; } = FindRoot();

    public static string FleetDll => Path.Combine(Root, "fleet-service/EdgeFleet.Fleet/bin", Configuration, "net10.0/edgefleet-fleet.dll");

    public static string CliDll => Path.Combine(Root, "fleet-service/EdgeFleet.Cli/bin", Configuration, "net10.0/edgefleet.dll");

    public static string AgentDll => Path.Combine(Root, "edge-agent/bin", Configuration, "net10.0/edgefleet-agent.dll");

    /// <summary>The NativeAOT agent, published by scripts/test.sh (EDGEFLEET_AGENT_AOT overrides).</summary>
    public static string AotAgent => Environment.GetEnvironmentVariable("EDGEFLEET_AGENT_AOT")
        ?? Path.Combine(Root, "artifacts/agent/linux-x64/edgefleet-agent");

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EdgeFleet.slnx")))
                return dir.FullName;
        }
        throw new InvalidOperationException("cannot find the repository root (EdgeFleet.slnx) above " + AppContext.BaseDirectory);
    }
}
