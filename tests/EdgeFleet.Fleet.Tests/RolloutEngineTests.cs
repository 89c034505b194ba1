using System.Reflection;
using System.Text.Json;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Fleet.Telemetry;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Fleet.Tests;

/// <summary>The rollout engine against a real LiteDB store: save, then publish.</summary>
public sealed class RolloutEngineTests : IDisposable
{
    private static readonly DateTimeOffset T0 = DateTimeOffset.UtcNow;
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-engine-").FullName;
    private readonly LiteDbFleetStore _store;

    public RolloutEngineTests() => _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));

    /// <summary>
    /// The store as another fleet instance shares it: with <see cref="Interfere"/> set, an operator's action on the
    /// rollout lands between the engine's read and its revision-checked save, so that save is refused.
    /// </summary>
    public class InterferingStore : DispatchProxy
    {
        public IFleetStore Inner { get; set; } = null!;

        public bool Interfere { get; set; }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            if (Interfere && targetMethod!.Name == nameof(IFleetStore.UpdateRolloutAsync))
                Inner.UpdateRolloutAsync((string)args![0]!, r => r with { Revision = r.Revision + 1 }, default).GetAwaiter().GetResult();
            return targetMethod!.Invoke(Inner, args);
        }
    }

    private RolloutEngine Engine(IFleetStore store)
    {
        var options = new FleetOptions();
        var replies = new ReplyQueue();
        var metrics = new FleetMetrics();
        var ingest = new TelemetryIngest(store, replies, metrics, TimeProvider.System, NullLogger<TelemetryIngest>.Instance);
        var router = new DeviceMessageRouter(store, ingest, replies, metrics, TimeProvider.System, NullLogger<DeviceMessageRouter>.Instance);
        var mqtt = new FleetMqttClient(BrokerConnection.For(options.Broker), router, store, replies, NullLogger<FleetMqttClient>.Instance);
        return new RolloutEngine(store, mqtt, new RolloutSigner(options, new ArtifactStore(Path.Combine(_dir, "artifacts")), TimeProvider.System),
            new Scale.LeaderElection(options, NullLogger<Scale.LeaderElection>.Instance), options, TimeProvider.System, NullLogger<RolloutEngine>.Instance);
    }

    private async Task SeedAsync()
    {
        foreach (var id in new[] { "d1", "d2" })
        {
            await _store.RecordHelloAsync(new HelloMessage
            {
                DeviceId = id, AgentVersion = "1", HardwareProfile = "x86-64-generic", BootId = "b", StartedAt = T0, Models = [],
            }, T0, default);
        }
        Assert.True(await _store.CreateRolloutAsync(new Rollout
        {
            Id = "r1",
            ModelId = "m",
            Version = 2,
            Target = new RolloutTarget { Devices = ["d1", "d2"] },
            Phases = [new RolloutPhase { Percent = 100 }],
            State = RolloutStates.Running,
            PhaseStartedAt = T0,
            CreatedAt = T0,
            CreatedBy = "test",
            Manifest = JsonDocument.Parse("""{"signed":{"modelId":"m","version":2,"artifacts":{"x86-64-generic":{}}},"signatures":[]}""").RootElement.Clone(),
            KeySet = JsonDocument.Parse("""{"signed":{},"signatures":[]}""").RootElement.Clone(),
        }, default));
    }

    [Fact]
    public async Task A_step_whose_save_is_refused_publishes_nothing_and_the_next_step_sends_what_it_records()
    {
        await SeedAsync();
        var interfering = DispatchProxy.Create<IFleetStore, InterferingStore>();
        ((InterferingStore)(object)interfering).Inner = _store;
        ((InterferingStore)(object)interfering).Interfere = true;

        await Engine(interfering).TickAsync(default);
        // The operator's change stands, the engine recorded no device, and no device was sent a desired state.
        var refused = (await _store.GetRolloutAsync("r1", default))!;
        Assert.Empty(refused.Devices);
        Assert.Null(await _store.GetDesiredAsync("d1", default));
        Assert.Null(await _store.GetDesiredAsync("d2", default));

        await Engine(_store).TickAsync(default);
        var saved = (await _store.GetRolloutAsync("r1", default))!;
        Assert.Equal(["d1", "d2"], saved.Devices.Select(d => d.Id).Order());
        Assert.Equal(refused.Revision + 1, saved.Revision);
        foreach (var id in new[] { "d1", "d2" })
        {
            var desired = WireReader.Read((await _store.GetDesiredAsync(id, default))!, WireJsonContext.Default.DesiredState, id);
            Assert.True(desired.Ok, desired.Reason);
            Assert.Equal(2, desired.Message!.Manifest!.Value.GetProperty("signed").GetProperty("version").GetInt64());
        }
    }

    public void Dispose()
    {
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
