using System.Text.Json;
using EdgeFleet.Fleet.Models;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>The model registry in PostgreSQL. Adding a version locks its model's row, so versions grow strictly across instances.</summary>
public sealed partial class PostgresFleetStore
{
    public async Task<bool> CreateModelAsync(RegisteredModel model, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into models (id, doc) values (@id, @doc::jsonb) on conflict (id) do nothing");
        cmd.Parameters.AddWithValue("id", model.Id);
        cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(model, FleetStoreJsonContext.Default.RegisteredModel));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<RegisteredModel?> GetModelAsync(string id, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from models where id = @id");
        cmd.Parameters.AddWithValue("id", id);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? ToModel(doc) : null;
    }

    public async Task<IReadOnlyList<RegisteredModel>> ListModelsAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from models order by id collate \"C\"");
        var models = new List<RegisteredModel>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            models.Add(ToModel(reader.GetString(0)));
        return models;
    }

    public async Task<(bool Added, long Latest)> AddModelVersionAsync(ModelVersion version, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var lockModel = new NpgsqlCommand("select 1 from models where id = @id for update", conn, tx))
        {
            lockModel.Parameters.AddWithValue("id", version.ModelId);
            if (await lockModel.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null)
                throw new InvalidOperationException($"model {version.ModelId} is not registered");
        }
        long latest;
        await using (var max = new NpgsqlCommand("select coalesce(max(version), 0) from model_versions where model_id = @id", conn, tx))
        {
            max.Parameters.AddWithValue("id", version.ModelId);
            latest = (long)(await max.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
        if (version.Version <= latest)
            return (false, latest);
        await using (var insert = new NpgsqlCommand("insert into model_versions (model_id, version, doc) values (@id, @v, @doc::jsonb)", conn, tx))
        {
            insert.Parameters.AddWithValue("id", version.ModelId);
            insert.Parameters.AddWithValue("v", version.Version);
            insert.Parameters.AddWithValue("doc", VersionJson(version));
            await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (true, latest);
    }

    public async Task<ModelVersion?> GetModelVersionAsync(string modelId, long version, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from model_versions where model_id = @id and version = @v");
        cmd.Parameters.AddWithValue("id", modelId);
        cmd.Parameters.AddWithValue("v", version);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? ToVersion(doc) : null;
    }

    public async Task<IReadOnlyList<ModelVersion>> ListModelVersionsAsync(string modelId, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from model_versions where model_id = @id order by version desc");
        cmd.Parameters.AddWithValue("id", modelId);
        var versions = new List<ModelVersion>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            versions.Add(ToVersion(reader.GetString(0)));
        return versions;
    }

    public async Task<(ModelVersion Before, ModelVersion After)?> UpdateModelVersionAsync(string modelId, long version, Func<ModelVersion, ModelVersion> change, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        ModelVersion before;
        await using (var select = new NpgsqlCommand("select doc::text from model_versions where model_id = @id and version = @v for update", conn, tx))
        {
            select.Parameters.AddWithValue("id", modelId);
            select.Parameters.AddWithValue("v", version);
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string doc)
                return null;
            before = ToVersion(doc);
        }
        var after = change(before) with { ModelId = modelId, Version = version };
        await using (var save = new NpgsqlCommand("update model_versions set doc = @doc::jsonb where model_id = @id and version = @v", conn, tx))
        {
            save.Parameters.AddWithValue("id", modelId);
            save.Parameters.AddWithValue("v", version);
            save.Parameters.AddWithValue("doc", VersionJson(after));
            await save.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (before, after);
    }

    private static string VersionJson(ModelVersion version) => JsonSerializer.Serialize(version, FleetStoreJsonContext.Default.ModelVersion);

    private static RegisteredModel ToModel(string json) =>
        JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.RegisteredModel) ?? throw new InvalidDataException("a model is unreadable");

    private static ModelVersion ToVersion(string json) =>
        JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.ModelVersion) ?? throw new InvalidDataException("a model version is unreadable");
}
