using EdgeFleet.Fleet.Retraining;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Tests;

/// <summary>Hard examples, retraining policies and jobs in the store suite.</summary>
public abstract partial class FleetStoreContract
{
    private static StoredHardExample Example(string device, long seq, DateTimeOffset ts, string model = "m") => new()
    {
        Id = StoredHardExample.IdOf(device, "s1", seq),
        DeviceId = device,
        Ts = ts,
        Example = new HardExample { Model = model, Version = "1", Label = "imbalance", Confidence = 0.41f, Threshold = 0.6f, Shape = [1, 3], Input = [seq, 2, 3] },
    };

    private static RetrainingJob Job(string id, string model, DateTimeOffset at, string state = RetrainingJobStates.Queued) => new()
    {
        Id = id,
        ModelId = model,
        BaseVersion = 1,
        State = state,
        Trigger = "manual",
        Reason = "test",
        Executor = "demo",
        CreatedAt = at,
        CreatedBy = "test",
        Deadline = at.AddHours(1),
        TokenHash = "",
        Snapshot = new JobSnapshot { From = at.AddHours(-1), To = at, HardExampleIds = ["d1:s1:1"] },
    };

    [Fact]
    public async Task Hard_examples_are_kept_once_listed_by_model_and_time_and_labelled()
    {
        await _store.AddHardExamplesAsync([Example("d1", 1, T0), Example("d1", 2, T0.AddMinutes(1)), Example("d2", 1, T0.AddMinutes(2)), Example("d3", 1, T0, model: "other")], default);
        // Sent again (a redelivered batch): kept once, and a label given meanwhile stays.
        Assert.Equal(1, await _store.LabelHardExamplesAsync(["d1:s1:1", "nope"], "normal", "key:ops", T0.AddHours(1), default));
        await _store.AddHardExamplesAsync([Example("d1", 1, T0)], default);

        var all = await _store.ListHardExamplesAsync("m", T0, T0.AddHours(1), null, 100, default);
        Assert.Equal(["d2:s1:1", "d1:s1:2", "d1:s1:1"], all.Select(e => e.Id)); // newest first, this model only
        var labelled = all.Single(e => e.Id == "d1:s1:1");
        Assert.Equal(("normal", "key:ops", T0.AddHours(1)), (labelled.Label, labelled.LabelledBy, labelled.LabelledAt));
        Assert.Equal([1f, 2, 3], labelled.Example.Input);
        Assert.Equal(["d1:s1:2", "d1:s1:1"], (await _store.ListHardExamplesAsync("m", T0, T0.AddHours(1), "d1", 100, default)).Select(e => e.Id));
        Assert.Equal(["d1:s1:2"], (await _store.ListHardExamplesAsync("m", T0.AddSeconds(30), T0.AddMinutes(2), null, 100, default)).Select(e => e.Id)); // [from, to)
        Assert.Single(await _store.ListHardExamplesAsync("m", T0, T0.AddHours(1), null, 1, default));
        Assert.Equal(["d1:s1:2", "d2:s1:1"], (await _store.GetHardExamplesAsync(["d2:s1:1", "d1:s1:2", "missing"], default)).Select(e => e.Id).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Policies_are_kept_per_model_and_replaced()
    {
        await _store.PutRetrainingPolicyAsync(new RetrainingPolicy { ModelId = "b", Executor = "demo", Drift = new DriftTrigger { MinFeatures = 2 } }, default);
        await _store.PutRetrainingPolicyAsync(new RetrainingPolicy { ModelId = "a", Executor = "demo", EveryHours = 24 }, default);
        await _store.PutRetrainingPolicyAsync(new RetrainingPolicy { ModelId = "b", Executor = "hook", CooldownHours = 2 }, default);
        var policies = await _store.ListRetrainingPoliciesAsync(default);
        Assert.Equal(["a", "b"], policies.Select(p => p.ModelId));
        Assert.Equal(("hook", 2.0, null), (policies[1].Executor, policies[1].CooldownHours, policies[1].Drift));
        Assert.Equal(24, policies[0].EveryHours);
        Assert.True(await _store.DeleteRetrainingPolicyAsync("a", default));
        Assert.False(await _store.DeleteRetrainingPolicyAsync("a", default));
        Assert.Equal(["b"], (await _store.ListRetrainingPoliciesAsync(default)).Select(p => p.ModelId));
    }

    [Fact]
    public async Task A_model_has_at_most_one_open_job()
    {
        Assert.True(await _store.CreateRetrainingJobAsync(Job("j1", "m", T0), default));
        Assert.False(await _store.CreateRetrainingJobAsync(Job("j2", "m", T0.AddMinutes(1)), default)); // j1 is open
        Assert.True(await _store.CreateRetrainingJobAsync(Job("j3", "other", T0.AddMinutes(2)), default));

        var running = (await _store.UpdateRetrainingJobAsync("j1", j => j.Moved(RetrainingJobStates.Running, T0.AddMinutes(3), "started"), default))!.Value;
        Assert.Equal((RetrainingJobStates.Queued, RetrainingJobStates.Running), (running.Before.State, running.After.State));
        Assert.False(await _store.CreateRetrainingJobAsync(Job("j2", "m", T0.AddMinutes(4)), default)); // still open while running
        Assert.Null(await _store.UpdateRetrainingJobAsync("j1", _ => null, default));
        Assert.Null(await _store.UpdateRetrainingJobAsync("nope", j => j with { Reason = "x" }, default));
        await _store.UpdateRetrainingJobAsync("j1", j => j.Moved(RetrainingJobStates.Failed, T0.AddMinutes(5), "broke") with { Error = "broke" }, default);
        Assert.True(await _store.CreateRetrainingJobAsync(Job("j2", "m", T0.AddMinutes(6)), default)); // the failed one no longer counts

        Assert.Equal(["j2", "j3", "j1"], (await _store.ListRetrainingJobsAsync(null, 10, default)).Select(j => j.Id));
        Assert.Equal(["j2", "j1"], (await _store.ListRetrainingJobsAsync("m", 10, default)).Select(j => j.Id));
        var failed = (await _store.GetRetrainingJobAsync("j1", default))!;
        Assert.Equal((RetrainingJobStates.Failed, "broke", T0.AddMinutes(3), T0.AddMinutes(5)), (failed.State, failed.Error, failed.StartedAt, failed.FinishedAt));
        Assert.Equal(["running", "failed"], failed.Events.Select(e => e.State));
        Assert.Equal(["d1:s1:1"], failed.Snapshot.HardExampleIds);
        Assert.Null(await _store.GetRetrainingJobAsync("nope", default));
    }
}
