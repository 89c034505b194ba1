using System.Text.Json;
using EdgeFleet.Fleet.Identity;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Console users in PostgreSQL: one row per user; an update locks the row (failed-login counts are exact across instances).</summary>
public sealed partial class PostgresFleetStore
{
    public async Task<bool> CreateUserAsync(UserRecord user, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into users (username, doc) values (@u, @doc::jsonb) on conflict (username) do nothing");
        cmd.Parameters.AddWithValue("u", user.Username);
        cmd.Parameters.AddWithValue("doc", JsonSerializer.Serialize(user, FleetStoreJsonContext.Default.UserRecord));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<UserRecord?> GetUserAsync(string username, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from users where username = @u");
        cmd.Parameters.AddWithValue("u", username);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? ToUser(doc) : null;
    }

    public async Task<IReadOnlyList<UserRecord>> ListUsersAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc::text from users order by username");
        var list = new List<UserRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            list.Add(ToUser(reader.GetString(0)));
        return list;
    }

    public async Task<(UserRecord Before, UserRecord After)?> UpdateUserAsync(string username, Func<UserRecord, UserRecord?> change, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        UserRecord before;
        await using (var select = new NpgsqlCommand("select doc::text from users where username = @u for update", conn, tx))
        {
            select.Parameters.AddWithValue("u", username);
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string doc)
                return null;
            before = ToUser(doc);
        }
        if (change(before) is not { } changed)
            return null;
        var after = changed with { Username = username };
        await using (var update = new NpgsqlCommand("update users set doc = @doc::jsonb where username = @u", conn, tx))
        {
            update.Parameters.AddWithValue("u", username);
            update.Parameters.AddWithValue("doc", JsonSerializer.Serialize(after, FleetStoreJsonContext.Default.UserRecord));
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (before, after);
    }

    private static UserRecord ToUser(string json) => JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.UserRecord)!;
}
