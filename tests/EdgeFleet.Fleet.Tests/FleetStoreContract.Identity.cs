using EdgeFleet.Fleet;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Tests;

public abstract partial class FleetStoreContract
{
    private static readonly byte[] KeyA = [.. Enumerable.Repeat((byte)1, 32)];
    private static readonly byte[] KeyB = [.. Enumerable.Repeat((byte)2, 32)];

    private async Task<string> TokenAsync(int uses = 1, double hours = 1, Dictionary<string, string>? tags = null)
    {
        var hash = Secrets.Hash(Secrets.NewEnrollmentToken());
        await _store.CreateEnrollmentTokenAsync(new EnrollmentTokenRecord
        {
            Hash = hash,
            CreatedBy = "key:test",
            CreatedAt = T0,
            ExpiresAt = T0.AddHours(hours),
            UsesLeft = uses,
            Tags = tags ?? [],
        }, default);
        return hash;
    }

    private Task<EnrollOutcome> EnrollAsync(string token, string device, byte[] key, DateTimeOffset? at = null) =>
        _store.EnrollAsync(token, new DeviceCredential { DeviceId = device, PublicKey = key, EnrolledAt = at ?? T0, EnrolledWith = token }, "raspberry-pi-5", at ?? T0, default);

    [Fact]
    public async Task Enrollment_takes_one_use_registers_the_key_and_tags_the_device()
    {
        var token = await TokenAsync(uses: 2, tags: new() { ["site"] = "plant-7", ["region"] = "eu" });
        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(token, "cam-1", KeyA));
        var credential = (await _store.GetCredentialAsync("cam-1", default))!;
        Assert.Equal(KeyA, credential.PublicKey);
        Assert.False(credential.Revoked);
        var device = (await _store.GetDeviceAsync("cam-1", default))!;
        Assert.Equal("plant-7", device.Tags["site"]);
        Assert.Equal("eu", device.Tags["region"]);
        Assert.Equal("raspberry-pi-5", device.HardwareProfile);
        Assert.Equal(T0, device.EnrolledAt);

        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(token, "cam-1", KeyA)); // a retry takes no use
        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(token, "cam-2", KeyB));
        Assert.Equal(EnrollOutcome.TokenUsed, await EnrollAsync(token, "cam-3", KeyB));
        Assert.Null(await _store.GetCredentialAsync("cam-3", default));
    }

    [Fact]
    public async Task A_device_stored_under_a_reserved_id_is_named_at_start_and_refused_by_the_broker_check()
    {
        // As an existing deployment holds it: enrolled before the fleet's namespace was reserved.
        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(await TokenAsync(), "edgefleet-fleet-host-1", KeyA));
        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(await TokenAsync(), "fleetadmin", KeyB));
        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(await TokenAsync(), "cam-1", KeyB));
        var devices = await _store.ListDevicesAsync(default);
        Assert.Equal(["edgefleet-fleet-host-1", "fleetadmin"], ReservedIdentities.Collisions(devices, new BrokerOptions { Username = "FleetAdmin" }).Order());
        Assert.Equal(["edgefleet-fleet-host-1"], ReservedIdentities.Collisions(devices, new BrokerOptions()));

        using var key = EdgeFleet.Shared.Ota.SigningKey.Generate();
        var authenticator = new DeviceAuthenticator(_store, new SecurityOptions(), TimeProvider.System, new DeviceRevocation());
        var token = EdgeFleet.Shared.Identity.DeviceToken.Create(key, "edgefleet-fleet-host-1", DateTimeOffset.UtcNow, TimeSpan.FromMinutes(5));
        var result = await authenticator.AuthenticateAsync("edgefleet-fleet-host-1", token, default);
        Assert.Equal(DeviceAuthError.InvalidDeviceId, result.Error);
        Assert.Contains("reserved", result.Reason, StringComparison.Ordinal);
        Assert.Equal(DeviceAuthError.InvalidDeviceId, (await authenticator.CheckEnrolledAsync("edgefleet-fleet-host-1", default)).Error);
        Assert.True((await authenticator.CheckEnrolledAsync("cam-1", default)).Valid);

        // Revoked, it is no longer a collision.
        Assert.True(await _store.RevokeDeviceAsync("edgefleet-fleet-host-1", "key:test", T0, default));
        Assert.Empty(ReservedIdentities.Collisions(await _store.ListDevicesAsync(default), new BrokerOptions()));
    }

    [Fact]
    public async Task Enrollment_refuses_unknown_expired_and_taken()
    {
        Assert.Equal(EnrollOutcome.InvalidToken, await EnrollAsync(Secrets.Hash("efe_nope"), "cam-1", KeyA));
        var expired = await TokenAsync(hours: 1);
        Assert.Equal(EnrollOutcome.TokenExpired, await EnrollAsync(expired, "cam-1", KeyA, T0.AddHours(2)));
        Assert.Equal(EnrollOutcome.Enrolled, await EnrollAsync(await TokenAsync(), "cam-1", KeyA));
        Assert.Equal(EnrollOutcome.DeviceIdTaken, await EnrollAsync(await TokenAsync(), "cam-1", KeyB));
        // The same key with another token is another enrollment attempt, not a retry.
        Assert.Equal(EnrollOutcome.DeviceIdTaken, await EnrollAsync(await TokenAsync(), "cam-1", KeyA));
        Assert.Equal(KeyA, (await _store.GetCredentialAsync("cam-1", default))!.PublicKey);
    }

    [Fact]
    public async Task A_one_use_token_enrolls_exactly_one_of_many_devices_racing_for_it()
    {
        var token = await TokenAsync(uses: 1);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(() => EnrollAsync(token, $"racer-{i}", [.. Enumerable.Repeat((byte)i, 32)]))));
        Assert.Equal(1, outcomes.Count(o => o == EnrollOutcome.Enrolled));
        Assert.Equal(15, outcomes.Count(o => o == EnrollOutcome.TokenUsed));
    }

    [Fact]
    public async Task Revocation_sticks_and_a_revoked_id_cannot_enroll_again()
    {
        Assert.False(await _store.RevokeDeviceAsync("ghost", "key:ops", T0, default));
        await EnrollAsync(await TokenAsync(), "cam-1", KeyA);
        Assert.True(await _store.RevokeDeviceAsync("cam-1", "key:ops", T0.AddMinutes(1), default));
        Assert.True(await _store.RevokeDeviceAsync("cam-1", "key:other", T0.AddMinutes(2), default));
        var credential = (await _store.GetCredentialAsync("cam-1", default))!;
        Assert.Equal(T0.AddMinutes(1), credential.RevokedAt);
        Assert.Equal("key:ops", credential.RevokedBy);
        Assert.Equal(T0.AddMinutes(1), (await _store.GetDeviceAsync("cam-1", default))!.RevokedAt);
        Assert.Equal(EnrollOutcome.DeviceRevoked, await EnrollAsync(await TokenAsync(), "cam-1", KeyB));
    }

    [Fact]
    public async Task Api_keys_are_kept_by_id_and_revoked_in_place()
    {
        var (id, _, hash) = Secrets.NewApiKey();
        await _store.CreateApiKeyAsync(new ApiKeyRecord { Id = id, Name = "ops", Role = OperatorRole.Operator, SecretHash = hash, CreatedAt = T0, CreatedBy = "key:admin" }, default);
        var key = (await _store.GetApiKeyAsync(id, default))!;
        Assert.Equal((OperatorRole.Operator, hash, T0), (key.Role, key.SecretHash, key.CreatedAt));
        Assert.Single(await _store.ListApiKeysAsync(default));
        Assert.True(await _store.RevokeApiKeyAsync(id, T0.AddDays(1), default));
        Assert.Equal(T0.AddDays(1), (await _store.GetApiKeyAsync(id, default))!.RevokedAt);
        Assert.False(await _store.RevokeApiKeyAsync("000000000000", T0, default));
        Assert.Null(await _store.GetApiKeyAsync("000000000000", default));
    }

    [Fact]
    public async Task The_audit_log_lists_newest_first_by_target_and_limit()
    {
        for (var i = 0; i < 5; i++)
        {
            await _store.AppendAuditAsync(new AuditEntry
            {
                At = T0.AddSeconds(i),
                Actor = "key:a",
                Action = "device.revoke",
                Target = i % 2 == 0 ? "even" : "odd",
                Before = i == 0 ? null : "{\"n\":" + (i - 1) + "}",
                After = "{\"n\":" + i + "}",
            }, default);
        }
        var all = await _store.GetAuditAsync(null, 10, default);
        Assert.Equal([4, 3, 2, 1, 0], all.Select(e => int.Parse(e.After![5..^1], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Null(all[^1].Before);
        Assert.Equal(T0.AddSeconds(4), all[0].At);
        Assert.Equal(["{\"n\":4}", "{\"n\":2}"], (await _store.GetAuditAsync("even", 2, default)).Select(e => e.After));
        Assert.Equal(2, (await _store.GetAuditAsync(null, 2, default)).Count);
    }
}
