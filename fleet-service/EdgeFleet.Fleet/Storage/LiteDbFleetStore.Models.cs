using JsonSerializer = System.Text.Json.JsonSerializer;
using EdgeFleet.Fleet.Models;
using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>The model registry in the embedded store: one document per model and per version, each holding its JSON.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> Models => _db.GetCollection("models");

    private ILiteCollection<BsonDocument> ModelVersions => _db.GetCollection("model_versions");

    public Task<bool> CreateModelAsync(RegisteredModel model, CancellationToken cancellationToken) =>
        WriteAsync(() => Models.FindById(model.Id) is null && Models.Insert(new BsonDocument
        {
            ["_id"] = model.Id,
            ["json"] = JsonSerializer.Serialize(model, FleetStoreJsonContext.Default.RegisteredModel),
        }) is not null, cancellationToken);

    public Task<RegisteredModel?> GetModelAsync(string id, CancellationToken cancellationToken) =>
        UnderGateAsync(() => Models.FindById(id) is { } doc ? ToModel(doc) : null, cancellationToken);

    public Task<IReadOnlyList<RegisteredModel>> ListModelsAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<RegisteredModel>>(() => Models.FindAll().Select(ToModel).OrderBy(m => m.Id, StringComparer.Ordinal).ToList(), cancellationToken);

    public Task<(bool Added, long Latest)> AddModelVersionAsync(ModelVersion version, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            var latest = ModelVersions.Find(Query.EQ("model", version.ModelId)).Select(d => d["version"].AsInt64).DefaultIfEmpty(0).Max();
            if (version.Version <= latest)
                return (false, latest);
            ModelVersions.Insert(ToDocument(version));
            return (true, latest);
        }, cancellationToken);

    public Task<ModelVersion?> GetModelVersionAsync(string modelId, long version, CancellationToken cancellationToken) =>
        UnderGateAsync(() => ModelVersions.FindById(VersionKey(modelId, version)) is { } doc ? ToVersion(doc) : null, cancellationToken);

    public Task<IReadOnlyList<ModelVersion>> ListModelVersionsAsync(string modelId, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<ModelVersion>>(() => ModelVersions.Find(Query.EQ("model", modelId)).Select(ToVersion).OrderByDescending(v => v.Version).ToList(), cancellationToken);

    public Task<(ModelVersion Before, ModelVersion After)?> UpdateModelVersionAsync(string modelId, long version, Func<ModelVersion, ModelVersion> change, CancellationToken cancellationToken) =>
        WriteAsync<(ModelVersion, ModelVersion)?>(() =>
        {
            if (ModelVersions.FindById(VersionKey(modelId, version)) is not { } doc)
                return null;
            var before = ToVersion(doc);
            var after = change(before) with { ModelId = modelId, Version = version };
            ModelVersions.Update(ToDocument(after));
            return (before, after);
        }, cancellationToken);

    private static string VersionKey(string modelId, long version) => $"{modelId}@{version}";

    private static BsonDocument ToDocument(ModelVersion version) => new()
    {
        ["_id"] = VersionKey(version.ModelId, version.Version),
        ["model"] = version.ModelId,
        ["version"] = version.Version,
        ["json"] = JsonSerializer.Serialize(version, FleetStoreJsonContext.Default.ModelVersion),
    };

    private static RegisteredModel ToModel(BsonDocument doc) =>
        JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.RegisteredModel)
        ?? throw new InvalidDataException($"model {doc["_id"].AsString} is unreadable");

    private static ModelVersion ToVersion(BsonDocument doc) =>
        JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.ModelVersion)
        ?? throw new InvalidDataException($"model version {doc["_id"].AsString} is unreadable");
}
