using EdgeFleet.Fleet.Retraining;
using LiteDB;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Hard examples, retraining policies and jobs in the embedded store: one document per record holding its JSON.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> HardExamples
    {
        get
        {
            var c = _db.GetCollection("hard_examples");
            c.EnsureIndex("model");
            return c;
        }
    }

    private ILiteCollection<BsonDocument> Policies => _db.GetCollection("retraining_policies");

    private ILiteCollection<BsonDocument> Jobs
    {
        get
        {
            var c = _db.GetCollection("retraining_jobs");
            c.EnsureIndex("model");
            return c;
        }
    }

    public Task AddHardExamplesAsync(IReadOnlyList<StoredHardExample> examples, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            var collection = HardExamples;
            foreach (var e in examples)
            {
                if (collection.FindById(e.Id) is null)
                    collection.Insert(ToDocument(e));
            }
            return true;
        }, cancellationToken);

    public Task<IReadOnlyList<StoredHardExample>> ListHardExamplesAsync(string model, DateTimeOffset from, DateTimeOffset to, string? deviceId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<StoredHardExample>>(() =>
        {
            var (lo, hi) = (from.ToUnixTimeMilliseconds(), to.ToUnixTimeMilliseconds());
            return HardExamples.Find(Query.EQ("model", model))
                .Where(d => d["ts"].AsInt64 >= lo && d["ts"].AsInt64 < hi && (deviceId is null || d["device"].AsString == deviceId))
                .Select(ToHardExample).OrderByDescending(e => e.Ts).ThenBy(e => e.Id, StringComparer.Ordinal).Take(limit).ToList();
        }, cancellationToken);

    public Task<IReadOnlyList<StoredHardExample>> GetHardExamplesAsync(IReadOnlyCollection<string> ids, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<StoredHardExample>>(() => ids.Distinct(StringComparer.Ordinal).Select(id => HardExamples.FindById(id)).OfType<BsonDocument>().Select(ToHardExample).ToList(), cancellationToken);

    public Task<int> LabelHardExamplesAsync(IReadOnlyCollection<string> ids, string label, string by, DateTimeOffset at, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            var collection = HardExamples;
            var labelled = 0;
            foreach (var id in ids.Distinct(StringComparer.Ordinal))
            {
                if (collection.FindById(id) is not { } doc)
                    continue;
                collection.Update(ToDocument(ToHardExample(doc) with { Label = label, LabelledBy = by, LabelledAt = at }));
                labelled++;
            }
            return labelled;
        }, cancellationToken);

    public Task PutRetrainingPolicyAsync(RetrainingPolicy policy, CancellationToken cancellationToken) =>
        WriteAsync(() => Policies.Upsert(new BsonDocument
        {
            ["_id"] = policy.ModelId,
            ["json"] = JsonSerializer.Serialize(policy, FleetStoreJsonContext.Default.RetrainingPolicy),
        }), cancellationToken);

    public Task<IReadOnlyList<RetrainingPolicy>> ListRetrainingPoliciesAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<RetrainingPolicy>>(() => Policies.FindAll()
            .Select(d => JsonSerializer.Deserialize(d["json"].AsString, FleetStoreJsonContext.Default.RetrainingPolicy)!)
            .OrderBy(p => p.ModelId, StringComparer.Ordinal).ToList(), cancellationToken);

    public Task<bool> DeleteRetrainingPolicyAsync(string modelId, CancellationToken cancellationToken) =>
        WriteAsync(() => Policies.Delete(modelId), cancellationToken);

    public Task<bool> CreateRetrainingJobAsync(RetrainingJob job, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            // Under the write gate, the check and the insert are one step: one open job per model.
            if (Jobs.Find(Query.EQ("model", job.ModelId)).Any(d => RetrainingJobStates.IsOpen(d["state"].AsString)) || Jobs.FindById(job.Id) is not null)
                return false;
            Jobs.Insert(ToDocument(job));
            return true;
        }, cancellationToken);

    public Task<RetrainingJob?> GetRetrainingJobAsync(string id, CancellationToken cancellationToken) =>
        UnderGateAsync(() => Jobs.FindById(id) is { } doc ? ToJob(doc) : null, cancellationToken);

    public Task<IReadOnlyList<RetrainingJob>> ListRetrainingJobsAsync(string? modelId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<RetrainingJob>>(() => (modelId is null ? Jobs.FindAll() : Jobs.Find(Query.EQ("model", modelId)))
            .Select(ToJob).OrderByDescending(j => j.CreatedAt).ThenBy(j => j.Id, StringComparer.Ordinal).Take(limit).ToList(), cancellationToken);

    public Task<(RetrainingJob Before, RetrainingJob After)?> UpdateRetrainingJobAsync(string id, Func<RetrainingJob, RetrainingJob?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync(Jobs, id, ToJob, ToDocument, j => change(j) is { } c && c != j ? c : null, j => j with { Id = id }, cancellationToken);

    private static BsonDocument ToDocument(StoredHardExample e) => new()
    {
        ["_id"] = e.Id,
        ["model"] = e.Example.Model,
        ["device"] = e.DeviceId,
        ["ts"] = e.Ts.ToUnixTimeMilliseconds(),
        ["json"] = JsonSerializer.Serialize(e, FleetStoreJsonContext.Default.StoredHardExample),
    };

    private static StoredHardExample ToHardExample(BsonDocument doc) => JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.StoredHardExample)!;

    private static BsonDocument ToDocument(RetrainingJob job) => new()
    {
        ["_id"] = job.Id,
        ["model"] = job.ModelId,
        ["state"] = job.State,
        ["json"] = JsonSerializer.Serialize(job, FleetStoreJsonContext.Default.RetrainingJob),
    };

    private static RetrainingJob ToJob(BsonDocument doc) => JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.RetrainingJob)!;
}
