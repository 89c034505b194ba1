using System.Text.Json;
using EdgeFleet.Fleet.Rollouts;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Rollouts in PostgreSQL: one row per rollout; an update locks the row, so instances do not overwrite each other.</summary>
public sealed partial class PostgresFleetStore
{
    public async Task<bool> CreateRolloutAsync(Rollout rollout, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into rollouts (id, created_at, doc) values (@id, @at, @doc::jsonb) on conflict (id) do nothing");
        cmd.Parameters.AddWithValue("id", rollout.Id);
        cmd.Parameters.AddWithValue("at", rollout.CreatedAt);
        cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(rollout, FleetStoreJsonContext.Default.Rollout));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<Rollout?> GetRolloutAsync(string id, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from rollouts where id = @id");
        cmd.Parameters.AddWithValue("id", id);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? ToRollout(doc) : null;
    }

    public async Task<IReadOnlyList<Rollout>> ListRolloutsAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from rollouts order by created_at desc, id");
        var list = new List<Rollout>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            list.Add(ToRollout(reader.GetString(0)));
        return list;
    }

    public async Task<(Rollout Before, Rollout After)?> UpdateRolloutAsync(string id, Func<Rollout, Rollout?> change, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        Rollout before;
        await using (var select = new NpgsqlCommand("select doc::text from rollouts where id = @id for update", conn, tx))
        {
            select.Parameters.AddWithValue("id", id);
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string doc)
                return null;
            before = ToRollout(doc);
        }
        if (change(before) is not { } changed)
            return null;
        var after = changed with { Id = id };
        await using (var update = new NpgsqlCommand("update rollouts set doc = @doc::jsonb where id = @id", conn, tx))
        {
            update.Parameters.AddWithValue("id", id);
            update.Parameters.AddWithValue("doc", JsonSerializer.Serialize(after, FleetStoreJsonContext.Default.Rollout));
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (before, after);
    }

    private static Rollout ToRollout(string json) => JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.Rollout)!;
}
