using EdgeFleet.Fleet.Identity;

namespace EdgeFleet.Fleet.Tests;

/// <summary>Console users in the store suite: a username is taken once; updates are atomic and may decline.</summary>
public abstract partial class FleetStoreContract
{
    [Fact]
    public async Task A_user_is_created_once_read_back_and_updated_atomically()
    {
        var alice = new UserRecord { Username = "alice", Role = OperatorRole.Operator, PasswordHash = "pbkdf2-sha256$1$AA==$AA==", CreatedAt = T0, CreatedBy = "key:abc", Stamp = "s1" };
        Assert.True(await _store.CreateUserAsync(alice, default));
        Assert.False(await _store.CreateUserAsync(alice with { Role = OperatorRole.Admin }, default));
        Assert.True(await _store.CreateUserAsync(alice with { Username = "bob", Role = OperatorRole.Viewer }, default));
        Assert.Equal(alice, await _store.GetUserAsync("alice", default));
        Assert.Null(await _store.GetUserAsync("carol", default));
        Assert.Equal(["alice", "bob"], (await _store.ListUsersAsync(default)).Select(u => u.Username));

        // Concurrent failed logins each count: the update reads and writes under one lock.
        await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => _store.UpdateUserAsync("alice", u => u with { FailedLogins = u.FailedLogins + 1 }, default)));
        var (before, after) = (await _store.UpdateUserAsync("alice", u => u with { LockedUntil = T0.AddMinutes(15), Username = "ignored" }, default))!.Value;
        Assert.Equal(10, before.FailedLogins);
        Assert.Equal(("alice", T0.AddMinutes(15)), (after.Username, after.LockedUntil));
        Assert.Null(await _store.UpdateUserAsync("alice", _ => null, default));
        Assert.Null(await _store.UpdateUserAsync("carol", u => u, default));
        Assert.Equal(10, (await _store.GetUserAsync("alice", default))!.FailedLogins);
    }
}
