using EdgeFleet.Fleet.Identity;
using LiteDB;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Console users in the embedded store: one document per user holding its JSON.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> Users => _db.GetCollection("users");

    public Task<bool> CreateUserAsync(UserRecord user, CancellationToken cancellationToken) =>
        WriteAsync(() => Users.FindById(user.Username) is null && Users.Insert(ToDocument(user)) is not null, cancellationToken);

    public Task<UserRecord?> GetUserAsync(string username, CancellationToken cancellationToken) =>
        UnderGateAsync(() => Users.FindById(username) is { } doc ? ToUser(doc) : null, cancellationToken);

    public Task<IReadOnlyList<UserRecord>> ListUsersAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<UserRecord>>(() => Users.FindAll().Select(ToUser).OrderBy(u => u.Username, StringComparer.Ordinal).ToList(), cancellationToken);

    public Task<(UserRecord Before, UserRecord After)?> UpdateUserAsync(string username, Func<UserRecord, UserRecord?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync(Users, username, ToUser, ToDocument, change, u => u with { Username = username }, cancellationToken);

    private static BsonDocument ToDocument(UserRecord user) => new()
    {
        ["_id"] = user.Username,
        ["json"] = JsonSerializer.Serialize(user, FleetStoreJsonContext.Default.UserRecord),
    };

    private static UserRecord ToUser(BsonDocument doc) => JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.UserRecord)!;
}
