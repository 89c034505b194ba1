using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Groups;

namespace EdgeFleet.Fleet.Tests;

public abstract partial class FleetStoreContract
{
    private static TagPatch Patch(Dictionary<string, string>? set = null, params string[] remove) => new(set ?? [], remove);

    [Fact]
    public async Task Tags_are_set_and_removed_on_known_devices_only()
    {
        await _store.RecordHelloAsync(Hello("d1", "b"), T0, default);
        Assert.Null(await _store.ChangeTagsAsync("nobody", Patch(new() { ["site"] = "x" }), default));

        var first = (await _store.ChangeTagsAsync("d1", Patch(new() { ["site"] = "north", ["region"] = "eu" }), default))!;
        Assert.Empty(first.Before);
        Assert.Equal(new Dictionary<string, string> { ["region"] = "eu", ["site"] = "north" }, first.After);

        var second = (await _store.ChangeTagsAsync("d1", Patch(new() { ["site"] = "south" }, "region"), default))!;
        Assert.Equal("north", second.Before["site"]);
        Assert.Equal(new Dictionary<string, string> { ["site"] = "south" }, (await _store.GetDeviceAsync("d1", default))!.Tags);
        // Telemetry and hellos afterwards keep the tags.
        await Store("d1", "s", 1, 3);
        await _store.RecordHelloAsync(Hello("d1", "c"), T0, default);
        Assert.Equal("south", (await _store.GetDeviceAsync("d1", default))!.Tags["site"]);
    }

    [Fact]
    public async Task A_tag_change_past_the_limit_changes_nothing()
    {
        await _store.RecordHelloAsync(Hello("d1", "b"), T0, default);
        var many = Enumerable.Range(0, TagPatch.MaxTags).ToDictionary(i => $"k{i}", i => "v");
        Assert.NotNull((await _store.ChangeTagsAsync("d1", Patch(many), default))!.After);
        var refused = (await _store.ChangeTagsAsync("d1", Patch(new() { ["one-more"] = "v" }), default))!;
        Assert.Null(refused.After);
        Assert.Equal(TagPatch.MaxTags, (await _store.GetDeviceAsync("d1", default))!.Tags.Count);
    }

    [Fact]
    public async Task Groups_are_created_once_changed_atomically_and_deleted()
    {
        var group = new DeviceGroup { Name = "line-1", Devices = ["a", "b"], CreatedAt = T0, CreatedBy = "key:test", Description = "first line" };
        Assert.True(await _store.CreateGroupAsync(group, default));
        Assert.False(await _store.CreateGroupAsync(group with { Devices = ["c"] }, default));
        Assert.True(await _store.CreateGroupAsync(new DeviceGroup { Name = "eu", Selector = "region=eu", CreatedAt = T0, CreatedBy = "key:test" }, default));

        Assert.Equal(["eu", "line-1"], (await _store.ListGroupsAsync(default)).Select(g => g.Name));
        var stored = (await _store.GetGroupAsync("line-1", default))!;
        Assert.Equal(["a", "b"], stored.Devices);
        Assert.Equal("first line", stored.Description);
        Assert.False(stored.IsDynamic);
        Assert.True((await _store.GetGroupAsync("eu", default))!.IsDynamic);

        // Concurrent additions all land: each change sees the one before it.
        await Task.WhenAll(Enumerable.Range(0, 20).Select(i =>
            _store.UpdateGroupAsync("line-1", g => g with { Devices = [.. g.Devices, $"x{i}"] }, default)));
        Assert.Equal(22, (await _store.GetGroupAsync("line-1", default))!.Devices.Count);

        var (before, after) = (await _store.UpdateGroupAsync("eu", g => g with { Selector = "region in (eu,uk)" }, default))!.Value;
        Assert.Equal("region=eu", before.Selector);
        Assert.Equal("region in (eu,uk)", after.Selector);
        Assert.Null(await _store.UpdateGroupAsync("none", g => g, default));

        Assert.Equal("eu", (await _store.DeleteGroupAsync("eu", default))!.Name);
        Assert.Null(await _store.DeleteGroupAsync("eu", default));
        Assert.Null(await _store.GetGroupAsync("eu", default));
    }
}
