using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>What the buffer evicted since its stream began; persisted with the evictions themselves.</summary>
internal sealed record EvictionCounters
{
    public long Records { get; init; }

    public long Bytes { get; init; }

    public long OverCapacity { get; init; }

    public long Expired { get; init; }

    public IReadOnlyDictionary<string, long> ByKind { get; init; } = new Dictionary<string, long>();

    public EvictionCounters Add(IEnumerable<RecordMeta> evicted, bool expired)
    {
        var byKind = new Dictionary<string, long>(ByKind);
        long records = 0, bytes = 0;
        foreach (var m in evicted)
        {
            records++;
            bytes += m.Size;
            var name = TelemetryPolicy.WireName(m.Kind);
            byKind[name] = byKind.GetValueOrDefault(name) + 1;
        }
        return this with
        {
            Records = Records + records,
            Bytes = Bytes + bytes,
            OverCapacity = OverCapacity + (expired ? 0 : records),
            Expired = Expired + (expired ? records : 0),
            ByKind = byKind,
        };
    }

    public EvictionReport ToReport() => new()
    {
        Records = Records,
        Bytes = Bytes,
        OverCapacity = OverCapacity,
        Expired = Expired,
        ByKind = new Dictionary<string, long>(ByKind),
    };

    public BsonDocument ToDocument()
    {
        var byKind = new BsonDocument();
        foreach (var (kind, count) in ByKind)
            byKind[kind] = count;
        return new BsonDocument
        {
            ["records"] = Records,
            ["bytes"] = Bytes,
            ["overCapacity"] = OverCapacity,
            ["expired"] = Expired,
            ["byKind"] = byKind,
        };
    }

    public static EvictionCounters FromDocument(BsonValue value)
    {
        if (!value.IsDocument)
            return new EvictionCounters();
        var doc = value.AsDocument;
        return new EvictionCounters
        {
            Records = doc["records"].AsInt64,
            Bytes = doc["bytes"].AsInt64,
            OverCapacity = doc["overCapacity"].AsInt64,
            Expired = doc["expired"].AsInt64,
            ByKind = doc["byKind"].AsDocument.ToDictionary(kv => kv.Key, kv => kv.Value.AsInt64),
        };
    }
}
