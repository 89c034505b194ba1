using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.Wire;
using LiteDB;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// Hand-written mapping between registry records and LiteDB documents: explicit field names that stay
/// stable across refactors, and times as Unix milliseconds (LiteDB's DateTime loses the offset).
/// </summary>
internal static class LiteDbDocuments
{
    public static BsonDocument FromDevice(DeviceRecord d) => new()
    {
        ["_id"] = d.Id,
        ["firstSeen"] = d.FirstSeen.ToUnixTimeMilliseconds(),
        ["lastSeen"] = d.LastSeen.ToUnixTimeMilliseconds(),
        ["agentVersion"] = d.AgentVersion,
        ["hardwareProfile"] = d.HardwareProfile,
        ["bootId"] = d.BootId,
        ["restarts"] = d.Restarts,
        ["activeModel"] = ToJson(d.ActiveModel),
        ["shadowModel"] = ToJson(d.ShadowModel),
        ["ota"] = d.Ota.ToString(),
        ["streamId"] = d.StreamId,
        ["ackedSeq"] = d.AckedSeq,
        ["telemetryRecords"] = d.TelemetryRecords,
        ["skippedRecords"] = d.SkippedRecords,
        ["evictedRecords"] = d.EvictedRecords,
        ["conflictingRecords"] = d.ConflictingRecords,
        ["lastTelemetryAt"] = d.LastTelemetryAt?.ToUnixTimeMilliseconds() is { } t ? new BsonValue(t) : BsonValue.Null,
        ["lastInference"] = ToJson(d.LastInference),
        ["lastOta"] = ToJson(d.LastOta),
        ["tags"] = TagsToBson(d.Tags),
        ["storedAbove"] = new BsonArray(d.StoredAboveAck.Select(r => new BsonArray { r.From, r.To })),
        ["enrolledAt"] = Time(d.EnrolledAt),
        ["revokedAt"] = Time(d.RevokedAt),
    };

    public static DeviceRecord ToDevice(BsonDocument doc) => new()
    {
        Id = doc["_id"].AsString,
        FirstSeen = DateTimeOffset.FromUnixTimeMilliseconds(doc["firstSeen"].AsInt64),
        LastSeen = DateTimeOffset.FromUnixTimeMilliseconds(doc["lastSeen"].AsInt64),
        AgentVersion = NullableString(doc["agentVersion"]),
        HardwareProfile = NullableString(doc["hardwareProfile"]),
        BootId = NullableString(doc["bootId"]),
        Restarts = doc["restarts"].AsInt32,
        ActiveModel = FromJson<ModelRef>(doc["activeModel"]),
        ShadowModel = FromJson<ModelRef>(doc["shadowModel"]),
        Ota = Enum.TryParse<OtaState>(doc["ota"].AsString, out var ota) ? ota : OtaState.Idle,
        StreamId = NullableString(doc["streamId"]),
        AckedSeq = doc["ackedSeq"].AsInt64,
        TelemetryRecords = doc["telemetryRecords"].AsInt64,
        SkippedRecords = doc["skippedRecords"].AsInt64,
        EvictedRecords = doc["evictedRecords"].IsNull ? 0 : doc["evictedRecords"].AsInt64,
        ConflictingRecords = doc["conflictingRecords"].IsNull ? 0 : doc["conflictingRecords"].AsInt64,
        LastTelemetryAt = doc["lastTelemetryAt"].IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds(doc["lastTelemetryAt"].AsInt64),
        LastInference = FromJson<InferenceSample>(doc["lastInference"]),
        LastOta = FromJson<OtaStatusMessage>(doc["lastOta"]),
        Tags = TagsFromBson(doc["tags"]),
        StoredAboveAck = doc["storedAbove"].IsArray ? [.. doc["storedAbove"].AsArray.Select(r => new SeqRange(r.AsArray[0].AsInt64, r.AsArray[1].AsInt64))] : [],
        EnrolledAt = Time(doc["enrolledAt"]),
        RevokedAt = Time(doc["revokedAt"]),
    };

    public static BsonValue Time(DateTimeOffset? t) => t is { } v ? new BsonValue(v.ToUnixTimeMilliseconds()) : BsonValue.Null;

    public static DateTimeOffset? Time(BsonValue v) => v.IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds(v.AsInt64);

    public static BsonDocument TagsToBson(IReadOnlyDictionary<string, string> tags)
    {
        var doc = new BsonDocument();
        foreach (var (k, v) in tags)
            doc[k] = v;
        return doc;
    }

    public static Dictionary<string, string> TagsFromBson(BsonValue v) =>
        v.IsDocument ? v.AsDocument.ToDictionary(kv => kv.Key, kv => kv.Value.AsString, StringComparer.Ordinal) : new(StringComparer.Ordinal);

    public static string TelemetryKey(string deviceId, string streamId, long seq) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{deviceId}/{streamId}/{seq:D19}");

    public static BsonDocument FromTelemetry(string deviceId, string streamId, TelemetryRecord r) => new()
    {
        ["_id"] = TelemetryKey(deviceId, streamId, r.Seq),
        ["device"] = deviceId,
        ["stream"] = streamId,
        ["seq"] = r.Seq,
        ["ts"] = r.Ts.ToUnixTimeMilliseconds(),
        ["kind"] = r.Kind.ToString(),
        ["body"] = JsonSerializer.Serialize(r, WireJsonContext.Default.TelemetryRecord),
    };

    /// <summary>The records of one batch that were new, as one document: one insert per batch, not per record.</summary>
    public static BsonDocument FromSegment(string deviceId, string streamId, IReadOnlyList<(long Seq, DateTimeOffset Ts, string Body)> records) => new()
    {
        ["_id"] = TelemetryKey(deviceId, streamId, records[0].Seq),
        ["device"] = deviceId,
        ["stream"] = streamId,
        ["first"] = records[0].Seq,
        ["last"] = records[^1].Seq,
        ["seqs"] = new BsonArray(records.Select(r => new BsonValue(r.Seq))),
        ["bodies"] = new BsonArray(records.Select(r => new BsonValue(r.Body))),
    };

    public static IEnumerable<(long Seq, string Body)> SegmentRecords(BsonDocument segment)
    {
        var seqs = segment["seqs"].AsArray;
        var bodies = segment["bodies"].AsArray;
        for (var i = 0; i < seqs.Count; i++)
            yield return (seqs[i].AsInt64, bodies[i].AsString);
    }

    public static TelemetryRecord ParseBody(string body) =>
        JsonSerializer.Deserialize(body, WireJsonContext.Default.TelemetryRecord) ?? throw new InvalidDataException("a stored telemetry record is unreadable");

    public static TelemetryRecord ToTelemetry(BsonDocument doc) =>
        JsonSerializer.Deserialize(doc["body"].AsString, WireJsonContext.Default.TelemetryRecord)
        ?? throw new InvalidDataException($"telemetry {doc["_id"]} is unreadable");

    public static BsonDocument FromGap(TelemetryGap g) => new()
    {
        ["device"] = g.DeviceId,
        ["stream"] = g.StreamId,
        ["from"] = g.From,
        ["to"] = g.To,
        ["at"] = g.RecordedAt.ToUnixTimeMilliseconds(),
    };

    public static TelemetryGap ToGap(BsonDocument doc) =>
        new(doc["device"].AsString, doc["stream"].AsString, doc["from"].AsInt64, doc["to"].AsInt64, DateTimeOffset.FromUnixTimeMilliseconds(doc["at"].AsInt64));

    public static string? NullableString(BsonValue v) => v.IsNull ? null : v.AsString;

    private static BsonValue ToJson<T>(T? value) where T : class =>
        value is null ? BsonValue.Null : new BsonValue(JsonSerializer.Serialize(value, (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)FleetStoreJsonContext.Default.GetTypeInfo(typeof(T))!));

    private static T? FromJson<T>(BsonValue v) where T : class =>
        v.IsNull ? null : JsonSerializer.Deserialize(v.AsString, (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)FleetStoreJsonContext.Default.GetTypeInfo(typeof(T))!);
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(DeviceRecord))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Groups.DeviceGroup))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Models.RegisteredModel))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Models.ModelVersion))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Rollouts.Rollout))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Identity.UserRecord))]
[System.Text.Json.Serialization.JsonSerializable(typeof(SketchWindow))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Drift.DriftAlert))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.RetrainingPolicy))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.RetrainingJob))]
[System.Text.Json.Serialization.JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.StoredHardExample))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, long>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(ModelRef))]
[System.Text.Json.Serialization.JsonSerializable(typeof(InferenceSample))]
[System.Text.Json.Serialization.JsonSerializable(typeof(OtaStatusMessage))]
internal sealed partial class FleetStoreJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
