using EdgeFleet.Fleet.Drift;

namespace EdgeFleet.Fleet.Tests;

/// <summary>Drift alerts in the store suite: at most one active alert per model version, feature and segment.</summary>
public abstract partial class FleetStoreContract
{
    private static DriftAlert Alert(string id, string feature, DateTimeOffset at) => new()
    {
        Id = id,
        Model = "m",
        Version = "1",
        Feature = feature,
        Segment = "b",
        State = DriftAlertStates.Open,
        OpenedAt = at,
        Since = at.AddMinutes(-3),
        Psi = 0.8,
        Windows = 3,
    };

    [Fact]
    public async Task One_alert_is_active_per_key_and_a_resolved_one_makes_room_for_the_next()
    {
        Assert.True(await _store.CreateDriftAlertAsync(Alert("a1", "rms", T0), default));
        Assert.False(await _store.CreateDriftAlertAsync(Alert("a2", "rms", T0.AddMinutes(1)), default)); // rms in b is already alerting
        Assert.True(await _store.CreateDriftAlertAsync(Alert("a3", "peak", T0.AddMinutes(2)), default));
        Assert.Equal(["a3", "a1"], (await _store.ListDriftAlertsAsync(true, 100, default)).Select(a => a.Id));

        var (before, after) = (await _store.UpdateDriftAlertAsync("a1", a => a with { State = DriftAlertStates.Resolved, ResolvedAt = T0.AddMinutes(5) }, default))!.Value;
        Assert.Equal((DriftAlertStates.Open, DriftAlertStates.Resolved), (before.State, after.State));
        Assert.Null(await _store.UpdateDriftAlertAsync("a1", a => a, default)); // nothing changed
        Assert.Null(await _store.UpdateDriftAlertAsync("nope", a => a with { Psi = 1 }, default));
        Assert.Equal(["a3"], (await _store.ListDriftAlertsAsync(true, 100, default)).Select(a => a.Id));
        Assert.True(await _store.CreateDriftAlertAsync(Alert("a4", "rms", T0.AddMinutes(6)), default)); // the drift came back
        Assert.Equal(["a4", "a3", "a1"], (await _store.ListDriftAlertsAsync(false, 100, default)).Select(a => a.Id));
        Assert.Equal(T0.AddMinutes(5), (await _store.ListDriftAlertsAsync(false, 100, default)).Single(a => a.Id == "a1").ResolvedAt);
        Assert.Single(await _store.ListDriftAlertsAsync(false, 1, default));
    }
}
