using System.Security.Cryptography;
using JsonSerializer = System.Text.Json.JsonSerializer;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>
/// The store-and-forward queue: telemetry records in a LiteDB file under the state directory, each with
/// the next sequence number of this buffer's stream. Records leave only when the fleet acknowledges them.
/// Documents are mapped by hand (LiteDB's typed mapper does not work under NativeAOT).
///
/// What "accepted" promises today: an appended record survives a crash of the agent process (LiteDB
/// writes its log before Append returns). It does not yet promise survival of power loss, because
/// LiteDB 5 does not fsync its commits; that is the durable group-commit work of the telemetry issue.
/// </summary>
public sealed class TelemetryBuffer : IDisposable
{
    private const string MetaStreamId = "stream";
    private const string MetaLastSeq = "lastSeq";
    private const string MetaAckedSeq = "ackedSeq";

    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _records;
    private readonly ILiteCollection<BsonDocument> _meta;
    private readonly Lock _lock = new();
    private long _lastSeq;
    private long _ackedSeq;

    public TelemetryBuffer(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        _db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct });
        _records = _db.GetCollection("records");
        _meta = _db.GetCollection("meta");
        StreamId = ReadMeta(MetaStreamId)?.AsString ?? CreateStream();
        _lastSeq = ReadMeta(MetaLastSeq)?.AsInt64 ?? 0;
        _ackedSeq = ReadMeta(MetaAckedSeq)?.AsInt64 ?? 0;
    }

    /// <summary>Random id of this buffer file; a wiped device starts a new stream at sequence 1.</summary>
    public string StreamId { get; }

    public long LastSeq
    {
        get
        {
            lock (_lock)
                return _lastSeq;
        }
    }

    public long AckedSeq
    {
        get
        {
            lock (_lock)
                return _ackedSeq;
        }
    }

    public long Count
    {
        get
        {
            lock (_lock)
                return _records.LongCount();
        }
    }

    /// <summary>Assigns the next sequence number and stores the record; returns that number.</summary>
    public long Append(DateTimeOffset ts, TelemetryKind kind, InferenceSample? inference = null, HealthSample? health = null, string? message = null)
    {
        lock (_lock)
        {
            var record = new TelemetryRecord { Seq = _lastSeq + 1, Ts = ts, Kind = kind, Inference = inference, Health = health, Message = message };
            var body = JsonSerializer.SerializeToUtf8Bytes(record, WireJsonContext.Default.TelemetryRecord);
            _db.BeginTrans();
            try
            {
                _records.Insert(new BsonDocument { ["_id"] = record.Seq, ["body"] = body });
                WriteMeta(MetaLastSeq, record.Seq);
                _db.Commit();
            }
            catch
            {
                _db.Rollback();
                throw;
            }
            _lastSeq = record.Seq;
            return record.Seq;
        }
    }

    /// <summary>The oldest records still waiting for an acknowledgement, at most <paramref name="max"/>.</summary>
    public IReadOnlyList<TelemetryRecord> Peek(int max)
    {
        lock (_lock)
        {
            var result = new List<TelemetryRecord>();
            foreach (var doc in _records.Find(Query.All("_id", Query.Ascending), limit: max))
            {
                var record = JsonSerializer.Deserialize(doc["body"].AsBinary, WireJsonContext.Default.TelemetryRecord)
                    ?? throw new InvalidDataException($"telemetry record {doc["_id"]} is unreadable");
                result.Add(record);
            }
            return result;
        }
    }

    /// <summary>Deletes every record up to <paramref name="ackedSeq"/>; acknowledgements never move backwards.</summary>
    public int Acknowledge(long ackedSeq)
    {
        lock (_lock)
        {
            if (ackedSeq <= _ackedSeq)
                return 0;
            ackedSeq = Math.Min(ackedSeq, _lastSeq);
            _db.BeginTrans();
            int deleted;
            try
            {
                deleted = _records.DeleteMany(Query.LTE("_id", ackedSeq));
                WriteMeta(MetaAckedSeq, ackedSeq);
                _db.Commit();
            }
            catch
            {
                _db.Rollback();
                throw;
            }
            _ackedSeq = ackedSeq;
            return deleted;
        }
    }

    private string CreateStream()
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        WriteMeta(MetaStreamId, id);
        return id;
    }

    private BsonValue? ReadMeta(string key) => _meta.FindById(key)?["value"];

    private void WriteMeta(string key, BsonValue value) => _meta.Upsert(new BsonDocument { ["_id"] = key, ["value"] = value });

    public void Dispose() => _db.Dispose();
}
