using System.Security.Cryptography;
using EdgeFleet.Agent.Storage;
using EdgeFleet.Shared.IO;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>
/// The LiteDB side of the buffer. Collections: <c>segments</c> ({_id: first seq, c: class, b: packed records})
/// and <c>buffer</c> (one meta document: stream, last and acknowledged sequence, eviction totals, budget).
/// Documents are mapped by hand: LiteDB's typed mapper does not work under NativeAOT.
/// </summary>
public sealed partial class TelemetryBuffer
{
    private const string MetaId = "buffer";

    /// <summary>Pages in LiteDB's log before it is checkpointed into the data file (see <see cref="Open"/>).</summary>
    internal const int CheckpointPages = 100;

    private BufferIndex _index = new();
    private DurableLiteDb? _store;
    private LiteDatabase? _db;
    private ILiteCollection<BsonDocument> _segments = null!;
    private ILiteCollection<BsonDocument> _meta = null!;
    private readonly HashSet<long> _dirtySegments = [];

    /// <summary>Per class, the segment the next small commit appends to (none after opening), and its packed bytes so far.</summary>
    private readonly long?[] _tails = new long?[TelemetryPolicy.Classes];
    private readonly long[] _tailBytes = new long[TelemetryPolicy.Classes];
    private bool _metaDirty;
    private bool _broken;
    private long _lastSeq;
    private long _ackedSeq;
    private EvictionCounters _evictions = new();
    private DateOnly _budgetDay;
    private long _budgetSpent;

    /// <summary>LiteDB's own name for a database's log file, so a log left by an older build is recovered.</summary>
    public static string LogPathOf(string path) => DurableFileStream.LogPathOf(path);

    private void Open()
    {
        // LiteDB keeps every page written since the last checkpoint in memory as well as in its log, and
        // checkpoints at 1,000 pages (8 MB) by default: at a few commits a second that is 16-20 MB of managed
        // heap and an 8 MB log. At 100 pages (800 KB) the log is copied into the data file every few seconds.
        _store = new DurableLiteDb(_path, _files, CheckpointPages);
        _db = _store.Db;
        _segments = _db.GetCollection("segments");
        _meta = _db.GetCollection("buffer");
        var meta = _meta.FindById(MetaId);
        if (meta is null)
        {
            Initialise();
            meta = _meta.FindById(MetaId);
        }
        StreamId = meta["stream"].AsString;
        _lastSeq = meta["lastSeq"].AsInt64;
        _ackedSeq = meta["ackedSeq"].AsInt64;
        _evictions = EvictionCounters.FromDocument(meta["evicted"]);
        _budgetDay = meta["budgetDay"].IsNull ? default : DateOnly.FromDayNumber(meta["budgetDay"].AsInt32);
        _budgetSpent = meta["budgetSpent"].AsInt64;
        _index = new BufferIndex();
        _dirtySegments.Clear();
        _metaDirty = false;
        Array.Clear(_tails);
        Array.Clear(_tailBytes);
        foreach (var doc in _segments.FindAll())
        {
            var id = doc["_id"].AsInt64;
            var cls = doc["c"].AsInt32;
            foreach (var r in SegmentCodec.Load(doc))
                _index.Add(r.Seq, new RecordMeta(id, r.TsMillis, r.Kind, cls, r.Size));
        }
        _broken = false;
    }

    /// <summary>After an I/O failure LiteDB's state is unknown: close and recover from the files.</summary>
    private void EnsureOpen()
    {
        if (!_broken)
            return;
        CloseStorage();
        try
        {
            Open();
        }
        catch (Exception e) when (e is IOException or LiteException or UnauthorizedAccessException)
        {
            _broken = true;
            throw new TelemetryBufferException(TelemetryBufferError.Unavailable, $"telemetry buffer {_path} cannot be reopened: {e.Message}", e);
        }
    }

    private void CloseStorage()
    {
        _store?.Dispose();
        _store = null;
        _db = null;
    }

    /// <summary>
    /// One LiteDB transaction, returning once LiteDB's writer has put all its pages in the log (not yet
    /// synced: the caller syncs). Any failure leaves the buffer broken, to be reopened from the files.
    /// </summary>
    private void Transact(Action write)
    {
        var store = _store ?? throw new TelemetryBufferException(TelemetryBufferError.Unavailable, "telemetry buffer is closed");
        try
        {
            // Every transaction here writes the meta document, so it has a confirm page to wait for.
            store.Transact(write);
        }
        catch (Exception e)
        {
            _broken = true;
            Log.Reopening(_log, e.Message);
            throw e as TelemetryBufferException ?? new TelemetryBufferException(
                e.GetBaseException() is IOException { HResult: 28 or unchecked((int)0x80070070) } ? TelemetryBufferError.DiskFull : TelemetryBufferError.Unavailable,
                $"telemetry buffer write failed: {e.Message}", e);
        }
    }

    private void WriteMeta(long lastSeq, long ackedSeq, EvictionCounters evictions) => _meta.Upsert(new BsonDocument
    {
        ["_id"] = MetaId,
        ["stream"] = StreamId,
        ["lastSeq"] = lastSeq,
        ["ackedSeq"] = ackedSeq,
        ["evicted"] = evictions.ToDocument(),
        ["budgetDay"] = _budgetDay == default ? BsonValue.Null : new BsonValue(_budgetDay.DayNumber),
        ["budgetSpent"] = _budgetSpent,
    });

    private void InsertSegment(long id, int cls, IReadOnlyList<StoredRecord> records)
    {
        var doc = new BsonDocument { ["_id"] = id, ["c"] = cls };
        SegmentCodec.Store(doc, records);
        _segments.Insert(doc);
    }

    /// <summary>
    /// Rewrites the segments that lost records since the last commit (acknowledged, expired or evicted, and
    /// already out of the index): one left empty is deleted, one partly left keeps its live records.
    /// </summary>
    private void WriteDirtySegments()
    {
        foreach (var id in _dirtySegments)
        {
            if (_index.LiveIn(id) == 0)
            {
                _segments.Delete(id);
                var cls = Array.IndexOf(_tails, id);
                if (cls >= 0)
                    _tails[cls] = null;
                continue;
            }
            var doc = _segments.FindById(id);
            if (doc is null)
                continue;
            var keep = SegmentCodec.Load(doc).Where(r => _index.TryGet(r.Seq, out var m) && m.Segment == id).ToList();
            SegmentCodec.Store(doc, keep);
            _segments.Update(doc);
        }
    }

    /// <summary>Rewrites a tail segment with its live records followed by <paramref name="records"/>.</summary>
    private void AppendToSegment(long id, IReadOnlyList<StoredRecord> records)
    {
        var doc = _segments.FindById(id) ?? throw new TelemetryBufferException(TelemetryBufferError.Unavailable, $"telemetry segment {id} is missing");
        var live = SegmentCodec.Load(doc).Where(r => _index.TryGet(r.Seq, out var m) && m.Segment == id);
        SegmentCodec.Store(doc, live.Concat(records).ToList());
        _segments.Update(doc);
    }

    /// <summary>
    /// Writes what acknowledgements, expiry and budget changed, when no record commit came to carry it. Synced
    /// like a commit although nothing waits for it: a transaction left unsynced could be half on disk when the
    /// power goes (see <see cref="DurableFileStream"/>); fsync adds no bytes written, only a wait.
    /// </summary>
    private void WritePending()
    {
        if (_dirtySegments.Count == 0 && !_metaDirty)
            return;
        Transact(() =>
        {
            WriteDirtySegments();
            WriteMeta(_lastSeq, _ackedSeq, _evictions);
        });
        _store!.Sync();
        _dirtySegments.Clear();
        _metaDirty = false;
    }

    private Dictionary<long, ReadOnlyMemory<byte>> ReadBodies(List<(long Seq, RecordMeta Meta)> chosen)
    {
        var wanted = chosen.Select(c => c.Seq).ToHashSet();
        var bodies = new Dictionary<long, ReadOnlyMemory<byte>>(chosen.Count);
        foreach (var segment in chosen.Select(c => c.Meta.Segment).Distinct())
        {
            foreach (var r in SegmentCodec.Load(_segments.FindById(segment)))
            {
                if (wanted.Contains(r.Seq))
                    bodies[r.Seq] = r.Body;
            }
        }
        return bodies;
    }

    /// <summary>
    /// A new file gets a new stream. A file of the spine's format (one document per record in <c>records</c>,
    /// its stream in <c>meta</c>) keeps its stream and unacknowledged records, moved into segments in the
    /// same transaction that writes the meta document, so an upgrade killed halfway loses nothing.
    /// </summary>
    private void Initialise()
    {
        var records = new List<StoredRecord>();
        long lastSeq = 0, ackedSeq = 0;
        StreamId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var spine = _db!.CollectionExists("meta");
        if (spine)
        {
            var old = _db.GetCollection("meta");
            foreach (var doc in _db.GetCollection("records").FindAll())
            {
                var record = System.Text.Json.JsonSerializer.Deserialize(doc["body"].AsBinary, WireJsonContext.Default.TelemetryRecord)!;
                records.Add(new StoredRecord(record.Seq, record.Ts.ToUnixTimeMilliseconds(), record.Kind, TelemetryPolicy.DefaultPriority(record.Kind), TelemetryBatchCodec.Body(record)));
            }
            StreamId = old.FindById("stream")?["value"].AsString ?? StreamId;
            lastSeq = old.FindById("lastSeq")?["value"].AsInt64 ?? 0;
            ackedSeq = old.FindById("ackedSeq")?["value"].AsInt64 ?? 0;
        }
        Transact(() =>
        {
            foreach (var (id, cls, members) in Segment(records))
                InsertSegment(id, cls, members);
            WriteMeta(lastSeq, ackedSeq, new EvictionCounters());
        });
        if (spine)
        {
            _db.DropCollection("records");
            _db.DropCollection("meta");
            Log.Migrated(_log, records.Count);
        }
        _store!.Sync();
    }

    /// <summary>
    /// Reads every segment and compares it with the index and the meta document. Empty when the file is
    /// consistent; otherwise one line per problem (for tests and <c>edgefleet-agent buffer check</c>).
    /// </summary>
    public IReadOnlyList<string> Check()
    {
        lock (_dbLock)
        {
            if (!_broken)
                WritePending();
            var problems = new List<string>();
            var seen = new HashSet<long>();
            long bytes = 0;
            foreach (var doc in _segments.FindAll())
            {
                List<StoredRecord> records;
                try
                {
                    records = SegmentCodec.Load(doc);
                }
                catch (InvalidDataException e)
                {
                    problems.Add($"segment {doc["_id"]}: {e.Message}");
                    continue;
                }
                if (records.Count == 0)
                    problems.Add($"segment {doc["_id"]} is empty");
                foreach (var r in records)
                {
                    bytes += r.Size;
                    if (!seen.Add(r.Seq))
                        problems.Add($"sequence {r.Seq} is stored twice");
                    if (r.Seq > _lastSeq)
                        problems.Add($"sequence {r.Seq} is above the last assigned {_lastSeq}");
                    if (r.Seq <= _ackedSeq)
                        problems.Add($"sequence {r.Seq} is still stored although acknowledged up to {_ackedSeq}");
                    if (!_index.TryGet(r.Seq, out var meta) || meta.Segment != doc["_id"].AsInt64)
                        problems.Add($"sequence {r.Seq} is not indexed under segment {doc["_id"]}");
                    if (r.Body.Length < 2 || r.Body.Span[0] != (byte)'{')
                        problems.Add($"sequence {r.Seq} has a body that is not a JSON object");
                }
            }
            if (seen.Count != _index.Count)
                problems.Add($"{seen.Count} records stored, {_index.Count} indexed");
            if (bytes != _index.Bytes)
                problems.Add($"{bytes} bytes stored, {_index.Bytes} indexed");
            return problems;
        }
    }
}
