using System.Numerics;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Stats;

/// <summary>
/// A mergeable latency histogram in microseconds with log-linear buckets: values below 64 µs get one bucket
/// each, above that every power of two is split into 32 equal buckets, so a bucket is at most 1/32 (≈3 %)
/// of its value wide at any scale, up to about an hour. Merging adds counts bucket by bucket, so histograms
/// from many devices and windows combine exactly, in any order; percentiles are read from the bucket that
/// holds the rank (its midpoint, clamped to the observed min and max). The device sends the non-empty
/// buckets; the fleet merges them per model version, segment and window.
/// </summary>
public sealed class LatencyHistogram
{
    public const int SubBuckets = 32;
    private const int Linear = 2 * SubBuckets; // values 0..63 map to themselves
    public const long MaxMicros = 1L << 32;    // about 71 minutes; larger values count in the last bucket
    public static readonly int BucketCount = IndexOf(MaxMicros) + 1;

    private readonly long[] _counts = new long[BucketCount];

    public long Count { get; private set; }

    public long SumMicros { get; private set; }

    public long MinMicros { get; private set; } = long.MaxValue;

    public long MaxMicrosSeen { get; private set; }

    public void Record(long micros)
    {
        micros = Math.Clamp(micros, 0, MaxMicros);
        _counts[IndexOf(micros)]++;
        Count++;
        SumMicros += micros;
        MinMicros = Math.Min(MinMicros, micros);
        MaxMicrosSeen = Math.Max(MaxMicrosSeen, micros);
    }

    public void Merge(LatencyHistogram other)
    {
        for (var i = 0; i < BucketCount; i++)
            _counts[i] += other._counts[i];
        Count += other.Count;
        SumMicros += other.SumMicros;
        MinMicros = Math.Min(MinMicros, other.MinMicros);
        MaxMicrosSeen = Math.Max(MaxMicrosSeen, other.MaxMicrosSeen);
    }

    /// <summary>The value at quantile <paramref name="q"/> (0..1): the bucket holding that rank, or 0 when empty.</summary>
    public long Percentile(double q)
    {
        if (Count == 0)
            return 0;
        var rank = Math.Max(1, (long)Math.Ceiling(Math.Clamp(q, 0, 1) * Count));
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                var (low, high) = BoundsOf(i);
                return Math.Clamp((low + high) / 2, MinMicros, MaxMicrosSeen);
            }
        }
        return MaxMicrosSeen;
    }

    /// <summary>The non-empty buckets as (index, count) pairs, the form that travels.</summary>
    public List<long[]> Buckets()
    {
        var list = new List<long[]>();
        for (var i = 0; i < BucketCount; i++)
            if (_counts[i] > 0)
                list.Add([i, _counts[i]]);
        return list;
    }

    /// <summary>Rebuilds a histogram from its wire form; null with a reason when it is malformed.</summary>
    public static LatencyHistogram? FromWire(LatencyWindow window, out string? problem)
    {
        if (FromBuckets(window.Buckets, window.Count, out problem) is not { } histogram)
            return null;
        histogram.SumMicros = window.SumMicros;
        histogram.MinMicros = window.Count == 0 ? long.MaxValue : window.MinMicros;
        histogram.MaxMicrosSeen = window.MaxMicros;
        return histogram;
    }

    /// <summary>
    /// Rebuilds a histogram from [index, count] pairs that must hold <paramref name="count"/> values; without the
    /// exact sum, minimum and maximum, those are taken from the buckets' bounds. Null with a reason when malformed.
    /// </summary>
    public static LatencyHistogram? FromBuckets(IReadOnlyList<long[]> buckets, long count, out string? problem)
    {
        var histogram = new LatencyHistogram();
        long total = 0;
        foreach (var pair in buckets)
        {
            if (pair is not [var index, var n] || index < 0 || index >= BucketCount || n <= 0)
            {
                problem = "buckets are [index, count] pairs with 0 ≤ index < " + BucketCount + " and count > 0";
                return null;
            }
            histogram._counts[index] += n;
            total += n;
            var (low, high) = BoundsOf((int)index);
            histogram.SumMicros += n * low;
            histogram.MinMicros = Math.Min(histogram.MinMicros, low);
            histogram.MaxMicrosSeen = Math.Max(histogram.MaxMicrosSeen, high - 1);
        }
        if (total != count)
        {
            problem = $"buckets hold {total} values, count says {count}";
            return null;
        }
        histogram.Count = count;
        problem = null;
        return histogram;
    }

    public static int IndexOf(long micros)
    {
        if (micros < Linear)
            return (int)micros;
        var power = 63 - BitOperations.LeadingZeroCount((ulong)micros); // ≥ 6
        var sub = (int)((micros >> (power - 5)) & (SubBuckets - 1));
        return Linear + (power - 6) * SubBuckets + sub;
    }

    /// <summary>The half-open range [low, high) of values a bucket holds.</summary>
    public static (long Low, long High) BoundsOf(int index)
    {
        if (index < Linear)
            return (index, index + 1);
        var power = (index - Linear) / SubBuckets + 6;
        var sub = (index - Linear) % SubBuckets;
        var width = 1L << (power - 5);
        var low = (1L << power) + sub * width;
        return (low, low + width);
    }
}
