using System.Text.Json;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Tests;

/// <summary>Rollouts in the store suite: created once, read back whole, updated atomically, listed newest first.</summary>
public abstract partial class FleetStoreContract
{
    private static Rollout NewRollout(string id, DateTimeOffset at) => new()
    {
        Id = id,
        ModelId = "m",
        Version = 2,
        Target = new RolloutTarget { Group = "pumps", Devices = ["d1"] },
        Phases = [new RolloutPhase { Percent = 10, SoakSeconds = 60, MinReporting = 3 }, new RolloutPhase { Percent = 100 }],
        State = RolloutStates.Running,
        PhaseStartedAt = at,
        CreatedAt = at,
        CreatedBy = "key:abc",
        Manifest = JsonDocument.Parse("""{"signed": {"modelId": "m", "artifacts": {"x86-64-generic": {}}}}""").RootElement.Clone(),
        KeySet = JsonDocument.Parse("""{"signed": {}}""").RootElement.Clone(),
    };

    [Fact]
    public async Task A_rollout_is_stored_once_and_read_back_whole()
    {
        Assert.True(await _store.CreateRolloutAsync(NewRollout("r1", T0), default));
        Assert.False(await _store.CreateRolloutAsync(NewRollout("r1", T0), default));
        Assert.True(await _store.CreateRolloutAsync(NewRollout("r2", T0.AddMinutes(1)), default));
        var r1 = await _store.GetRolloutAsync("r1", default);
        Assert.NotNull(r1);
        Assert.Equal(3, r1.Phases[0].MinReporting);
        Assert.Equal(["d1"], r1.Target.Devices);
        Assert.Equal("m", r1.Manifest.GetProperty("signed").GetProperty("modelId").GetString());
        Assert.Null(await _store.GetRolloutAsync("nope", default));
        Assert.Equal(["r2", "r1"], (await _store.ListRolloutsAsync(default)).Select(r => r.Id));
    }

    [Fact]
    public async Task A_rollout_update_is_atomic_and_a_refused_change_writes_nothing()
    {
        await _store.CreateRolloutAsync(NewRollout("r1", T0), default);
        var device = new RolloutDevice { Id = "d1", Phase = 0, AssignedAt = T0, Previous = new ModelRef { Name = "m", Version = "1" } };
        var changed = await _store.UpdateRolloutAsync("r1", r => r with { Revision = r.Revision + 1, Devices = [device], Phase = 1 }, default);
        Assert.Equal((0L, 1L), (changed!.Value.Before.Revision, changed.Value.After.Revision));
        Assert.Null(await _store.UpdateRolloutAsync("r1", _ => null, default));
        Assert.Null(await _store.UpdateRolloutAsync("nope", r => r, default));
        var stored = await _store.GetRolloutAsync("r1", default);
        Assert.Equal(1, stored!.Phase);
        Assert.Equal("1", stored.Devices.Single().Previous!.Version);

        // Concurrent updates each see the one before: none is lost.
        await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => _store.UpdateRolloutAsync("r1", r => r with { Revision = r.Revision + 1 }, default)));
        Assert.Equal(21, (await _store.GetRolloutAsync("r1", default))!.Revision);
    }
}
