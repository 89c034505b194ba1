using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// Latency per model version over fixed windows: each inference is recorded into its version's histogram;
/// when a window ends, <see cref="Close"/> turns every version seen into a <see cref="LatencyWindow"/> record and
/// starts afresh. Windows are aligned to multiples of their length, so devices' windows line up for merging.
/// </summary>
public sealed class LatencyWindows(TimeSpan length)
{
    private readonly Dictionary<(string Model, string Version), (LatencyHistogram Histogram, long Errors)> _open = [];
    private DateTimeOffset? _from;

    public TimeSpan Length { get; } = length;

    public void Record(ModelRef model, long micros, DateTimeOffset now)
    {
        _from ??= Align(now);
        var key = (model.Name, model.Version);
        if (!_open.TryGetValue(key, out var entry))
            _open[key] = entry = (new LatencyHistogram(), 0);
        entry.Histogram.Record(micros);
    }

    public void RecordError(ModelRef model, DateTimeOffset now)
    {
        _from ??= Align(now);
        var key = (model.Name, model.Version);
        _open[key] = _open.TryGetValue(key, out var entry) ? (entry.Histogram, entry.Errors + 1) : (new LatencyHistogram(), 1);
    }

    /// <summary>The finished window's records when <paramref name="now"/> is past its end; else empty.
    /// A clock stepped back before a window's start also ends it: a window never waits hours for the clock to catch up.</summary>
    public IReadOnlyList<LatencyWindow> Close(DateTimeOffset now, bool force = false)
    {
        if (_from is not { } from || (!force && now < from + Length && now >= from))
            return [];
        var windows = _open.Select(kv => new LatencyWindow
        {
            Model = kv.Key.Model,
            Version = kv.Key.Version,
            From = from,
            Seconds = Length.TotalSeconds,
            Count = kv.Value.Histogram.Count,
            Errors = kv.Value.Errors,
            P50Micros = kv.Value.Histogram.Percentile(0.50),
            P95Micros = kv.Value.Histogram.Percentile(0.95),
            P99Micros = kv.Value.Histogram.Percentile(0.99),
            MinMicros = kv.Value.Histogram.Count == 0 ? 0 : kv.Value.Histogram.MinMicros,
            MaxMicros = kv.Value.Histogram.MaxMicrosSeen,
            SumMicros = kv.Value.Histogram.SumMicros,
            Buckets = kv.Value.Histogram.Buckets(),
        }).ToList();
        _open.Clear();
        _from = null;
        return windows;
    }

    private DateTimeOffset Align(DateTimeOffset now) =>
        new(now.UtcTicks - now.UtcTicks % Length.Ticks, TimeSpan.Zero);
}
