using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.ModelTools.Demo;

namespace EdgeFleet.EndToEnd.Tests;

public sealed class DemoModel : IDisposable
{
    public DemoModel()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("edgefleet-e2e-").FullName;
        Path = System.IO.Path.Combine(Directory, "vibration.onnx");
        File.WriteAllBytes(Path, DemoModelTrainer.Train(seed: 42, perClass: 200, epochs: 20).OnnxBytes);
    }

    public string Directory { get; }

    public string Path { get; }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}

/// <summary>
/// The spine end to end: a fleet service and agent processes on loopback. Two agents register and send
/// telemetry; one is killed with SIGKILL and restarted, and comes back as the same device without losing
/// or duplicating what it had buffered.
/// </summary>
[Collection("processes")]
public class FleetScenarioTests(DemoModel model) : IClassFixture<DemoModel>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public Task Two_agents_through_the_embedded_broker_survive_kill_9() => RunScenarioAsync(external: false);

    [Fact]
    public Task Two_agents_through_a_real_mosquitto_survive_kill_9() => RunScenarioAsync(external: true);

    [Fact]
    public Task Two_agents_through_mosquitto_with_a_postgresql_store_survive_kill_9() => RunScenarioAsync(external: true, postgres: true);

    private async Task RunScenarioAsync(bool external, bool postgres = false)
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-scenario-").FullName;
        using var mosquitto = external ? new Mosquitto() : null;
        using var database = postgres ? new EdgeFleet.TestServers.PostgresServer() : null;
        using var fleet = new Fleet(dir, mosquitto, postgres: database?.CreateDatabase());
        if (postgres)
            Assert.Equal("PostgreSql", (await fleet.Health())!["storage"]!.GetValue<string>());
        using var a = new Agent(dir, "pump-a", fleet, model.Path, "normal");
        using var b = new Agent(dir, "pump-b", fleet, model.Path, "bearing-wear");
        string Explain() => $"fleet:\n{fleet.Output}\n--- pump-a:\n{a.Output}\n--- pump-b:\n{b.Output}";

        // Both register and report telemetry.
        await Wait.ForAsync(async () => (await fleet.Devices()).Count == 2 && (await fleet.Devices()).All(d => Records(d!) >= 20) ? "" : null, Patience, Explain);
        var before = await fleet.Device("pump-a");
        Assert.Equal("0.1.0", before!["device"]!["agentVersion"]!.GetValue<string>());
        Assert.True(before["online"]!.GetValue<bool>());
        Assert.Equal("vibration-classifier", before["device"]!["activeModel"]!["name"]!.GetValue<string>());
        Assert.Equal("normal", before["device"]!["lastInference"]!["label"]!.GetValue<string>());
        Assert.Equal("bearing-wear", (await fleet.Device("pump-b"))!["device"]!["lastInference"]!["label"]!.GetValue<string>());

        // Counts keep rising.
        var countA = Records(before);
        await Wait.ForAsync(async () => Records((await fleet.Device("pump-a"))!) > countA + 10 ? "" : null, Patience, Explain);

        // kill -9 one agent; the other carries on; the killed one comes back as the same device.
        a.Kill9();
        var bootBefore = (await fleet.Device("pump-a"))!["device"]!["bootId"]!.GetValue<string>();
        var countB = Records((await fleet.Device("pump-b"))!);
        await Wait.ForAsync(async () => Records((await fleet.Device("pump-b"))!) > countB + 10 ? "" : null, Patience, Explain);
        a.Restart();
        var after = await Wait.ForAsync(async () =>
        {
            var d = await fleet.Device("pump-a");
            return d?["device"]?["restarts"]?.GetValue<int>() == 1 && Records(d) > countA + 20 ? d : null;
        }, Patience, Explain);
        Assert.NotEqual(bootBefore, after["device"]!["bootId"]!.GetValue<string>());
        Assert.Equal(2, (await fleet.Devices()).Count);

        // Exactly once: one stream per device, every sequence number up to the ack stored once, none skipped.
        foreach (var view in await fleet.Devices())
        {
            var device = view!["device"]!;
            Assert.Equal(device["ackedSeq"]!.GetValue<long>(), device["telemetryRecords"]!.GetValue<long>());
            Assert.Equal(0, device["skippedRecords"]!.GetValue<long>());
        }
        Assert.Empty((await fleet.Health())!["messagesRejected"]!.AsObject());
        System.IO.Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task Agents_buffer_while_the_fleet_is_killed_and_deliver_everything_once_when_it_returns()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("edgefleet-outage-").FullName;
        var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "pump-c", fleet, model.Path, "imbalance");
        try
        {
            var before = await Wait.ForAsync(async () => await fleet.Device("pump-c") is { } d && Records(d) >= 20 ? d : null, Patience,
                () => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}");

            // kill -9 the fleet service (broker and store with it); the agent keeps classifying into its buffer.
            fleet.Kill9();
            await Task.Delay(TimeSpan.FromSeconds(4));
            var restarted = new Fleet(dir, reuse: fleet);
            fleet.Dispose();
            fleet = restarted;

            // 20 windows/s for 4 s: the backlog arrives after reconnect, and nothing is lost or doubled.
            var after = await Wait.ForAsync(async () => await fleet.Device("pump-c") is { } d && Records(d) >= Records(before) + 80 ? d : null, Patience,
                () => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}");
            Assert.Equal(after["device"]!["ackedSeq"]!.GetValue<long>(), Records(after));
            Assert.Equal(0, after["device"]!["skippedRecords"]!.GetValue<long>());
            Assert.Equal(0, after["device"]!["restarts"]!.GetValue<int>());
            Assert.False(agent.Exited);
        }
        finally
        {
            fleet.Dispose();
        }
        System.IO.Directory.Delete(dir, recursive: true);
    }

    private static long Records(JsonNode view) => view["device"]!["telemetryRecords"]!.GetValue<long>();
}

[CollectionDefinition("processes", DisableParallelization = true)]
public class ProcessCollection;
