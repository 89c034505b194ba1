using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// Drift sketches per model version over the version's drift window (aligned to multiples of its length, so
/// devices' windows line up): for each feature of the spec, its value from the input or the answer goes into a
/// <see cref="FeatureSketch"/> on the spec's bin edges. <see cref="Close"/> turns every finished window into a
/// <see cref="SketchWindow"/>. Steady state adds to existing sketches and allocates nothing.
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

    /// <summary>One answer: <paramref name="input"/> is what the model was fed.</summary>
    public void Record(Classification answer, ReadOnlySpan<float> input, DateTimeOffset now)
    {
        if (answer.Drift is not { Features.Count: > 0 } spec)
            return;
        var key = (answer.Model.Name, answer.Model.Version);
        if (!_open.TryGetValue(key, out var open) || !ReferenceEquals(open.Spec, spec))
            _open[key] = open = new Open(spec, Align(now, spec.WindowSeconds));
        for (var i = 0; i < open.Sketches.Length; i++)
        {
            var source = open.Sources[i];
            var value = source switch
            {
                { InputIndex: { } index } => index < input.Length ? input[index] : double.NaN,
                { OutputIndex: { } output } => answer.Probabilities is { } p && output < p.Length ? p[output] : double.NaN,
                _ => answer.Confidence,
            };
            open.Sketches[i].Add(value);
        }
    }

    /// <summary>The sketches of every window that has ended by <paramref name="now"/> (all open ones with <paramref name="force"/>).</summary>
    public IReadOnlyList<SketchWindow> Close(DateTimeOffset now, bool force = false)
    {
        List<SketchWindow>? closed = null;
        foreach (var (key, open) in _open)
        {
            if (!force && now < open.From + TimeSpan.FromSeconds(open.Spec.WindowSeconds))
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
