using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Drift;

/// <summary>One device's sketches of one model version over one window, as stored for aggregation.</summary>
public sealed record StoredSketch(string DeviceId, SketchWindow Window)
{
    /// <summary>The sketch of one feature on the baseline's edges; null when the device sent none, or one on other edges.</summary>
    public FeatureSketch? Feature(string name, double[] edges) =>
        Window.Features.FirstOrDefault(f => f.Name == name) is { } data ? FeatureSketch.FromData(data, edges, out _) : null;
}
