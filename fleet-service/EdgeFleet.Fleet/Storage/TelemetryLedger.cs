using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// Which of a device's sequence numbers are stored, kept compactly: everything at or below the watermark
/// (stored or a recorded gap), plus the ranges stored above it (records that arrived ahead of a hole, e.g.
/// alarms sent by priority). Stores keep this per device and use it to decide, without reading any
/// telemetry, which records of a batch are new and which are redeliveries. The same rules for every store.
/// </summary>
public static class TelemetryLedger
{
    /// <param name="IsNew">Per record of the batch: stored now (true) or already stored (false).</param>
    /// <param name="Acked">The new watermark.</param>
    /// <param name="StoredAbove">Ranges stored above the new watermark, ascending and disjoint.</param>
    /// <param name="Gaps">Sequence numbers the device evicted unsent, newly recorded.</param>
    public sealed record Outcome(bool[] IsNew, long Acked, List<SeqRange> StoredAbove, List<SeqRange> Gaps);

    public static Outcome Apply(long acked, IReadOnlyList<SeqRange> storedAbove, long pendingFrom, IReadOnlyList<long> seqs)
    {
        var ranges = new List<SeqRange>(storedAbove);
        var isNew = new bool[seqs.Count];
        for (var i = 0; i < seqs.Count; i++)
        {
            if (seqs[i] > acked && !Contains(ranges, seqs[i]))
            {
                Add(ranges, seqs[i]);
                isNew[i] = true;
            }
        }
        var (watermark, gaps) = TelemetryWatermark.Advance(acked, pendingFrom,
            (from, to) => Between(ranges, from, to),
            seq => Contains(ranges, seq));
        ranges.RemoveAll(r => r.To <= watermark);
        for (var i = 0; i < ranges.Count; i++)
        {
            if (ranges[i].From <= watermark)
                ranges[i] = ranges[i] with { From = watermark + 1 };
        }
        return new Outcome(isNew, watermark, ranges, gaps);
    }

    private static int Find(List<SeqRange> ranges, long seq)
    {
        int lo = 0, hi = ranges.Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (ranges[mid].To < seq)
                lo = mid + 1;
            else if (ranges[mid].From > seq)
                hi = mid - 1;
            else
                return mid;
        }
        return ~lo;
    }

    private static bool Contains(List<SeqRange> ranges, long seq) => Find(ranges, seq) >= 0;

    private static void Add(List<SeqRange> ranges, long seq)
    {
        var at = ~Find(ranges, seq);
        var joinsLeft = at > 0 && ranges[at - 1].To == seq - 1;
        var joinsRight = at < ranges.Count && ranges[at].From == seq + 1;
        if (joinsLeft && joinsRight)
        {
            ranges[at - 1] = ranges[at - 1] with { To = ranges[at].To };
            ranges.RemoveAt(at);
        }
        else if (joinsLeft)
        {
            ranges[at - 1] = ranges[at - 1] with { To = seq };
        }
        else if (joinsRight)
        {
            ranges[at] = ranges[at] with { From = seq };
        }
        else
        {
            ranges.Insert(at, new SeqRange(seq, seq));
        }
    }

    private static IEnumerable<long> Between(List<SeqRange> ranges, long from, long to)
    {
        foreach (var r in ranges)
        {
            for (var s = Math.Max(r.From, from); s <= Math.Min(r.To, to); s++)
                yield return s;
        }
    }
}
