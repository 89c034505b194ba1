using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>What the index knows of a buffered record without reading its body.</summary>
internal readonly record struct RecordMeta(long Segment, long TsMillis, TelemetryKind Kind, int Class, int Size);

/// <summary>
/// The in-memory view of the buffer: every record's metadata, the records of each class in sequence order,
/// and how many live records each segment still holds. Rebuilt from the segments when the buffer opens.
/// Not thread-safe: the buffer serialises access.
/// </summary>
internal sealed class BufferIndex
{
    private readonly Dictionary<long, RecordMeta> _records = [];
    private readonly SortedSet<long>[] _classes = Enumerable.Range(0, TelemetryPolicy.Classes).Select(_ => new SortedSet<long>()).ToArray();
    private readonly Dictionary<long, int> _segmentLive = [];

    public long Count => _records.Count;

    public long Bytes { get; private set; }

    public bool TryGet(long seq, out RecordMeta meta) => _records.TryGetValue(seq, out meta);

    public IReadOnlyCollection<long> InClass(int cls) => _classes[cls];

    public long? LowestSeq()
    {
        long? lowest = null;
        foreach (var set in _classes)
        {
            if (set.Count > 0 && (lowest is null || set.Min < lowest))
                lowest = set.Min;
        }
        return lowest;
    }

    public int LiveIn(long segment) => _segmentLive.GetValueOrDefault(segment);

    public void Add(long seq, RecordMeta meta)
    {
        _records.Add(seq, meta);
        _classes[meta.Class].Add(seq);
        _segmentLive[meta.Segment] = _segmentLive.GetValueOrDefault(meta.Segment) + 1;
        Bytes += meta.Size;
    }

    public bool Remove(long seq)
    {
        if (!_records.Remove(seq, out var meta))
            return false;
        _classes[meta.Class].Remove(seq);
        var live = _segmentLive[meta.Segment] - 1;
        if (live == 0)
            _segmentLive.Remove(meta.Segment);
        else
            _segmentLive[meta.Segment] = live;
        Bytes -= meta.Size;
        return true;
    }

    /// <summary>Records an acknowledgement covers: at or below the watermark, or within a stored range.</summary>
    public List<long> Acknowledged(long watermark, IReadOnlyList<SeqRange> stored)
    {
        var seqs = new List<long>();
        foreach (var set in _classes)
        {
            if (set.Count == 0)
                continue;
            if (watermark >= set.Min)
                seqs.AddRange(set.GetViewBetween(set.Min, watermark));
            foreach (var range in stored)
            {
                var from = Math.Max(range.From, Math.Max(set.Min, watermark + 1));
                var to = Math.Min(range.To, set.Max);
                if (from <= to)
                    seqs.AddRange(set.GetViewBetween(from, to));
            }
        }
        return seqs;
    }

    /// <summary>
    /// The records to evict so that <paramref name="records"/> more records of <paramref name="bytes"/> fit:
    /// lowest class first, oldest first within it. Plans only; nothing is removed.
    /// </summary>
    public List<long> PlanEviction(int records, long bytes, long maxRecords, long maxBytes)
    {
        var victims = new List<long>();
        var count = Count;
        var size = Bytes;
        for (var cls = 0; cls < TelemetryPolicy.Classes && (count + records > maxRecords || size + bytes > maxBytes); cls++)
        {
            foreach (var seq in _classes[cls])
            {
                if (count + records <= maxRecords && size + bytes <= maxBytes)
                    break;
                victims.Add(seq);
                count--;
                size -= _records[seq].Size;
            }
        }
        return victims;
    }
}
