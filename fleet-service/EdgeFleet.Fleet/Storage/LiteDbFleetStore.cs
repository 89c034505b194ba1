using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.IO;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// The embedded store: one LiteDB file. Reads and writes are serialised through one gate, and a telemetry batch is
/// stored and its device's acknowledgement advanced in one transaction, so an ack never runs ahead of
/// the records it covers; the transaction is in the log and the log synced before the store returns (<see cref="LiteDbLog"/>).
/// Its files go through <see cref="DurableFileStream"/>: a transaction counts in the log only once all its pages are
/// on disk, and a checkpoint syncs the data file before LiteDB truncates the log, so a power cut can lose only
/// what was not acknowledged and never leaves a file LiteDB cannot open.
/// </summary>
public sealed partial class LiteDbFleetStore : IFleetStore
{
    private readonly LiteDatabase _db;
    private readonly DurableFileStream _dataFile;
    private readonly DurableFileStream _logFile;
    private readonly ILiteCollection<BsonDocument> _devices;
    private readonly ILiteCollection<BsonDocument> _telemetry;
    private readonly ILiteCollection<BsonDocument> _desired;
    private readonly ILiteCollection<BsonDocument> _gaps;
    private readonly SemaphoreSlim _write = new(1, 1);
    private readonly LiteDbLog _log;

    public LiteDbFleetStore(string path)
        : this(path, FileSystem.Os)
    {
    }

    /// <summary>With its files in <paramref name="files"/> (tests simulate power cuts with it).</summary>
    internal LiteDbFleetStore(string path, FileSystem files)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        _dataFile = new DurableFileStream(OpenStoreFile(files, path), syncOnFlush: true, confirmBarrier: false);
        _logFile = new DurableFileStream(OpenStoreFile(files, DurableFileStream.LogPathOf(path)), syncOnFlush: false, confirmBarrier: true);
        files.SyncDirectory(directory);
        _db = new LiteDatabase(_dataFile, mapper: null, logStream: _logFile);
        _devices = _db.GetCollection("devices");
        _telemetry = _db.GetCollection("telemetry_segments");
        _telemetry.EnsureIndex("device");
        _desired = _db.GetCollection("desired");
        _gaps = _db.GetCollection("telemetry_gaps");
        _gaps.EnsureIndex("device");
        OpenIdentityCollections();
        MigratePerRecordTelemetry();
        _log = LiteDbLog.For(_db);
    }

    /// <summary>
    /// Files written before telemetry segments kept one document per record in <c>telemetry</c>. They are
    /// regrouped into segments of up to 500 records (upserts with deterministic ids, so a crash halfway
    /// repeats the work harmlessly), each device's ranges above its watermark are rebuilt, and the old
    /// collection is dropped.
    /// </summary>
    private void MigratePerRecordTelemetry()
    {
        if (!_db.CollectionExists("telemetry"))
            return;
        var old = _db.GetCollection("telemetry");
        _db.BeginTrans();
        foreach (var stream in old.FindAll().GroupBy(d => (Device: d["device"].AsString, Stream: d["stream"].AsString)))
        {
            var records = stream.Select(d => (Seq: d["seq"].AsInt64, Ts: DateTimeOffset.FromUnixTimeMilliseconds(d["ts"].AsInt64), Body: d["body"].AsString))
                .OrderBy(r => r.Seq).ToList();
            foreach (var chunk in records.Chunk(500))
                _telemetry.Upsert(LiteDbDocuments.FromSegment(stream.Key.Device, stream.Key.Stream, chunk));
            if (_devices.FindById(stream.Key.Device) is { } doc && LiteDbDocuments.ToDevice(doc) is { } device && device.StreamId == stream.Key.Stream)
            {
                var above = TelemetryLedger.Apply(device.AckedSeq, [], device.AckedSeq + 1, [.. records.Select(r => r.Seq)]).StoredAbove;
                _devices.Update(LiteDbDocuments.FromDevice(device with { StoredAboveAck = above }));
            }
        }
        _db.Commit();
        _db.DropCollection("telemetry");
    }

    public Task RecordHelloAsync(HelloMessage hello, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(hello.DeviceId, now, d => d.WithHello(hello), cancellationToken);

    public Task RecordReportedAsync(ReportedState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(state.DeviceId, now, d => d.WithReported(state), cancellationToken);

    public Task RecordOtaStatusAsync(OtaStatusMessage status, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(status.DeviceId, now, d => d.WithOtaStatus(status), cancellationToken);

    public async Task SetDesiredAsync(string deviceId, byte[] payload, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _desired.Upsert(new BsonDocument { ["_id"] = deviceId, ["payload"] = payload });
        }
        finally
        {
            _write.Release();
        }
    }

    public Task<IReadOnlyList<(string DeviceId, byte[] Payload)>> ListDesiredAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<(string, byte[])>>(() => _desired.FindAll().Select(d => (d["_id"].AsString, d["payload"].AsBinary)).ToList(), cancellationToken);

    public Task<byte[]?> GetDesiredAsync(string deviceId, CancellationToken cancellationToken) =>
        UnderGateAsync(() => _desired.FindById(deviceId) is { } d ? d["payload"].AsBinary : null, cancellationToken);

    public async Task<IReadOnlyList<TelemetryStoreResult>> StoreTelemetryAsync(IReadOnlyList<IncomingTelemetry> batches, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var devices = new Dictionary<string, DeviceRecord>(StringComparer.Ordinal);
            var results = new TelemetryStoreResult[batches.Count];
            _db.BeginTrans();
            try
            {
                for (var i = 0; i < batches.Count; i++)
                {
                    var (batch, records) = (batches[i].Batch, batches[i].Records);
                    var device = devices.TryGetValue(batch.DeviceId, out var seen) ? seen : LoadOrCreate(batch.DeviceId, now);
                    (devices[batch.DeviceId], results[i]) = StoreBatch(device, batch, records, now);
                }
                foreach (var device in devices.Values)
                    _devices.Upsert(LiteDbDocuments.FromDevice(device));
                _db.Commit();
                // What this returns is acknowledged to the devices, which then delete it: written and synced first.
                _log.Flush(_logFile.Sync);
                return results;
            }
            catch
            {
                _db.Rollback();
                throw;
            }
        }
        finally
        {
            _write.Release();
        }
    }

    /// <summary>One batch inside the open transaction: the ledger decides what is new, the new records become one segment.</summary>
    private (DeviceRecord, TelemetryStoreResult) StoreBatch(DeviceRecord device, TelemetryBatch batch, IReadOnlyList<TelemetryRecord> records, DateTimeOffset now)
    {
        var plan = BatchPlan.For(device, batch, records);
        if (plan.Fresh.Count > 0)
            _telemetry.Upsert(LiteDbDocuments.FromSegment(batch.DeviceId, batch.StreamId, plan.Fresh));
        foreach (var gap in plan.Outcome.Gaps)
            _gaps.Insert(LiteDbDocuments.FromGap(new TelemetryGap(batch.DeviceId, batch.StreamId, gap.From, gap.To, now)));
        return plan.Complete(plan.Repeated.Count > 0 ? CountConflicts(batch.DeviceId, batch.StreamId, plan.Repeated) : 0, now);
    }

    /// <summary>
    /// Redelivered records whose content differs from the stored copy. A redelivery is almost always of recent
    /// segments, so the search runs from the newest segment at or below the highest repeated number downwards,
    /// and gives up after <see cref="ConflictSearchSegments"/> segments (the records are duplicates either way).
    /// </summary>
    private int CountConflicts(string deviceId, string streamId, Dictionary<long, string> repeated)
    {
        var conflicts = 0;
        var left = repeated.Count;
        var range = Query.Between("_id", LiteDbDocuments.TelemetryKey(deviceId, streamId, 0), LiteDbDocuments.TelemetryKey(deviceId, streamId, repeated.Keys.Max()));
        foreach (var segment in _telemetry.Query().Where(range).OrderByDescending("_id").Limit(ConflictSearchSegments).ToEnumerable())
        {
            foreach (var (seq, body) in LiteDbDocuments.SegmentRecords(segment))
            {
                if (repeated.TryGetValue(seq, out var sent))
                {
                    conflicts += sent == body ? 0 : 1;
                    left--;
                }
            }
            if (left == 0)
                break;
        }
        return conflicts;
    }

    private const int ConflictSearchSegments = 1000;

    public Task<IReadOnlyList<TelemetryGap>> GetGapsAsync(string deviceId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<TelemetryGap>>(() => _gaps.Find(Query.EQ("device", deviceId)).Select(LiteDbDocuments.ToGap)
            .OrderBy(g => g.RecordedAt).ThenBy(g => g.From).Take(limit).ToList(), cancellationToken);

    public Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<DeviceRecord>>(() => _devices.FindAll().Select(LiteDbDocuments.ToDevice).OrderBy(d => d.Id, StringComparer.Ordinal).ToList(), cancellationToken);

    public Task<DeviceRecord?> GetDeviceAsync(string deviceId, CancellationToken cancellationToken) =>
        UnderGateAsync(() => _devices.FindById(deviceId) is { } doc ? LiteDbDocuments.ToDevice(doc) : null, cancellationToken);

    public Task<IReadOnlyList<TelemetryRecord>> GetRecentTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<TelemetryRecord>>(() => _telemetry
            .Find(Query.EQ("device", deviceId))
            .SelectMany(LiteDbDocuments.SegmentRecords)
            .OrderByDescending(r => r.Seq)
            .Take(limit)
            .Select(r => LiteDbDocuments.ParseBody(r.Body))
            .ToList(), cancellationToken);

    public Task<IReadOnlyList<TelemetryRecord>> GetTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<TelemetryRecord>>(() => _telemetry
            .Find(Query.EQ("device", deviceId))
            .SelectMany(LiteDbDocuments.SegmentRecords)
            .Select(r => LiteDbDocuments.ParseBody(r.Body))
            .OrderBy(r => r.Ts).ThenBy(r => r.Seq)
            .Take(limit)
            .ToList(), cancellationToken);

    /// <summary>
    /// Reads go through the same gate as writes. LiteDB 5 let a read race the first write of a collection
    /// ("page type must be collection page", seen here when an API read met a device's first hello) and then
    /// closes its engine; one gate for the embedded store costs little and rules that out.
    /// </summary>
    private async Task<T> UnderGateAsync<T>(Func<T> read, CancellationToken ct)
    {
        await _write.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return read();
        }
        finally
        {
            _write.Release();
        }
    }

    private async Task UpdateDeviceAsync(string deviceId, DateTimeOffset now, Func<DeviceRecord, DeviceRecord> change, CancellationToken ct)
    {
        await _write.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var device = change(LoadOrCreate(deviceId, now)) with { LastSeen = now };
            _devices.Upsert(LiteDbDocuments.FromDevice(device));
        }
        finally
        {
            _write.Release();
        }
    }

    private DeviceRecord LoadOrCreate(string deviceId, DateTimeOffset now) =>
        _devices.FindById(deviceId) is { } doc
            ? LiteDbDocuments.ToDevice(doc)
            : new DeviceRecord { Id = deviceId, FirstSeen = now, LastSeen = now };

    /// <summary>Opens one of the store's files, held exclusively: a second fleet service on the same store is refused.</summary>
    private static StorageStream OpenStoreFile(FileSystem files, string path)
    {
        try
        {
            return files.Open(path);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new IOException($"the store {path} cannot be opened ({e.Message.TrimEnd('.')}): is another fleet service running on it?", e);
        }
    }

    public void Dispose()
    {
        _db.Dispose();
        _dataFile.Dispose();
        _logFile.Dispose();
        _write.Dispose();
    }
}
