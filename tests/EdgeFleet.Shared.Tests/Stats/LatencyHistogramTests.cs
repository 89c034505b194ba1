using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Tests.Stats;

public class LatencyHistogramTests
{
    private static long[] LogNormal(int seed, int count, double median)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ =>
        {
            var gauss = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            return (long)(median * Math.Exp(0.6 * gauss));
        })];
    }

    private static LatencyHistogram Of(IEnumerable<long> values)
    {
        var h = new LatencyHistogram();
        foreach (var v in values)
            h.Record(v);
        return h;
    }

    [Fact]
    public void Every_value_falls_in_its_bucket_and_buckets_are_at_most_a_32nd_of_their_value_wide()
    {
        foreach (var v in new long[] { 0, 1, 63, 64, 65, 127, 128, 1000, 4095, 4096, 123_456, 10_000_000, LatencyHistogram.MaxMicros })
        {
            var (low, high) = LatencyHistogram.BoundsOf(LatencyHistogram.IndexOf(v));
            Assert.InRange(v, low, high - 1);
            Assert.True(high - low <= Math.Max(1, low / 32), $"{v}: bucket [{low}, {high})");
        }
        for (var i = 1; i < LatencyHistogram.BucketCount; i++)
            Assert.Equal(LatencyHistogram.BoundsOf(i - 1).High, LatencyHistogram.BoundsOf(i).Low);
    }

    [Theory]
    [InlineData(800)]
    [InlineData(25_000)]
    [InlineData(2_000_000)]
    public void Percentiles_are_within_the_bucket_precision_of_the_exact_ones(double median)
    {
        var values = LogNormal(1, 20_000, median);
        var h = Of(values);
        Array.Sort(values);
        foreach (var q in new[] { 0.5, 0.95, 0.99 })
        {
            var exact = values[(int)Math.Ceiling(q * values.Length) - 1];
            Assert.InRange(h.Percentile(q), exact * (1 - 1.0 / 32) - 1, exact * (1 + 1.0 / 32) + 1);
        }
        Assert.Equal(values.Length, h.Count);
        Assert.Equal(values.Sum(), h.SumMicros);
        Assert.Equal(values[0], h.MinMicros);
        Assert.Equal(values[^1], h.MaxMicrosSeen);
    }

    [Fact]
    public void Merging_is_exact_associative_and_order_independent()
    {
        var a = LogNormal(1, 3000, 1000);
        var b = LogNormal(2, 5000, 3000);
        var c = LogNormal(3, 100, 90_000);
        var left = Of(a);
        left.Merge(Of(b));
        left.Merge(Of(c));
        var right = Of(c);
        var bc = Of(b);
        bc.Merge(Of(a));
        right.Merge(bc);
        var all = Of(a.Concat(b).Concat(c));
        foreach (var h in new[] { left, right })
        {
            Assert.Equal(all.Buckets().Select(p => (p[0], p[1])), h.Buckets().Select(p => (p[0], p[1])));
            Assert.Equal(all.Count, h.Count);
            Assert.Equal(all.Percentile(0.99), h.Percentile(0.99));
            Assert.Equal(all.MinMicros, h.MinMicros);
        }
    }

    private static LatencyWindow Window(LatencyHistogram h) => new()
    {
        Model = "m",
        Version = "3",
        From = DateTimeOffset.UnixEpoch,
        Seconds = 60,
        Count = h.Count,
        P50Micros = h.Percentile(0.5),
        P95Micros = h.Percentile(0.95),
        P99Micros = h.Percentile(0.99),
        MinMicros = h.MinMicros,
        MaxMicros = h.MaxMicrosSeen,
        SumMicros = h.SumMicros,
        Buckets = h.Buckets(),
    };

    [Fact]
    public void The_wire_form_rebuilds_the_histogram_and_bad_ones_are_refused_with_the_reason()
    {
        var h = Of(LogNormal(4, 1000, 5000));
        var window = Window(h);
        var back = LatencyHistogram.FromWire(window, out var problem)!;
        Assert.Null(problem);
        Assert.Equal(h.Percentile(0.95), back.Percentile(0.95));
        var record = new TelemetryRecord { Ts = DateTimeOffset.UnixEpoch, Kind = TelemetryKind.Latency, Latency = window };
        Assert.Null(record.Validate(0));

        Assert.Contains("needs latency", new TelemetryRecord { Ts = DateTimeOffset.UnixEpoch, Kind = TelemetryKind.Latency }.Validate(0));
        Assert.Contains("count says", (record with { Latency = window with { Count = window.Count + 1 } }).Validate(0));
        Assert.Contains("[index, count] pairs", (record with { Latency = window with { Buckets = [[-1, 5]] } }).Validate(0));
        Assert.Contains("p50 ≤ p95", (record with { Latency = window with { P95Micros = window.P50Micros - 1 } }).Validate(0));
    }

    [Fact]
    public void A_shadow_window_is_validated_like_a_latency_window_and_its_counts_must_add_up()
    {
        var h = Of(LogNormal(5, 1000, 200));
        var window = new ShadowWindow
        {
            Model = "m",
            Version = "3",
            ServedVersion = "2",
            From = DateTimeOffset.UnixEpoch,
            Seconds = 60,
            Count = h.Count,
            Agreements = h.Count - 5,
            MeanConfidence = 0.8,
            ServedMeanConfidence = 0.85,
            P95Micros = h.Percentile(0.95),
            ServedP95Micros = h.Percentile(0.95),
            Buckets = h.Buckets(),
            ServedBuckets = h.Buckets(),
            Labels = new() { ["a"] = h.Count - 5, ["b"] = 5 },
            ServedLabels = new() { ["a"] = h.Count },
        };
        var record = new TelemetryRecord { Ts = DateTimeOffset.UnixEpoch, Kind = TelemetryKind.Shadow, Shadow = window };
        Assert.Null(record.Validate(0));
        // Without exact sums the rebuilt histogram's percentiles still land in the same buckets.
        Assert.Equal(LatencyHistogram.IndexOf(h.Percentile(0.95)), LatencyHistogram.IndexOf(LatencyHistogram.FromBuckets(window.Buckets, window.Count, out _)!.Percentile(0.95)));

        Assert.Contains("needs shadow", new TelemetryRecord { Ts = DateTimeOffset.UnixEpoch, Kind = TelemetryKind.Shadow }.Validate(0));
        Assert.Contains("agreements at most count", (record with { Shadow = window with { Agreements = window.Count + 1 } }).Validate(0));
        Assert.Contains("must each count every compared input", (record with { Shadow = window with { ServedLabels = new() { ["a"] = 1 } } }).Validate(0));
        Assert.Contains("within [0, 1]", (record with { Shadow = window with { MeanConfidence = 1.5 } }).Validate(0));
        Assert.Contains("count says", (record with { Shadow = window with { ServedBuckets = [[3, 1]] } }).Validate(0));
        Assert.Contains("1-64 characters", (record with { Shadow = window with { ServedVersion = "" } }).Validate(0));
    }
}
