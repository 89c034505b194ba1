using EdgeFleet.Fleet.Rollouts;
using LiteDB;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Rollouts in the embedded store: one document per rollout holding its JSON.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> Rollouts => _db.GetCollection("rollouts");

    public Task<bool> CreateRolloutAsync(Rollout rollout, CancellationToken cancellationToken) =>
        WriteAsync(() => Rollouts.FindById(rollout.Id) is null && Rollouts.Insert(ToDocument(rollout)) is not null, cancellationToken);

    public Task<Rollout?> GetRolloutAsync(string id, CancellationToken cancellationToken) =>
        UnderGateAsync(() => Rollouts.FindById(id) is { } doc ? ToRollout(doc) : null, cancellationToken);

    public Task<IReadOnlyList<Rollout>> ListRolloutsAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<Rollout>>(() => Rollouts.FindAll().Select(ToRollout).OrderByDescending(r => r.CreatedAt).ToList(), cancellationToken);

    public Task<(Rollout Before, Rollout After)?> UpdateRolloutAsync(string id, Func<Rollout, Rollout?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync(Rollouts, id, ToRollout, ToDocument, change, r => r with { Id = id }, cancellationToken);

    private static BsonDocument ToDocument(Rollout rollout) => new()
    {
        ["_id"] = rollout.Id,
        ["json"] = JsonSerializer.Serialize(rollout, FleetStoreJsonContext.Default.Rollout),
    };

    private static Rollout ToRollout(BsonDocument doc) => JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.Rollout)!;
}
