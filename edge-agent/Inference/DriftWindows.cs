using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// Drift sketches per model version over the version's drift window (aligned to multiples of its length, so
/// devices' windows line up): for each feature of the spec, its value from the input or the answer goes into a
/// <see cref="FeatureSketch"/> on the spec's bin edges. <see cref="Close"/> turns every finished window into a
/// <see cref="SketchWindow"/>. Steady state adds to existing sketches and allocates nothing. The sensor loop and
/// the local API record into the same windows (thread-safe).
/// </summary>
public sealed class DriftWindows
{
    private sealed class Open(DriftSpec spec, DateTimeOffset from)
    {
        public readonly DriftSpec Spec = spec;
        public readonly DateTimeOffset From = from;
        public readonly FeatureSketch[] Sketches = [.. spec.Features.Select(f => new FeatureSketch(f.Edges))];
        public readonly DriftSource[] Sources = [.. spec.Features.Select(f => DriftSource.Parse(f.Source)!.Value)];
    }

    private readonly Dictionary<(string Model, string Version), Open> _open = [];
    private readonly Lock _lock = new();

    /// <summary>One answer of the sensor loop: <paramref name="input"/> is the feature vector the model was fed.</summary>
    public void Record(Classification answer, ReadOnlySpan<float> input, DateTimeOffset now)
    {
        if (answer.Drift is not { Features.Count: > 0 } spec)
            return;
        lock (_lock)
        {
            var open = OpenFor(answer.Model, spec, now);
            for (var i = 0; i < open.Sketches.Length; i++)
            {
                var source = open.Sources[i];
                var value = source switch
                {
                    { InputIndex: { } index } => index < input.Length ? input[index] : double.NaN,
                    { OutputIndex: { } output } => answer.Probabilities is { } p && output < p.Length ? p[output] : double.NaN,
                    { Confidence: true } => answer.Confidence,
                    _ => double.NaN, // channel statistics are for tensor inputs, not feature vectors
                };
                open.Sketches[i].Add(value);
            }
        }
    }

    /// <summary>
    /// The spec's feature values for one answer of any model (the local API): its first input with its shape, and
    /// the first row of its first output (<paramref name="scores"/>: class probabilities, when it has them).
    /// </summary>
    public static double[] ValuesOf(DriftSpec spec, ReadOnlySpan<float> input, ReadOnlySpan<long> shape, ReadOnlySpan<float> scores)
    {
        var values = new double[spec.Features.Count];
        for (var i = 0; i < values.Length; i++)
            values[i] = DriftSource.Parse(spec.Features[i].Source) is { } source ? source.ValueOf(input, shape, scores) : double.NaN;
        return values;
    }

    /// <summary>One answer's feature values (<see cref="ValuesOf"/>), in the spec's order.</summary>
    public void Record(ModelRef model, DriftSpec spec, ReadOnlySpan<double> values, DateTimeOffset now)
    {
        if (spec.Features.Count == 0 || values.Length != spec.Features.Count)
            return;
        lock (_lock)
        {
            var open = OpenFor(model, spec, now);
            for (var i = 0; i < open.Sketches.Length; i++)
                open.Sketches[i].Add(values[i]);
        }
    }

    private Open OpenFor(ModelRef model, DriftSpec spec, DateTimeOffset now)
    {
        var key = (model.Name, model.Version);
        if (!_open.TryGetValue(key, out var open) || !ReferenceEquals(open.Spec, spec))
            _open[key] = open = new Open(spec, Align(now, spec.WindowSeconds));
        return open;
    }

    /// <summary>The sketches of every window that has ended by <paramref name="now"/> (all open ones with <paramref name="force"/>).
    /// A clock stepped back before a window's start also ends it: a window never waits hours for the clock to catch up.</summary>
    public IReadOnlyList<SketchWindow> Close(DateTimeOffset now, bool force = false)
    {
        lock (_lock)
            return CloseLocked(now, force);
    }

    private List<SketchWindow> CloseLocked(DateTimeOffset now, bool force)
    {
        List<SketchWindow>? closed = null;
        foreach (var (key, open) in _open)
        {
            if (!force && now < open.From + TimeSpan.FromSeconds(open.Spec.WindowSeconds) && now >= open.From)
                continue;
            (closed ??= []).Add(new SketchWindow
            {
                Model = key.Model,
                Version = key.Version,
                From = open.From,
                Seconds = open.Spec.WindowSeconds,
                Features = [.. open.Spec.Features.Select((f, i) => open.Sketches[i].ToData(f.Name))],
            });
        }
        if (closed is null)
            return [];
        foreach (var w in closed)
            _open.Remove((w.Model, w.Version));
        return closed;
    }

    private static DateTimeOffset Align(DateTimeOffset now, double seconds)
    {
        var ticks = (long)(seconds * TimeSpan.TicksPerSecond);
        return new DateTimeOffset(now.UtcTicks - (now.UtcTicks % ticks), TimeSpan.Zero);
    }
}
