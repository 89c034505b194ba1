using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// What storing one telemetry batch means for its device, the same for every store: which records are new
/// (stored as one segment), which repeat (compared with the stored copies for conflicts), the gaps, and the
/// device's record afterwards. The store does the I/O in between.
/// </summary>
public sealed class BatchPlan
{
    private readonly DeviceRecord _device;
    private readonly int _count;
    private readonly long _evicted;
    private readonly InferenceSample? _lastInference;

    private BatchPlan(DeviceRecord device, TelemetryLedger.Outcome outcome, List<(long, DateTimeOffset, string)> fresh, Dictionary<long, string> repeated,
        int count, long evicted, InferenceSample? lastInference)
    {
        _device = device;
        Outcome = outcome;
        Fresh = fresh;
        Repeated = repeated;
        _count = count;
        _evicted = evicted;
        _lastInference = lastInference;
    }

    public TelemetryLedger.Outcome Outcome { get; }

    /// <summary>The new records, ascending, with their stored JSON.</summary>
    public List<(long Seq, DateTimeOffset Ts, string Body)> Fresh { get; }

    /// <summary>Sequence numbers already stored, with the JSON sent this time.</summary>
    public Dictionary<long, string> Repeated { get; }

    public static BatchPlan For(DeviceRecord device, TelemetryBatch batch, IReadOnlyList<TelemetryRecord> records)
    {
        if (device.StreamId != batch.StreamId)
            device = device with { StreamId = batch.StreamId, AckedSeq = 0, StoredAboveAck = [] };
        var outcome = TelemetryLedger.Apply(device.AckedSeq, device.StoredAboveAck, batch.PendingFrom, [.. records.Select(r => r.Seq)]);
        var fresh = new List<(long, DateTimeOffset, string)>(records.Count);
        var repeated = new Dictionary<long, string>();
        var evicted = device.EvictedRecords;
        InferenceSample? lastInference = null;
        for (var i = 0; i < records.Count; i++)
        {
            var body = System.Text.Json.JsonSerializer.Serialize(records[i], WireJsonContext.Default.TelemetryRecord);
            if (!outcome.IsNew[i])
            {
                repeated.TryAdd(records[i].Seq, body);
                continue;
            }
            fresh.Add((records[i].Seq, records[i].Ts, body));
            lastInference = records[i].Inference ?? lastInference;
            evicted = Math.Max(evicted, records[i].Evictions?.Records ?? 0);
        }
        return new BatchPlan(device, outcome, fresh, repeated, records.Count, evicted, lastInference);
    }

    /// <summary>The device's record and the batch's result, once the store has counted <paramref name="conflicts"/>.</summary>
    public (DeviceRecord Device, TelemetryStoreResult Result) Complete(int conflicts, DateTimeOffset now)
    {
        var skipped = Outcome.Gaps.Sum(g => g.To - g.From + 1);
        var device = _device with
        {
            LastSeen = now,
            AckedSeq = Outcome.Acked,
            StoredAboveAck = Outcome.StoredAbove,
            TelemetryRecords = _device.TelemetryRecords + Fresh.Count,
            SkippedRecords = _device.SkippedRecords + skipped,
            EvictedRecords = _evicted,
            ConflictingRecords = _device.ConflictingRecords + conflicts,
            LastTelemetryAt = Fresh.Count > 0 ? now : _device.LastTelemetryAt,
            LastInference = _lastInference ?? _device.LastInference,
        };
        return (device, new TelemetryStoreResult(Outcome.Acked, Fresh.Count, _count - Fresh.Count, skipped, conflicts));
    }
}
