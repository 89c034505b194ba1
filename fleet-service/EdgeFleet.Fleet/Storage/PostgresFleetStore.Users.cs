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
        return await ReadDocumentsAsync(cmd, FleetStoreJsonContext.Default.UserRecord, cancellationToken).ConfigureAwait(false);
    }

    public Task<(UserRecord Before, UserRecord After)?> UpdateUserAsync(string username, Func<UserRecord, UserRecord?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync("users", "username", username, FleetStoreJsonContext.Default.UserRecord, change, u => u with { Username = username }, cancellationToken);

    private static UserRecord ToUser(string json) => JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.UserRecord)!;
}
