using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.Wire;
using Npgsql;
using NpgsqlTypes;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// The PostgreSQL store, for fleets that outgrow one machine: several fleet-service instances may share it.
/// A device's registry row is locked (<c>select … for update</c>) for the length of each change, so batches of
/// one device stored by two instances at once serialise and the watermark never runs ahead; telemetry is
/// unique per (device, stream, sequence), so a redelivered record is stored once whichever instance gets it.
/// </summary>
public sealed partial class PostgresFleetStore : IFleetStore
{
    private readonly NpgsqlDataSource _db;

    private PostgresFleetStore(NpgsqlDataSource db) => _db = db;

    /// <summary>Connects, migrates the schema to the current version, and refuses a schema newer than this build.</summary>
    public static async Task<PostgresFleetStore> OpenAsync(string connectionString, CancellationToken ct)
    {
        var db = NpgsqlDataSource.Create(connectionString);
        try
        {
            var current = await PostgresMigrations.CurrentAsync(db, ct).ConfigureAwait(false);
            var latest = PostgresMigrations.All[^1].Version;
            if (current > latest)
                throw new InvalidOperationException($"the database schema is version {current}, newer than this fleet service knows ({latest}); upgrade the fleet service");
            await PostgresMigrations.ApplyAsync(db, ct).ConfigureAwait(false);
            return new PostgresFleetStore(db);
        }
        catch
        {
            await db.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public Task RecordHelloAsync(HelloMessage hello, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(hello.DeviceId, now, d => d.WithHello(hello), cancellationToken);

    public Task RecordReportedAsync(ReportedState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(state.DeviceId, now, d => d.WithReported(state), cancellationToken);

    public Task RecordOtaStatusAsync(OtaStatusMessage status, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(status.DeviceId, now, d => d.WithOtaStatus(status), cancellationToken);

    public async Task SetDesiredAsync(string deviceId, byte[] payload, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into desired (device, payload) values (@d, @p) on conflict (device) do update set payload = excluded.payload");
        cmd.Parameters.AddWithValue("d", deviceId);
        cmd.Parameters.AddWithValue("p", payload);
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<(string DeviceId, byte[] Payload)>> ListDesiredAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select device, payload from desired order by device");
        var result = new List<(string, byte[])>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            result.Add((reader.GetString(0), (byte[])reader[1]));
        return result;
    }

    public async Task<byte[]?> GetDesiredAsync(string deviceId, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select payload from desired where device = @d");
        cmd.Parameters.AddWithValue("d", deviceId);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as byte[];
    }

    public async Task<IReadOnlyList<TelemetryStoreResult>> StoreTelemetryAsync(IReadOnlyList<IncomingTelemetry> batches, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var devices = await LockDevicesAsync(conn, tx, [.. batches.Select(b => b.Batch.DeviceId).Distinct()], now, cancellationToken).ConfigureAwait(false);
        var results = new TelemetryStoreResult[batches.Count];
        await using var writes = new NpgsqlBatch(conn, tx);
        for (var i = 0; i < batches.Count; i++)
        {
            var (batch, records) = (batches[i].Batch, batches[i].Records);
            (devices[batch.DeviceId], results[i]) = await StoreBatchAsync(conn, tx, writes, devices[batch.DeviceId], batch, records, now, cancellationToken).ConfigureAwait(false);
        }
        foreach (var device in devices.Values)
        {
            var save = new NpgsqlBatchCommand("update devices set doc = @doc::jsonb where id = @id");
            save.Parameters.AddWithValue("id", device.Id);
            save.Parameters.AddWithValue("doc", ToJson(device));
            writes.BatchCommands.Add(save);
        }
        await writes.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return results;
    }

    /// <summary>
    /// One batch: <see cref="BatchPlan"/> decides what is new; those records become one segment row. The writes
    /// are queued on <paramref name="writes"/> and sent in one round trip for the group.
    /// </summary>
    private static async Task<(DeviceRecord, TelemetryStoreResult)> StoreBatchAsync(NpgsqlConnection conn, NpgsqlTransaction tx, NpgsqlBatch writes, DeviceRecord device,
        TelemetryBatch batch, IReadOnlyList<TelemetryRecord> records, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var plan = BatchPlan.For(device, batch, records);
        var fresh = plan.Fresh;
        if (fresh.Count > 0)
        {
            var insert = new NpgsqlBatchCommand("""
                insert into telemetry_segments (device, stream, first_seq, last_seq, first_ts, seqs, bodies) values (@d, @s, @f, @l, @ts, @seqs, @bodies)
                """);
            insert.Parameters.AddWithValue("d", batch.DeviceId);
            insert.Parameters.AddWithValue("s", batch.StreamId);
            insert.Parameters.AddWithValue("f", fresh[0].Seq);
            insert.Parameters.AddWithValue("l", fresh[^1].Seq);
            insert.Parameters.AddWithValue("ts", fresh.Min(r => r.Ts).UtcDateTime);
            insert.Parameters.AddWithValue("seqs", fresh.Select(r => r.Seq).ToArray());
            insert.Parameters.AddWithValue("bodies", fresh.Select(r => r.Body).ToArray());
            writes.BatchCommands.Add(insert);
        }
        foreach (var gap in plan.Outcome.Gaps)
        {
            var insertGap = new NpgsqlBatchCommand("insert into telemetry_gaps (device, stream, from_seq, to_seq, recorded_at) values (@d, @s, @f, @t, @at)");
            insertGap.Parameters.AddWithValue("d", batch.DeviceId);
            insertGap.Parameters.AddWithValue("s", batch.StreamId);
            insertGap.Parameters.AddWithValue("f", gap.From);
            insertGap.Parameters.AddWithValue("t", gap.To);
            insertGap.Parameters.AddWithValue("at", now.UtcDateTime);
            writes.BatchCommands.Add(insertGap);
        }
        var conflicts = plan.Repeated.Count > 0 ? await CountConflictsAsync(conn, tx, batch, plan.Repeated, cancellationToken).ConfigureAwait(false) : 0;
        return plan.Complete(conflicts, now);
    }

    /// <summary>Redelivered records whose content differs from the stored copy; searched in the newest segments that can hold them.</summary>
    private static async Task<int> CountConflictsAsync(NpgsqlConnection conn, NpgsqlTransaction tx, TelemetryBatch batch, Dictionary<long, string> repeated, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("""
            select seqs, bodies from telemetry_segments
            where device = @d and stream = @s and first_seq <= @max and last_seq >= @min
            order by first_seq desc limit 1000
            """, conn, tx);
        cmd.Parameters.AddWithValue("d", batch.DeviceId);
        cmd.Parameters.AddWithValue("s", batch.StreamId);
        cmd.Parameters.AddWithValue("max", repeated.Keys.Max());
        cmd.Parameters.AddWithValue("min", repeated.Keys.Min());
        var conflicts = 0;
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var seqs = (long[])reader[0];
            var bodies = (string[])reader[1];
            for (var i = 0; i < seqs.Length; i++)
            {
                if (repeated.TryGetValue(seqs[i], out var sent))
                    conflicts += sent == bodies[i] ? 0 : 1;
            }
        }
        return conflicts;
    }

    public async Task<IReadOnlyList<TelemetryGap>> GetGapsAsync(string deviceId, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select device, stream, from_seq, to_seq, recorded_at from telemetry_gaps where device = @d order by recorded_at, from_seq limit @l");
        cmd.Parameters.AddWithValue("d", deviceId);
        cmd.Parameters.AddWithValue("l", limit);
        var gaps = new List<TelemetryGap>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            gaps.Add(new TelemetryGap(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3), Time(reader, 4)));
        return gaps;
    }

    public async Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc from devices order by id collate \"C\"");
        var devices = new List<DeviceRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            devices.Add(FromJson(reader.GetString(0)));
        return devices;
    }

    public async Task<DeviceRecord?> GetDeviceAsync(string deviceId, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc from devices where id = @id");
        cmd.Parameters.AddWithValue("id", deviceId);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? FromJson(doc) : null;
    }

    public async Task<IReadOnlyList<TelemetryRecord>> GetRecentTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken)
    {
        // Newest segments first, until they hold enough records.
        await using var cmd = _db.CreateCommand("select seqs, bodies from telemetry_segments where device = @d order by first_seq desc");
        cmd.Parameters.AddWithValue("d", deviceId);
        var records = new List<(long Seq, string Body)>();
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (records.Count < limit && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var seqs = (long[])reader[0];
                var bodies = (string[])reader[1];
                for (var i = 0; i < seqs.Length; i++)
                    records.Add((seqs[i], bodies[i]));
            }
        }
        return [.. records.OrderByDescending(r => r.Seq).Take(limit).Select(r => JsonSerializer.Deserialize(r.Body, WireJsonContext.Default.TelemetryRecord)
            ?? throw new InvalidDataException($"a telemetry record of {deviceId} is unreadable"))];
    }

    public async Task<IReadOnlyList<TelemetryRecord>> GetTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select bodies from telemetry_segments where device = @d");
        cmd.Parameters.AddWithValue("d", deviceId);
        var records = new List<TelemetryRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            foreach (var body in (string[])reader[0])
            {
                records.Add(JsonSerializer.Deserialize(body, WireJsonContext.Default.TelemetryRecord)
                    ?? throw new InvalidDataException($"a telemetry record of {deviceId} is unreadable"));
            }
        }
        return [.. records.OrderBy(r => r.Ts).ThenBy(r => r.Seq).Take(limit)];
    }

    private async Task UpdateDeviceAsync(string deviceId, DateTimeOffset now, Func<DeviceRecord, DeviceRecord> change, CancellationToken ct)
    {
        await using var conn = await _db.OpenConnectionAsync(ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        var device = change(await LockDeviceAsync(conn, tx, deviceId, now, ct).ConfigureAwait(false)) with { LastSeen = now };
        await SaveDeviceAsync(conn, tx, device, ct).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Creates missing rows and locks all of them until the transaction ends, in id order: every instance
    /// locks in the same order, so two instances' group commits cannot deadlock.
    /// </summary>
    private static async Task<Dictionary<string, DeviceRecord>> LockDevicesAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string[] ids, DateTimeOffset now, CancellationToken ct)
    {
        await using (var ensure = new NpgsqlCommand("insert into devices (id, doc) select * from unnest(@ids, @docs::jsonb[]) on conflict (id) do nothing", conn, tx))
        {
            ensure.Parameters.AddWithValue("ids", ids);
            ensure.Parameters.AddWithValue("docs", ids.Select(id => ToJson(new DeviceRecord { Id = id, FirstSeen = now, LastSeen = now })).ToArray());
            await ensure.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        await using var select = new NpgsqlCommand("select doc from devices where id = any(@ids) order by id collate \"C\" for update", conn, tx);
        select.Parameters.AddWithValue("ids", ids);
        var devices = new Dictionary<string, DeviceRecord>(StringComparer.Ordinal);
        await using var reader = await select.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var device = FromJson(reader.GetString(0));
            devices[device.Id] = device;
        }
        return devices;
    }

    /// <summary>Creates the device's row if needed and locks it until the transaction ends.</summary>
    private static async Task<DeviceRecord> LockDeviceAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string deviceId, DateTimeOffset now, CancellationToken ct)
    {
        await using (var ensure = new NpgsqlCommand("insert into devices (id, doc) values (@id, @doc::jsonb) on conflict (id) do nothing", conn, tx))
        {
            ensure.Parameters.AddWithValue("id", deviceId);
            ensure.Parameters.AddWithValue("doc", ToJson(new DeviceRecord { Id = deviceId, FirstSeen = now, LastSeen = now }));
            await ensure.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        await using var select = new NpgsqlCommand("select doc from devices where id = @id for update", conn, tx);
        select.Parameters.AddWithValue("id", deviceId);
        return FromJson((string)(await select.ExecuteScalarAsync(ct).ConfigureAwait(false))!);
    }

    private static async Task SaveDeviceAsync(NpgsqlConnection conn, NpgsqlTransaction tx, DeviceRecord device, CancellationToken ct)
    {
        await using var save = new NpgsqlCommand("update devices set doc = @doc::jsonb where id = @id", conn, tx);
        save.Parameters.AddWithValue("id", device.Id);
        save.Parameters.AddWithValue("doc", ToJson(device));
        await save.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    private static string ToJson(DeviceRecord device) => JsonSerializer.Serialize(device, FleetStoreJsonContext.Default.DeviceRecord);

    private static DeviceRecord FromJson(string json) =>
        JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.DeviceRecord) ?? throw new InvalidDataException("a device record is unreadable");

    private static DateTimeOffset Time(NpgsqlDataReader reader, int column) => new(reader.GetDateTime(column), TimeSpan.Zero);

    public void Dispose() => _db.Dispose();
}
