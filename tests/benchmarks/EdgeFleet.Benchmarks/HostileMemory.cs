using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Memory a client can make a process reserve before it has authenticated (issue 31's must-show), each beside the
/// process's own idle figures read in the same run:
/// <list type="bullet">
/// <item>the fleet (embedded broker) under 1,000 connections that each send only a CONNECT header announcing 256 MB
///   (<c>10 ff ff ff 7f</c>), and under 1,000 that send nothing; target: VmRSS and VmData within 50 MB of idle;</item>
/// <item>the NativeAOT agent's local API under 100 connections that each announce a 64 MiB body and send 3 bytes of
///   it; target: VmRSS within 10 MB of idle.</item>
/// </list>
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- hostile-memory</c>.
/// </summary>
public static class HostileMemory
{
    public static async Task<int> RunAsync(int fleetConnections, int agentConnections)
    {
        var fleetDll = Path.Combine(Repo.Root, "fleet-service/EdgeFleet.Fleet/bin/Release/net10.0/edgefleet-fleet.dll");
        if (!File.Exists(fleetDll))
        {
            Console.Error.WriteLine($"build the fleet first: dotnet build -c Release fleet-service/EdgeFleet.Fleet ({fleetDll})");
            return 2;
        }
        var dir = Directory.CreateTempSubdirectory("edgefleet-hostile-memory-").FullName;
        try
        {
            var fleetMet = await FleetAsync(fleetDll, dir, fleetConnections);
            var agentMet = await AgentAsync(dir, agentConnections);
            return fleetMet && agentMet ? 0 : 1;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<bool> FleetAsync(string fleetDll, string dir, int count)
    {
        var mqttPort = FleetIngest.FreePort();
        var httpPort = FleetIngest.FreePort();
        var fleet = FleetIngest.StartFleet(fleetDll, dir, httpPort, mqttPort, [], new Dictionary<string, string>());
        try
        {
            using var http = await FleetIngest.ConnectApiAsync(dir, httpPort);
            await Task.Delay(3000);
            var idle = Memory(fleet.Id);
            var silent = await OpenAsync(mqttPort, count, []);
            await Task.Delay(2000);
            var underSilent = Memory(fleet.Id);
            Close(silent);
            await Task.Delay(1000);
            var announcing = await OpenAsync(mqttPort, count, [0x10, 0xff, 0xff, 0xff, 0x7f]);
            await Task.Delay(2000);
            var underAnnounced = Memory(fleet.Id);
            Close(announcing);
            var rssDelta = (underAnnounced.Rss - idle.Rss) / 1048576.0;
            var dataDelta = (underAnnounced.Data - idle.Data) / 1048576.0;
            var met = rssDelta <= 50 && dataDelta <= 50;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                hostile-memory, fleet (embedded broker), {count} connections
                  idle:                                   VmRSS {idle.Rss / 1048576.0,7:F1} MB   VmData {idle.Data / 1048576.0,7:F1} MB
                  baseline, {count} silent connections:    VmRSS {(underSilent.Rss - idle.Rss) / 1048576.0,+7:F1} MB   VmData {(underSilent.Data - idle.Data) / 1048576.0,+7:F1} MB
                  {count} CONNECTs announcing 256 MB:      VmRSS {rssDelta,+7:F1} MB   VmData {dataDelta,+7:F1} MB   (target within 50 MB: {(met ? "met" : "NOT met")})
                """));
            return met;
        }
        finally
        {
            FleetIngest.Stop(fleet);
        }
    }

    private static async Task<bool> AgentAsync(string dir, int count)
    {
        var agent = Environment.GetEnvironmentVariable("EDGEFLEET_AGENT_AOT") ?? Path.Combine(Repo.Root, "artifacts/agent/linux-x64/edgefleet-agent");
        if (!File.Exists(agent))
        {
            Console.Error.WriteLine("no NativeAOT agent: run packaging/publish-agent.sh linux-x64 or set EDGEFLEET_AGENT_AOT");
            return false;
        }
        var socketPath = Path.Combine(dir, "api.sock");
        var config = new JsonObject
        {
            ["deviceId"] = "bench-hostile",
            ["stateDirectory"] = Path.Combine(dir, "agent"),
            ["broker"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = 9 },
            ["ota"] = new JsonObject { ["rootPath"] = Path.Combine(dir, "no-root.json") },
            ["localApi"] = new JsonObject { ["socket"] = socketPath, ["maxRequestBytes"] = 64L * 1024 * 1024 },
        };
        var configPath = Path.Combine(dir, "agent.json");
        await File.WriteAllTextAsync(configPath, config.ToJsonString());
        var info = new ProcessStartInfo(agent, ["run", "--config", configPath]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(info)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            for (var i = 0; i < 100 && !File.Exists(socketPath); i++)
                await Task.Delay(100);
            await Task.Delay(3000);
            var idle = Memory(process.Id);
            var sockets = new List<Socket>();
            var head = Encoding.ASCII.GetBytes($"POST /v1/models/x/infer HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {64 * 1024 * 1024}\r\n\r\n{{\"i");
            for (var i = 0; i < count; i++)
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
                await socket.SendAsync(head);
                sockets.Add(socket);
            }
            await Task.Delay(2000);
            var loaded = Memory(process.Id);
            Close(sockets);
            var delta = (loaded.Rss - idle.Rss) / 1048576.0;
            var met = delta <= 10;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"""
                hostile-memory, agent local API, {count} connections announcing 64 MiB bodies ({count * 64} MiB announced)
                  idle:                                   VmRSS {idle.Rss / 1048576.0,7:F1} MB   VmData {idle.Data / 1048576.0,7:F1} MB
                  under the announcements:                VmRSS {delta,+7:F1} MB   VmData {(loaded.Data - idle.Data) / 1048576.0,+7:F1} MB   (target VmRSS within 10 MB: {(met ? "met" : "NOT met")})
                """));
            return met;
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
    }

    private static async Task<List<Socket>> OpenAsync(int port, int count, byte[] send)
    {
        var sockets = new List<Socket>();
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(IPAddress.Loopback, port);
                if (send.Length > 0)
                    await socket.SendAsync(send);
            }
            catch (SocketException)
            {
                // closed at once: over the broker's pending-connection limit
            }
            sockets.Add(socket);
        }
        return sockets;
    }

    private static void Close(List<Socket> sockets) => sockets.ForEach(s => s.Dispose());

    /// <summary>VmRSS and VmData of a process, in bytes.</summary>
    private static (long Rss, long Data) Memory(int pid)
    {
        long rss = 0, data = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            var value = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                rss = long.Parse(value[1], CultureInfo.InvariantCulture) * 1024;
            else if (line.StartsWith("VmData:", StringComparison.Ordinal))
                data = long.Parse(value[1], CultureInfo.InvariantCulture) * 1024;
        }
        return (rss, data);
    }
}
