using EdgeFleet.Fleet.Models;

namespace EdgeFleet.Fleet.Tests;

public abstract partial class FleetStoreContract
{
    private static ModelVersion Version(string model, long version, string state = ApprovalStates.Draft) => new()
    {
        ModelId = model,
        Version = version,
        State = state,
        Card = new ModelCard { Owner = "ml-team", IntendedUse = "tests", Metrics = new() { ["accuracy"] = 0.97 } },
        Artifacts = [new ModelArtifact(ModelArtifact.Fp32Kind, null, new string('a', 64), 1234, "m.onnx")],
        CreatedAt = T0,
        CreatedBy = "alice",
    };

    [Fact]
    public async Task Models_register_once_and_list_by_id()
    {
        Assert.True(await _store.CreateModelAsync(new RegisteredModel { Id = "zeta", CreatedAt = T0, CreatedBy = "a" }, default));
        Assert.True(await _store.CreateModelAsync(new RegisteredModel { Id = "alpha", Description = "d", CreatedAt = T0, CreatedBy = "a" }, default));
        Assert.False(await _store.CreateModelAsync(new RegisteredModel { Id = "alpha", CreatedAt = T0, CreatedBy = "b" }, default));
        Assert.Equal(["alpha", "zeta"], (await _store.ListModelsAsync(default)).Select(m => m.Id));
        Assert.Equal("d", (await _store.GetModelAsync("alpha", default))!.Description);
        Assert.Null(await _store.GetModelAsync("nothing", default));
    }

    [Fact]
    public async Task Versions_only_grow_and_keep_their_card_artifacts_and_state()
    {
        await _store.CreateModelAsync(new RegisteredModel { Id = "m", CreatedAt = T0, CreatedBy = "a" }, default);
        Assert.Equal((true, 0L), await _store.AddModelVersionAsync(Version("m", 1), default));
        Assert.Equal((true, 1L), await _store.AddModelVersionAsync(Version("m", 5), default));
        Assert.Equal((false, 5L), await _store.AddModelVersionAsync(Version("m", 5), default));
        Assert.Equal((false, 5L), await _store.AddModelVersionAsync(Version("m", 3), default));
        Assert.Equal([5L, 1L], (await _store.ListModelVersionsAsync("m", default)).Select(v => v.Version));
        var stored = (await _store.GetModelVersionAsync("m", 5, default))!;
        Assert.Equal(0.97, stored.Card.Metrics["accuracy"]);
        Assert.Equal(new string('a', 64), stored.Artifacts.Single().Sha256);
        Assert.Null(await _store.GetModelVersionAsync("m", 3, default));
    }

    [Fact]
    public async Task A_version_update_sees_the_current_state_and_unknown_versions_are_null()
    {
        await _store.CreateModelAsync(new RegisteredModel { Id = "m", CreatedAt = T0, CreatedBy = "a" }, default);
        await _store.AddModelVersionAsync(Version("m", 1), default);
        var changed = (await _store.UpdateModelVersionAsync("m", 1, v => v with { State = ApprovalStates.Validated, History = [new StateChange("draft", "validated", "bob", T0, "gate")] }, default))!.Value;
        Assert.Equal(ApprovalStates.Draft, changed.Before.State);
        Assert.Equal(ApprovalStates.Validated, (await _store.GetModelVersionAsync("m", 1, default))!.State);
        Assert.Equal("bob", (await _store.GetModelVersionAsync("m", 1, default))!.History.Single().By);
        Assert.Null(await _store.UpdateModelVersionAsync("m", 2, v => v, default));
    }
}
