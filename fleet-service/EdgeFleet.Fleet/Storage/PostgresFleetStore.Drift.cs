using System.Text.Json;
using EdgeFleet.Fleet.Drift;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Drift sketches in PostgreSQL: one row per (model, version, window, device); a sketch sent again replaces the first.</summary>
public sealed partial class PostgresFleetStore
{
    public async Task UpsertSketchesAsync(IReadOnlyList<StoredSketch> sketches, CancellationToken cancellationToken)
    {
        if (sketches.Count == 0)
            return;
        await using var batch = _db.CreateBatch();
        foreach (var s in sketches)
        {
            var cmd = new NpgsqlBatchCommand("""
                insert into drift_sketches (model, version, window_from, device, body) values (@m, @v, @f, @d, @b)
                on conflict (model, version, window_from, device) do update set body = excluded.body
                """);
            cmd.Parameters.AddWithValue("m", s.Window.Model);
            cmd.Parameters.AddWithValue("v", s.Window.Version);
            cmd.Parameters.AddWithValue("f", s.Window.From.UtcDateTime);
            cmd.Parameters.AddWithValue("d", s.DeviceId);
            cmd.Parameters.AddWithValue("b", JsonSerializer.Serialize(s.Window, FleetStoreJsonContext.Default.SketchWindow));
            batch.BatchCommands.Add(cmd);
        }
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<StoredSketch>> GetSketchesAsync(string model, string version, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("""
            select device, body from drift_sketches where model = @m and version = @v and window_from >= @from and window_from < @to order by window_from, device
            """);
        cmd.Parameters.AddWithValue("m", model);
        cmd.Parameters.AddWithValue("v", version);
        cmd.Parameters.AddWithValue("from", from.UtcDateTime);
        cmd.Parameters.AddWithValue("to", to.UtcDateTime);
        var list = new List<StoredSketch>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            list.Add(new StoredSketch(reader.GetString(0), JsonSerializer.Deserialize(reader.GetString(1), FleetStoreJsonContext.Default.SketchWindow)!));
        return list;
    }

    public async Task<bool> CreateDriftAlertAsync(DriftAlert alert, CancellationToken cancellationToken)
    {
        // The partial unique index on key (active alerts only) decides between instances.
        await using var cmd = _db.CreateCommand("""
            insert into drift_alerts (id, key, state, opened_at, doc) values (@id, @key, @state, @at, @doc::jsonb) on conflict do nothing
            """);
        cmd.Parameters.AddWithValue("id", alert.Id);
        cmd.Parameters.AddWithValue("key", alert.Key);
        cmd.Parameters.AddWithValue("state", alert.State);
        cmd.Parameters.AddWithValue("at", alert.OpenedAt.UtcDateTime);
        cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(alert, FleetStoreJsonContext.Default.DriftAlert));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<IReadOnlyList<DriftAlert>> ListDriftAlertsAsync(bool activeOnly, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand($"select doc::text from drift_alerts {(activeOnly ? "where state <> 'resolved'" : "")} order by opened_at desc, id limit @limit");
        cmd.Parameters.AddWithValue("limit", limit);
        return await ReadDocumentsAsync(cmd, FleetStoreJsonContext.Default.DriftAlert, cancellationToken).ConfigureAwait(false);
    }

    public Task<(DriftAlert Before, DriftAlert After)?> UpdateDriftAlertAsync(string id, Func<DriftAlert, DriftAlert?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync("drift_alerts", "id", id, FleetStoreJsonContext.Default.DriftAlert, a => change(a) is { } c && c != a ? c : null, a => a with { Id = id },
            cancellationToken, ("state", a => a.State));
}
