using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// The embedded store: one LiteDB file. Reads and writes are serialised through one gate, and a telemetry batch is
/// stored and its device's acknowledgement advanced in one transaction, so an ack never runs ahead of
/// the records it covers.
/// </summary>
public sealed partial class LiteDbFleetStore : IFleetStore
{
    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _devices;
    private readonly ILiteCollection<BsonDocument> _telemetry;
    private readonly ILiteCollection<BsonDocument> _desired;
    private readonly ILiteCollection<BsonDocument> _gaps;
    private readonly SemaphoreSlim _write = new(1, 1);

    public LiteDbFleetStore(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        _db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct });
        _devices = _db.GetCollection("devices");
        _telemetry = _db.GetCollection("telemetry");
        _telemetry.EnsureIndex("device");
        _desired = _db.GetCollection("desired");
        _gaps = _db.GetCollection("telemetry_gaps");
        _gaps.EnsureIndex("device");
        OpenIdentityCollections();
    }

    public Task RecordHelloAsync(HelloMessage hello, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(hello.DeviceId, now, d => d with
        {
            AgentVersion = hello.AgentVersion,
            HardwareProfile = hello.HardwareProfile,
            BootId = hello.BootId,
            Restarts = d.BootId is not null && d.BootId != hello.BootId ? d.Restarts + 1 : d.Restarts,
            ActiveModel = hello.Models.Count > 0 ? hello.Models[0] : d.ActiveModel,
        }, cancellationToken);

    public Task RecordReportedAsync(ReportedState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(state.DeviceId, now, d => d with { ActiveModel = state.Active, Ota = state.Ota }, cancellationToken);

    public Task RecordOtaStatusAsync(OtaStatusMessage status, DateTimeOffset now, CancellationToken cancellationToken) =>
        UpdateDeviceAsync(status.DeviceId, now, d => d with { LastOta = status, Ota = status.State }, cancellationToken);

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

    public async Task<TelemetryStoreResult> StoreTelemetryAsync(TelemetryBatch batch, IReadOnlyList<TelemetryRecord> records, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var device = LoadOrCreate(batch.DeviceId, now);
            if (device.StreamId != batch.StreamId)
                device = device with { StreamId = batch.StreamId, AckedSeq = 0 };

            int stored = 0, duplicates = 0, conflicts = 0;
            var evicted = device.EvictedRecords;
            InferenceSample? lastInference = null;
            _db.BeginTrans();
            try
            {
                foreach (var record in records)
                {
                    var doc = LiteDbDocuments.FromTelemetry(batch.DeviceId, batch.StreamId, record);
                    if (_telemetry.FindById(doc["_id"]) is { } existing)
                    {
                        duplicates++;
                        if (existing["body"].AsString != doc["body"].AsString)
                            conflicts++;
                        continue;
                    }
                    _telemetry.Insert(doc);
                    stored++;
                    lastInference = record.Inference ?? lastInference;
                    evicted = Math.Max(evicted, record.Evictions?.Records ?? 0);
                }
                var inBatch = records.Select(r => r.Seq).ToHashSet();
                var (watermark, gaps) = TelemetryWatermark.Advance(device.AckedSeq, batch.PendingFrom,
                    (from, to) => _telemetry.Find(Query.Between("_id", LiteDbDocuments.TelemetryKey(batch.DeviceId, batch.StreamId, from), LiteDbDocuments.TelemetryKey(batch.DeviceId, batch.StreamId, to)))
                        .Select(d => d["seq"].AsInt64),
                    seq => inBatch.Contains(seq) || _telemetry.FindById(LiteDbDocuments.TelemetryKey(batch.DeviceId, batch.StreamId, seq)) is not null);
                foreach (var gap in gaps)
                    _gaps.Insert(LiteDbDocuments.FromGap(new TelemetryGap(batch.DeviceId, batch.StreamId, gap.From, gap.To, now)));
                var skipped = gaps.Sum(g => g.To - g.From + 1);
                device = device with
                {
                    LastSeen = now,
                    AckedSeq = watermark,
                    TelemetryRecords = device.TelemetryRecords + stored,
                    SkippedRecords = device.SkippedRecords + skipped,
                    EvictedRecords = evicted,
                    ConflictingRecords = device.ConflictingRecords + conflicts,
                    LastTelemetryAt = stored > 0 ? now : device.LastTelemetryAt,
                    LastInference = lastInference ?? device.LastInference,
                };
                _devices.Upsert(LiteDbDocuments.FromDevice(device));
                _db.Commit();
                return new TelemetryStoreResult(watermark, stored, duplicates, skipped, conflicts);
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

    public Task<IReadOnlyList<TelemetryGap>> GetGapsAsync(string deviceId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<TelemetryGap>>(() => _gaps.Find(Query.EQ("device", deviceId)).Select(LiteDbDocuments.ToGap)
            .OrderBy(g => g.RecordedAt).ThenBy(g => g.From).Take(limit).ToList(), cancellationToken);

    public Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<DeviceRecord>>(() => _devices.FindAll().Select(LiteDbDocuments.ToDevice).OrderBy(d => d.Id, StringComparer.Ordinal).ToList(), cancellationToken);

    public Task<DeviceRecord?> GetDeviceAsync(string deviceId, CancellationToken cancellationToken) =>
        UnderGateAsync(() => _devices.FindById(deviceId) is { } doc ? LiteDbDocuments.ToDevice(doc) : null, cancellationToken);

    public Task<IReadOnlyList<TelemetryRecord>> GetTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<TelemetryRecord>>(() => _telemetry
            .Find(Query.EQ("device", deviceId))
            .Select(LiteDbDocuments.ToTelemetry)
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

    public void Dispose()
    {
        _db.Dispose();
        _write.Dispose();
    }
}
