using EdgeFleet.Cli.Sim;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.TestServers;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Two fleet-service instances on one PostgreSQL and one Mosquitto (shared subscriptions): 100 simulated
/// devices send telemetry while the scheduler leader is killed with SIGKILL. The other instance takes the
/// leadership, and every record ends up stored exactly once.
/// </summary>
[Collection("processes")]
public sealed class ScaleOutTests
{
    [Fact]
    public async Task Two_instances_store_every_record_once_while_the_leader_is_killed_and_leadership_moves()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-scaleout-").FullName;
        using var postgres = new PostgresServer();
        using var mosquitto = new Mosquitto();
        var database = postgres.CreateDatabase();
        var a = new Fleet(Path.Combine(dir, "a"), mosquitto, postgres: database);
        var b = new Fleet(Path.Combine(dir, "b"), mosquitto, postgres: database, adminKey: a.AdminKey);
        try
        {
            string Explain() => $"a:\n{a.Output}\n--- b:\n{b.Output}";
            async Task<bool> Leads(Fleet f) => (await f.Health())?["leader"]?.GetValue<bool>() == true;
            await Wait.ForAsync(async () => await Leads(a) ^ await Leads(b) ? "" : null, TimeSpan.FromSeconds(20), Explain);
            var (leader, follower) = await Leads(a) ? (a, b) : (b, a);

            using var http = follower.AdminClient();
            await using var sim = await SimulatedFleet.EnrollAsync(http, new SimOptions { Devices = 100, Rate = 20, BatchRecords = 10, Prefix = "scale" }, CancellationToken.None);
            await sim.ConnectAsync(CancellationToken.None);
            var run = sim.RunAsync(TimeSpan.FromSeconds(12), CancellationToken.None);
            await Task.Delay(TimeSpan.FromSeconds(4));
            // Both instances take a share of the devices' messages.
            Assert.True((await leader.Health())!["telemetryStored"]!.GetValue<long>() > 0, Explain());
            Assert.True((await follower.Health())!["telemetryStored"]!.GetValue<long>() > 0, Explain());

            leader.Kill9();
            var killedAt = DateTime.UtcNow;
            await Wait.ForAsync(async () => await Leads(follower) ? "" : null, TimeSpan.FromSeconds(15), Explain);
            var handover = DateTime.UtcNow - killedAt;
            Assert.True(handover < TimeSpan.FromSeconds(10), $"leadership moved after {handover.TotalSeconds:F1} s");

            await run;
            Assert.True(await sim.DrainAsync(TimeSpan.FromSeconds(90), CancellationToken.None), "not everything was acknowledged:\n" + Explain());
            foreach (var device in sim.Devices)
            {
                var stored = (await follower.Device(device.Id))!["device"]!;
                Assert.Equal(device.Sent, stored["telemetryRecords"]!.GetValue<long>());
                Assert.Equal(device.Sent, stored["ackedSeq"]!.GetValue<long>());
                Assert.Equal(0, stored["conflictingRecords"]!.GetValue<long>());
            }
            Assert.True(sim.Sent >= 100 * 20 * 10, $"only {sim.Sent} records sent");
        }
        finally
        {
            a.Dispose();
            b.Dispose();
        }
        Directory.Delete(dir, recursive: true);
    }
}
