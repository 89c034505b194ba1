using System.Text.Json;
using EdgeFleet.Fleet.Identity;
using Npgsql;
using NpgsqlTypes;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Enrollment tokens, device keys, API keys and the audit log in PostgreSQL.</summary>
public sealed partial class PostgresFleetStore
{
    public async Task CreateEnrollmentTokenAsync(EnrollmentTokenRecord token, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("""
            insert into enrollment_tokens (hash, created_by, created_at, expires_at, uses_left, note, tags)
            values (@h, @by, @at, @exp, @uses, @note, @tags::jsonb)
            """);
        cmd.Parameters.AddWithValue("h", token.Hash);
        cmd.Parameters.AddWithValue("by", token.CreatedBy);
        cmd.Parameters.AddWithValue("at", token.CreatedAt.UtcDateTime);
        cmd.Parameters.AddWithValue("exp", token.ExpiresAt.UtcDateTime);
        cmd.Parameters.AddWithValue("uses", token.UsesLeft);
        cmd.Parameters.AddWithValue("note", (object?)token.Note ?? DBNull.Value);
        cmd.Parameters.AddWithValue("tags", TagsJson(token.Tags));
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<EnrollOutcome> EnrollAsync(string tokenHash, DeviceCredential credential, string? hardwareProfile, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        DateTimeOffset expires;
        int usesLeft;
        string tagsJson;
        await using (var token = new NpgsqlCommand("select expires_at, uses_left, tags::text from enrollment_tokens where hash = @h for update", conn, tx))
        {
            token.Parameters.AddWithValue("h", tokenHash);
            await using var reader = await token.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                return EnrollOutcome.InvalidToken;
            expires = Time(reader, 0);
            usesLeft = reader.GetInt32(1);
            tagsJson = reader.GetString(2);
        }
        if (await ReadCredentialAsync(conn, tx, credential.DeviceId, cancellationToken).ConfigureAwait(false) is { } known)
        {
            if (known.Revoked)
                return EnrollOutcome.DeviceRevoked;
            return known.PublicKey.AsSpan().SequenceEqual(credential.PublicKey) && known.EnrolledWith == tokenHash
                ? EnrollOutcome.Enrolled
                : EnrollOutcome.DeviceIdTaken;
        }
        if (expires <= now)
            return EnrollOutcome.TokenExpired;
        if (usesLeft <= 0)
            return EnrollOutcome.TokenUsed;
        await using (var use = new NpgsqlCommand("update enrollment_tokens set uses_left = uses_left - 1 where hash = @h", conn, tx))
        {
            use.Parameters.AddWithValue("h", tokenHash);
            await use.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await using (var insert = new NpgsqlCommand("""
            insert into device_credentials (device_id, public_key, enrolled_at, enrolled_with) values (@d, @k, @at, @with)
            on conflict (device_id) do nothing
            """, conn, tx))
        {
            insert.Parameters.AddWithValue("d", credential.DeviceId);
            insert.Parameters.AddWithValue("k", credential.PublicKey);
            insert.Parameters.AddWithValue("at", credential.EnrolledAt.UtcDateTime);
            insert.Parameters.AddWithValue("with", credential.EnrolledWith);
            // Another instance enrolled the same id in the meantime: that one wins.
            if (await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
                return EnrollOutcome.DeviceIdTaken;
        }
        var device = await LockDeviceAsync(conn, tx, credential.DeviceId, now, cancellationToken).ConfigureAwait(false);
        var tags = new Dictionary<string, string>(device.Tags, StringComparer.Ordinal);
        foreach (var (k, v) in JsonSerializer.Deserialize(tagsJson, FleetStoreJsonContext.Default.DictionaryStringString) ?? [])
            tags[k] = v;
        await SaveDeviceAsync(conn, tx, device with { Tags = tags, EnrolledAt = now, HardwareProfile = device.HardwareProfile ?? hardwareProfile }, cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return EnrollOutcome.Enrolled;
    }

    public async Task<DeviceCredential?> GetCredentialAsync(string deviceId, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await ReadCredentialAsync(conn, null, deviceId, cancellationToken).ConfigureAwait(false);
    }

    public async Task<bool> RevokeDeviceAsync(string deviceId, string by, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var revoke = new NpgsqlCommand("""
            update device_credentials set revoked_at = coalesce(revoked_at, @at), revoked_by = coalesce(revoked_by, @by) where device_id = @d
            """, conn, tx))
        {
            revoke.Parameters.AddWithValue("d", deviceId);
            revoke.Parameters.AddWithValue("at", now.UtcDateTime);
            revoke.Parameters.AddWithValue("by", by);
            if (await revoke.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
                return false;
        }
        var device = await LockDeviceAsync(conn, tx, deviceId, now, cancellationToken).ConfigureAwait(false);
        if (device.RevokedAt is null)
            await SaveDeviceAsync(conn, tx, device with { RevokedAt = now }, cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }

    public async Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("""
            insert into api_keys (id, name, role, secret_hash, created_at, created_by, revoked_at) values (@id, @n, @r, @h, @at, @by, @rev)
            """);
        cmd.Parameters.AddWithValue("id", key.Id);
        cmd.Parameters.AddWithValue("n", key.Name);
        cmd.Parameters.AddWithValue("r", key.Role.ToString());
        cmd.Parameters.AddWithValue("h", key.SecretHash);
        cmd.Parameters.AddWithValue("at", key.CreatedAt.UtcDateTime);
        cmd.Parameters.AddWithValue("by", key.CreatedBy);
        cmd.Parameters.AddWithValue("rev", NpgsqlDbType.TimestampTz, (object?)key.RevokedAt?.UtcDateTime ?? DBNull.Value);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<ApiKeyRecord?> GetApiKeyAsync(string id, CancellationToken cancellationToken) =>
        (await ReadApiKeysAsync("where id = @id", id, cancellationToken).ConfigureAwait(false)).SingleOrDefault();

    public async Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken) =>
        await ReadApiKeysAsync("order by created_at", null, cancellationToken).ConfigureAwait(false);

    public async Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("update api_keys set revoked_at = coalesce(revoked_at, @at) where id = @id");
        cmd.Parameters.AddWithValue("id", id);
        cmd.Parameters.AddWithValue("at", now.UtcDateTime);
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
    }

    public async Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into audit (at, actor, action, target, before, after) values (@at, @actor, @action, @target, @before, @after)");
        cmd.Parameters.AddWithValue("at", entry.At.UtcDateTime);
        cmd.Parameters.AddWithValue("actor", entry.Actor);
        cmd.Parameters.AddWithValue("action", entry.Action);
        cmd.Parameters.AddWithValue("target", entry.Target);
        cmd.Parameters.AddWithValue("before", NpgsqlDbType.Text, (object?)entry.Before ?? DBNull.Value);
        cmd.Parameters.AddWithValue("after", NpgsqlDbType.Text, (object?)entry.After ?? DBNull.Value);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<AuditEntry>> GetAuditAsync(string? target, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand(target is null
            ? "select id, at, actor, action, target, before, after from audit order by id desc limit @l"
            : "select id, at, actor, action, target, before, after from audit where target = @t order by id desc limit @l");
        cmd.Parameters.AddWithValue("l", limit);
        if (target is not null)
            cmd.Parameters.AddWithValue("t", target);
        var entries = new List<AuditEntry>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            entries.Add(new AuditEntry
            {
                Id = reader.GetInt64(0),
                At = Time(reader, 1),
                Actor = reader.GetString(2),
                Action = reader.GetString(3),
                Target = reader.GetString(4),
                Before = reader.IsDBNull(5) ? null : reader.GetString(5),
                After = reader.IsDBNull(6) ? null : reader.GetString(6),
            });
        }
        return entries;
    }

    private static async Task<DeviceCredential?> ReadCredentialAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string deviceId, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("select public_key, enrolled_at, enrolled_with, revoked_at, revoked_by from device_credentials where device_id = @d", conn, tx);
        cmd.Parameters.AddWithValue("d", deviceId);
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        if (!await reader.ReadAsync(ct).ConfigureAwait(false))
            return null;
        return new DeviceCredential
        {
            DeviceId = deviceId,
            PublicKey = (byte[])reader[0],
            EnrolledAt = Time(reader, 1),
            EnrolledWith = reader.GetString(2),
            RevokedAt = reader.IsDBNull(3) ? null : Time(reader, 3),
            RevokedBy = reader.IsDBNull(4) ? null : reader.GetString(4),
        };
    }

    private async Task<List<ApiKeyRecord>> ReadApiKeysAsync(string clause, string? id, CancellationToken ct)
    {
        await using var cmd = _db.CreateCommand($"select id, name, role, secret_hash, created_at, created_by, revoked_at from api_keys {clause}");
        if (id is not null)
            cmd.Parameters.AddWithValue("id", id);
        var keys = new List<ApiKeyRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            keys.Add(new ApiKeyRecord
            {
                Id = reader.GetString(0),
                Name = reader.GetString(1),
                Role = Enum.Parse<OperatorRole>(reader.GetString(2)),
                SecretHash = reader.GetString(3),
                CreatedAt = Time(reader, 4),
                CreatedBy = reader.GetString(5),
                RevokedAt = reader.IsDBNull(6) ? null : Time(reader, 6),
            });
        }
        return keys;
    }

    private static string TagsJson(IReadOnlyDictionary<string, string> tags) =>
        JsonSerializer.Serialize(new Dictionary<string, string>(tags), FleetStoreJsonContext.Default.DictionaryStringString);
}
