using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Rows that hold a record as a JSON document (rollouts, users, drift alerts): an atomic read-change-write.</summary>
public sealed partial class PostgresFleetStore
{
    /// <summary>
    /// Locks the row of <paramref name="table"/> whose <paramref name="keyColumn"/> is <paramref name="key"/>, applies
    /// <paramref name="change"/> (null leaves the row as it is), keeps what <paramref name="keep"/> restores (the key),
    /// and writes the document and <paramref name="columns"/> back, in one transaction; null when there is no such
    /// row or nothing was changed.
    /// </summary>
    private async Task<(T Before, T After)?> UpdateDocumentAsync<T>(string table, string keyColumn, string key, JsonTypeInfo<T> type,
        Func<T, T?> change, Func<T, T> keep, CancellationToken ct, params (string Column, Func<T, object> Value)[] columns) where T : class
    {
        await using var conn = await _db.OpenConnectionAsync(ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        T before;
        await using (var select = new NpgsqlCommand($"select doc::text from {table} where {keyColumn} = @key for update", conn, tx))
        {
            select.Parameters.AddWithValue("key", key);
            if (await select.ExecuteScalarAsync(ct).ConfigureAwait(false) is not string doc)
                return null;
            before = JsonSerializer.Deserialize(doc, type)!;
        }
        if (change(before) is not { } changed)
            return null;
        var after = keep(changed);
        var set = string.Concat(columns.Select((c, i) => $", {c.Column} = @c{i}"));
        await using (var update = new NpgsqlCommand($"update {table} set doc = @doc::jsonb{set} where {keyColumn} = @key", conn, tx))
        {
            update.Parameters.AddWithValue("key", key);
            update.Parameters.AddWithValue("doc", JsonSerializer.Serialize(after, type));
            for (var i = 0; i < columns.Length; i++)
                update.Parameters.AddWithValue($"c{i}", columns[i].Value(after));
            await update.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        await tx.CommitAsync(ct).ConfigureAwait(false);
        return (before, after);
    }

    /// <summary>Runs <paramref name="cmd"/>, whose first column is a record's JSON, and reads every row.</summary>
    private static async Task<List<T>> ReadDocumentsAsync<T>(NpgsqlCommand cmd, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken ct)
    {
        var list = new List<T>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
            list.Add(JsonSerializer.Deserialize(reader.GetString(0), type)!);
        return list;
    }
}
