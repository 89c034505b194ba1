using System.Text.Json;
using EdgeFleet.Fleet.Retraining;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// Hard examples, retraining policies and jobs in PostgreSQL. A partial unique index keeps one open job per model,
/// whichever instance queues it.
/// </summary>
public sealed partial class PostgresFleetStore
{
    public async Task AddHardExamplesAsync(IReadOnlyList<StoredHardExample> examples, CancellationToken cancellationToken)
    {
        if (examples.Count == 0)
            return;
        await using var batch = _db.CreateBatch();
        foreach (var e in examples)
        {
            var cmd = new NpgsqlBatchCommand("insert into hard_examples (id, model, device, ts, doc) values (@id, @m, @d, @ts, @doc::jsonb) on conflict (id) do nothing");
            cmd.Parameters.AddWithValue("id", e.Id);
            cmd.Parameters.AddWithValue("m", e.Example.Model);
            cmd.Parameters.AddWithValue("d", e.DeviceId);
            cmd.Parameters.AddWithValue("ts", e.Ts.UtcDateTime);
            cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(e, FleetStoreJsonContext.Default.StoredHardExample));
            batch.BatchCommands.Add(cmd);
        }
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<StoredHardExample>> ListHardExamplesAsync(string model, DateTimeOffset from, DateTimeOffset to, string? deviceId, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand($"""
            select doc::text from hard_examples where model = @m and ts >= @from and ts < @to {(deviceId is null ? "" : "and device = @d")} order by ts desc, id limit @limit
            """);
        cmd.Parameters.AddWithValue("m", model);
        cmd.Parameters.AddWithValue("from", from.UtcDateTime);
        cmd.Parameters.AddWithValue("to", to.UtcDateTime);
        cmd.Parameters.AddWithValue("limit", limit);
        if (deviceId is not null)
            cmd.Parameters.AddWithValue("d", deviceId);
        return await ReadDocumentsAsync(cmd, FleetStoreJsonContext.Default.StoredHardExample, cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<StoredHardExample>> GetHardExamplesAsync(IReadOnlyCollection<string> ids, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from hard_examples where id = any(@ids)");
        cmd.Parameters.AddWithValue("ids", ids.ToArray());
        return await ReadDocumentsAsync(cmd, FleetStoreJsonContext.Default.StoredHardExample, cancellationToken).ConfigureAwait(false);
    }

    public async Task<int> LabelHardExamplesAsync(IReadOnlyCollection<string> ids, string label, string by, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("""
            update hard_examples set doc = doc || jsonb_build_object('label', @label::text, 'labelledBy', @by::text, 'labelledAt', @at::text) where id = any(@ids)
            """);
        cmd.Parameters.AddWithValue("ids", ids.ToArray());
        cmd.Parameters.AddWithValue("label", label);
        cmd.Parameters.AddWithValue("by", by);
        cmd.Parameters.AddWithValue("at", at.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task PutRetrainingPolicyAsync(RetrainingPolicy policy, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into retraining_policies (model, doc) values (@m, @doc::jsonb) on conflict (model) do update set doc = excluded.doc");
        cmd.Parameters.AddWithValue("m", policy.ModelId);
        cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(policy, FleetStoreJsonContext.Default.RetrainingPolicy));
        await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<RetrainingPolicy>> ListRetrainingPoliciesAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from retraining_policies order by model");
        return await ReadDocumentsAsync(cmd, FleetStoreJsonContext.Default.RetrainingPolicy, cancellationToken).ConfigureAwait(false);
    }

    public async Task<bool> DeleteRetrainingPolicyAsync(string modelId, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("delete from retraining_policies where model = @m");
        cmd.Parameters.AddWithValue("m", modelId);
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<bool> CreateRetrainingJobAsync(RetrainingJob job, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("""
            insert into retraining_jobs (id, model, state, created_at, doc) values (@id, @m, @state, @at, @doc::jsonb) on conflict do nothing
            """);
        cmd.Parameters.AddWithValue("id", job.Id);
        cmd.Parameters.AddWithValue("m", job.ModelId);
        cmd.Parameters.AddWithValue("state", job.State);
        cmd.Parameters.AddWithValue("at", job.CreatedAt.UtcDateTime);
        cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(job, FleetStoreJsonContext.Default.RetrainingJob));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<RetrainingJob?> GetRetrainingJobAsync(string id, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from retraining_jobs where id = @id");
        cmd.Parameters.AddWithValue("id", id);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? JsonSerializer.Deserialize(doc, FleetStoreJsonContext.Default.RetrainingJob) : null;
    }

    public async Task<IReadOnlyList<RetrainingJob>> ListRetrainingJobsAsync(string? modelId, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand($"select doc::text from retraining_jobs {(modelId is null ? "" : "where model = @m")} order by created_at desc, id limit @limit");
        if (modelId is not null)
            cmd.Parameters.AddWithValue("m", modelId);
        cmd.Parameters.AddWithValue("limit", limit);
        return await ReadDocumentsAsync(cmd, FleetStoreJsonContext.Default.RetrainingJob, cancellationToken).ConfigureAwait(false);
    }

    public Task<(RetrainingJob Before, RetrainingJob After)?> UpdateRetrainingJobAsync(string id, Func<RetrainingJob, RetrainingJob?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync("retraining_jobs", "id", id, FleetStoreJsonContext.Default.RetrainingJob, j => change(j) is { } c && c != j ? c : null, j => j with { Id = id },
            cancellationToken, ("state", j => j.State));
}
