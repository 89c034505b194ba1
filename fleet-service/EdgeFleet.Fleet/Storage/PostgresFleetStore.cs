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
        UpdateDeviceAsync(hello.DeviceId, now, d => d with
        {
            AgentVersion = hello.AgentVersion,
            HardwareProfile = hello.HardwareProfile,
            BootId = hello.BootId,
            Restarts = d.BootId is not null && d.BootId != hello.BootId ? d.Restarts + 1 : d.Restarts,
            ActiveModel = hello.Models.Count > 0 ? hello.Models[0] : d.ActiveModel,
        }, cancellationToken);

    public Task RecordReportedAsync(ReportedState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(state.DeviceId, now, d => d with { ActiveModel = state.Active, Ota = state.Ota }, cancellationToken);

    public Task RecordOtaStatusAsync(OtaStatusMessage status, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(status.DeviceId, now, d => d with { LastOta = status, Ota = status.State }, cancellationToken);

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

    public async Task<IReadOnlyList<TelemetryStoreResult>> StoreTelemetryAsync(IReadOnlyList<IncomingTelemetry> batches, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        // Rows are locked in one order by every instance, so two instances' group commits cannot deadlock.
        var devices = new Dictionary<string, DeviceRecord>(StringComparer.Ordinal);
        foreach (var id in batches.Select(b => b.Batch.DeviceId).Distinct().Order(StringComparer.Ordinal))
            devices[id] = await LockDeviceAsync(conn, tx, id, now, cancellationToken).ConfigureAwait(false);
        var results = new TelemetryStoreResult[batches.Count];
        for (var i = 0; i < batches.Count; i++)
        {
            var (batch, records) = (batches[i].Batch, batches[i].Records);
            (devices[batch.DeviceId], results[i]) = await StoreBatchAsync(conn, tx, devices[batch.DeviceId], batch, records, now, cancellationToken).ConfigureAwait(false);
        }
        foreach (var device in devices.Values)
            await SaveDeviceAsync(conn, tx, device, cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return results;
    }

    private static async Task<(DeviceRecord, TelemetryStoreResult)> StoreBatchAsync(NpgsqlConnection conn, NpgsqlTransaction tx, DeviceRecord device,
        TelemetryBatch batch, IReadOnlyList<TelemetryRecord> records, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (device.StreamId != batch.StreamId)
            device = device with { StreamId = batch.StreamId, AckedSeq = 0 };

        var bodies = records.Select(r => JsonSerializer.Serialize(r, WireJsonContext.Default.TelemetryRecord)).ToArray();
        var inserted = new HashSet<long>();
        await using (var insert = new NpgsqlCommand("""
            insert into telemetry (device, stream, seq, ts, kind, body)
            select @d, @s, r.seq, r.ts, r.kind, r.body from unnest(@seqs, @ts, @kinds, @bodies) as r(seq, ts, kind, body)
            on conflict do nothing
            returning seq
            """, conn, tx))
        {
            insert.Parameters.AddWithValue("d", batch.DeviceId);
            insert.Parameters.AddWithValue("s", batch.StreamId);
            insert.Parameters.AddWithValue("seqs", records.Select(r => r.Seq).ToArray());
            insert.Parameters.AddWithValue("ts", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, records.Select(r => r.Ts.UtcDateTime).ToArray());
            insert.Parameters.AddWithValue("kinds", records.Select(r => r.Kind.ToString()).ToArray());
            insert.Parameters.AddWithValue("bodies", bodies);
            await using var reader = await insert.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                inserted.Add(reader.GetInt64(0));
        }
        int stored = inserted.Count, duplicates = 0, conflicts = 0;
        var evicted = device.EvictedRecords;
        InferenceSample? lastInference = null;
        var duplicateBodies = new Dictionary<long, string>();
        for (var i = 0; i < records.Count; i++)
        {
            if (inserted.Contains(records[i].Seq))
            {
                lastInference = records[i].Inference ?? lastInference;
                evicted = Math.Max(evicted, records[i].Evictions?.Records ?? 0);
            }
            else
            {
                duplicates++;
                duplicateBodies[records[i].Seq] = bodies[i];
            }
        }
        if (duplicateBodies.Count > 0)
        {
            await using var existing = new NpgsqlCommand("select seq, body from telemetry where device = @d and stream = @s and seq = any(@seqs)", conn, tx);
            existing.Parameters.AddWithValue("d", batch.DeviceId);
            existing.Parameters.AddWithValue("s", batch.StreamId);
            existing.Parameters.AddWithValue("seqs", duplicateBodies.Keys.ToArray());
            await using var reader = await existing.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (reader.GetString(1) != duplicateBodies[reader.GetInt64(0)])
                    conflicts++;
            }
        }

        var (watermark, gaps) = await AdvanceWatermarkAsync(conn, tx, batch, device.AckedSeq, cancellationToken).ConfigureAwait(false);
        foreach (var gap in gaps)
        {
            await using var insertGap = new NpgsqlCommand("insert into telemetry_gaps (device, stream, from_seq, to_seq, recorded_at) values (@d, @s, @f, @t, @at)", conn, tx);
            insertGap.Parameters.AddWithValue("d", batch.DeviceId);
            insertGap.Parameters.AddWithValue("s", batch.StreamId);
            insertGap.Parameters.AddWithValue("f", gap.From);
            insertGap.Parameters.AddWithValue("t", gap.To);
            insertGap.Parameters.AddWithValue("at", now.UtcDateTime);
            await insertGap.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        var skipped = gaps.Sum(g => g.To - g.From + 1);
        device = device with
        {
            LastSeen = now,
            AckedSeq = watermark,
            TelemetryRecords = device.TelemetryRecords + stored,
            SkippedRecords = device.SkippedRecords + skipped,
            EvictedRecords = evicted,
            ConflictingRecords = device.ConflictingRecords + conflicts,
            LastTelemetryAt = stored > 0 ? now : device.LastTelemetryAt,
            LastInference = lastInference ?? device.LastInference,
        };
        return (device, new TelemetryStoreResult(watermark, stored, duplicates, skipped, conflicts));
    }

    /// <summary>
    /// <see cref="TelemetryWatermark.Advance"/> over this database: the stored sequence numbers above the floor
    /// are read in one query (bounded), so the climb through consecutive records costs no query per record.
    /// </summary>
    private static async Task<(long, List<SeqRange>)> AdvanceWatermarkAsync(NpgsqlConnection conn, NpgsqlTransaction tx, TelemetryBatch batch, long current, CancellationToken ct)
    {
        const int Window = 100_000;
        var floor = Math.Max(current, batch.PendingFrom - 1);
        var below = current < batch.PendingFrom - 1 ? await StoredSeqsAsync(conn, tx, batch, current + 1, batch.PendingFrom - 1, int.MaxValue, ct).ConfigureAwait(false) : [];
        var above = await StoredSeqsAsync(conn, tx, batch, floor + 1, long.MaxValue, Window, ct).ConfigureAwait(false);
        var aboveSet = above.ToHashSet();
        var truncated = above.Count == Window;
        var result = TelemetryWatermark.Advance(current, batch.PendingFrom,
            (from, to) => below.Where(s => s >= from && s <= to),
            seq => aboveSet.Contains(seq) || (truncated && seq > above[^1]
                && StoredSeqsAsync(conn, tx, batch, seq, seq, 1, ct).GetAwaiter().GetResult().Count == 1));
        return result;
    }

    private static async Task<List<long>> StoredSeqsAsync(NpgsqlConnection conn, NpgsqlTransaction tx, TelemetryBatch batch, long from, long to, int limit, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("select seq from telemetry where device = @d and stream = @s and seq between @f and @t order by seq limit @l", conn, tx);
        cmd.Parameters.AddWithValue("d", batch.DeviceId);
        cmd.Parameters.AddWithValue("s", batch.StreamId);
        cmd.Parameters.AddWithValue("f", from);
        cmd.Parameters.AddWithValue("t", to);
        cmd.Parameters.AddWithValue("l", limit);
        var seqs = new List<long>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
            seqs.Add(reader.GetInt64(0));
        return seqs;
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

    public async Task<IReadOnlyList<TelemetryRecord>> GetTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select body from telemetry where device = @d order by ts, seq limit @l");
        cmd.Parameters.AddWithValue("d", deviceId);
        cmd.Parameters.AddWithValue("l", limit);
        var records = new List<TelemetryRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            records.Add(JsonSerializer.Deserialize(reader.GetString(0), WireJsonContext.Default.TelemetryRecord)
                ?? throw new InvalidDataException($"a telemetry record of {deviceId} is unreadable"));
        }
        return records;
    }

    private async Task UpdateDeviceAsync(string deviceId, DateTimeOffset now, Func<DeviceRecord, DeviceRecord> change, CancellationToken ct)
    {
        await using var conn = await _db.OpenConnectionAsync(ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        var device = change(await LockDeviceAsync(conn, tx, deviceId, now, ct).ConfigureAwait(false)) with { LastSeen = now };
        await SaveDeviceAsync(conn, tx, device, ct).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
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
