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

    public Task<(Rollout Before, Rollout After)?> UpdateRolloutAsync(string id, Func<Rollout, Rollout?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync("rollouts", "id", id, FleetStoreJsonContext.Default.Rollout, change, r => r with { Id = id }, cancellationToken);

    private static Rollout ToRollout(string json) => JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.Rollout)!;
}
