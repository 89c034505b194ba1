using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// The shadow model against the served one over fixed windows (aligned like <see cref="LatencyWindows"/>): per
/// pair of versions, how often their top classes agreed, each one's latency and confidence, and the classes each
/// predicted. <see cref="Close"/> turns a finished window into <see cref="ShadowWindow"/> records.
/// </summary>
public sealed class ShadowWindows(TimeSpan length)
{
    private sealed class Pair
    {
        public readonly LatencyHistogram Shadow = new();
        public readonly LatencyHistogram Served = new();
        public readonly Dictionary<string, long> Labels = new(StringComparer.Ordinal);
        public readonly Dictionary<string, long> ServedLabels = new(StringComparer.Ordinal);
        public long Errors;
        public long Agreements;
        public double Confidence;
        public double ServedConfidence;
    }

    private readonly Dictionary<(string Model, string Version, string Served), Pair> _open = [];
    private DateTimeOffset? _from;

    public TimeSpan Length { get; } = length;

    /// <summary>One input both models answered.</summary>
    public void Record(Classification served, long servedMicros, Classification shadow, long shadowMicros, DateTimeOffset now)
    {
        var pair = Get(shadow.Model, served.Model, now);
        pair.Shadow.Record(shadowMicros);
        pair.Served.Record(servedMicros);
        pair.Labels[shadow.Label] = pair.Labels.GetValueOrDefault(shadow.Label) + 1;
        pair.ServedLabels[served.Label] = pair.ServedLabels.GetValueOrDefault(served.Label) + 1;
        pair.Confidence += shadow.Confidence;
        pair.ServedConfidence += served.Confidence;
        if (shadow.Label == served.Label)
            pair.Agreements++;
    }

    /// <summary>One input the shadow failed on.</summary>
    public void RecordError(ModelRef shadow, ModelRef served, DateTimeOffset now) => Get(shadow, served, now).Errors++;

    private Pair Get(ModelRef shadow, ModelRef served, DateTimeOffset now)
    {
        _from ??= new DateTimeOffset(now.UtcTicks - now.UtcTicks % Length.Ticks, TimeSpan.Zero);
        var key = (shadow.Name, shadow.Version, served.Version);
        if (!_open.TryGetValue(key, out var pair))
            _open[key] = pair = new Pair();
        return pair;
    }

    /// <summary>The finished window's records when <paramref name="now"/> is past its end (or <paramref name="force"/>); else empty.
    /// A clock stepped back before a window's start also ends it: a window never waits hours for the clock to catch up.</summary>
    public IReadOnlyList<ShadowWindow> Close(DateTimeOffset now, bool force = false)
    {
        if (_from is not { } from || (!force && now < from + Length && now >= from))
            return [];
        var windows = _open.Select(kv =>
        {
            var (model, version, served) = kv.Key;
            var p = kv.Value;
            var n = p.Shadow.Count;
            return new ShadowWindow
            {
                Model = model,
                Version = version,
                ServedVersion = served,
                From = from,
                Seconds = Length.TotalSeconds,
                Count = n,
                Errors = p.Errors,
                Agreements = p.Agreements,
                MeanConfidence = n == 0 ? 0 : Math.Clamp(p.Confidence / n, 0, 1),
                ServedMeanConfidence = n == 0 ? 0 : Math.Clamp(p.ServedConfidence / n, 0, 1),
                P95Micros = p.Shadow.Percentile(0.95),
                ServedP95Micros = p.Served.Percentile(0.95),
                Buckets = p.Shadow.Buckets(),
                ServedBuckets = p.Served.Buckets(),
                Labels = p.Labels,
                ServedLabels = p.ServedLabels,
            };
        }).ToList();
        _open.Clear();
        _from = null;
        return windows;
    }
}
