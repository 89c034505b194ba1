using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// How a device's acknowledgement watermark moves, the same for every store. Everything below the batch's
/// <see cref="TelemetryBatch.PendingFrom"/> that is not stored was evicted by the device and becomes a gap;
/// then the watermark climbs through consecutive stored sequence numbers. Records above a hole that the
/// device still holds (sent out of order, by priority) wait above the watermark until the hole is filled or
/// the device's pending floor passes it.
/// </summary>
public static class TelemetryWatermark
{
    /// <param name="current">The stored watermark.</param>
    /// <param name="pendingFrom">The lowest sequence number the device still holds.</param>
    /// <param name="storedBetween">Stored sequence numbers within an inclusive range, ascending.</param>
    /// <param name="isStored">Whether one sequence number is stored.</param>
    public static (long Watermark, List<SeqRange> Gaps) Advance(long current, long pendingFrom,
        Func<long, long, IEnumerable<long>> storedBetween, Func<long, bool> isStored)
    {
        var gaps = new List<SeqRange>();
        var watermark = current;
        if (pendingFrom - 1 > watermark)
        {
            var next = watermark + 1;
            foreach (var seq in storedBetween(next, pendingFrom - 1))
            {
                if (seq > next)
                    gaps.Add(new SeqRange(next, seq - 1));
                next = seq + 1;
            }
            if (next <= pendingFrom - 1)
                gaps.Add(new SeqRange(next, pendingFrom - 1));
            watermark = pendingFrom - 1;
        }
        while (isStored(watermark + 1))
            watermark++;
        return (watermark, gaps);
    }
}
