using EdgeFleet.Fleet.Drift;
using LiteDB;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Drift sketches in the embedded store: one document per (model, version, window, device), indexed by model version and window.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> Sketches
    {
        get
        {
            var c = _db.GetCollection("drift_sketches");
            c.EnsureIndex("mv");
            return c;
        }
    }

    public Task UpsertSketchesAsync(IReadOnlyList<StoredSketch> sketches, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            var collection = Sketches;
            foreach (var s in sketches)
            {
                var from = s.Window.From.ToUnixTimeMilliseconds();
                collection.Upsert(new BsonDocument
                {
                    ["_id"] = $"{s.Window.Model}\n{s.Window.Version}\n{from}\n{s.DeviceId}",
                    ["mv"] = $"{s.Window.Model}\n{s.Window.Version}",
                    ["from"] = from,
                    ["device"] = s.DeviceId,
                    ["json"] = JsonSerializer.Serialize(s.Window, FleetStoreJsonContext.Default.SketchWindow),
                });
            }
            return true;
        }, cancellationToken);

    public Task<IReadOnlyList<StoredSketch>> GetSketchesAsync(string model, string version, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<StoredSketch>>(() =>
        {
            var (lo, hi) = (from.ToUnixTimeMilliseconds(), to.ToUnixTimeMilliseconds());
            return Sketches.Find(Query.EQ("mv", $"{model}\n{version}"))
                .Where(d => d["from"].AsInt64 >= lo && d["from"].AsInt64 < hi)
                .Select(d => new StoredSketch(d["device"].AsString, JsonSerializer.Deserialize(d["json"].AsString, FleetStoreJsonContext.Default.SketchWindow)!))
                .OrderBy(s => s.Window.From).ThenBy(s => s.DeviceId, StringComparer.Ordinal)
                .ToList();
        }, cancellationToken);

    private ILiteCollection<BsonDocument> Alerts => _db.GetCollection("drift_alerts");

    public Task<bool> CreateDriftAlertAsync(DriftAlert alert, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            if (Alerts.Find(Query.And(Query.EQ("key", alert.Key), Query.Not("state", DriftAlertStates.Resolved))).Any())
                return false;
            Alerts.Insert(ToDocument(alert));
            return true;
        }, cancellationToken);

    public Task<IReadOnlyList<DriftAlert>> ListDriftAlertsAsync(bool activeOnly, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<DriftAlert>>(() => (activeOnly ? Alerts.Find(Query.Not("state", DriftAlertStates.Resolved)) : Alerts.FindAll())
            .Select(ToAlert).OrderByDescending(a => a.OpenedAt).ThenBy(a => a.Id, StringComparer.Ordinal).Take(limit).ToList(), cancellationToken);

    public Task<(DriftAlert Before, DriftAlert After)?> UpdateDriftAlertAsync(string id, Func<DriftAlert, DriftAlert?> change, CancellationToken cancellationToken) =>
        UpdateDocumentAsync(Alerts, id, ToAlert, ToDocument, a => change(a) is { } c && c != a ? c : null, a => a with { Id = id }, cancellationToken);

    private static BsonDocument ToDocument(DriftAlert alert) => new()
    {
        ["_id"] = alert.Id,
        ["key"] = alert.Key,
        ["state"] = alert.State,
        ["json"] = JsonSerializer.Serialize(alert, FleetStoreJsonContext.Default.DriftAlert),
    };

    private static DriftAlert ToAlert(BsonDocument doc) => JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.DriftAlert)!;
}
