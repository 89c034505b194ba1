using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Drift;

/// <summary>One device's sketches of one model version over one window, as stored for aggregation.</summary>
public sealed record StoredSketch(string DeviceId, SketchWindow Window);
