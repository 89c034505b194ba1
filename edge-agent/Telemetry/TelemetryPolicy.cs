using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Telemetry;

public enum TelemetryPriority
{
    Low,
    Normal,
    High,
    Critical,
}

/// <summary>
/// Which records matter more. A record's class combines its priority with whether its kind is protected
/// (alarm, audit, OTA status): eviction takes the lowest class first and the oldest record within it, so a
/// protected record goes only when nothing unprotected is left; sending takes the highest priority first.
/// </summary>
public static class TelemetryPolicy
{
    public const int Classes = 8;

    public static TelemetryPriority DefaultPriority(TelemetryKind kind) => kind switch
    {
        TelemetryKind.Inference => TelemetryPriority.Low,
        TelemetryKind.Alarm or TelemetryKind.OtaStatus => TelemetryPriority.Critical,
        TelemetryKind.Audit or TelemetryKind.Evictions => TelemetryPriority.High,
        _ => TelemetryPriority.Normal,
    };

    public static bool IsProtected(TelemetryKind kind) => kind is TelemetryKind.Alarm or TelemetryKind.Audit or TelemetryKind.OtaStatus;

    /// <summary>0 (evicted first) to 7 (evicted last).</summary>
    public static int ClassOf(TelemetryKind kind, TelemetryPriority priority) => (IsProtected(kind) ? 4 : 0) + (int)priority;

    public static TelemetryPriority PriorityOf(int cls) => (TelemetryPriority)(cls & 3);

    /// <summary>Classes in sending order: priority first, and protected before unprotected at equal priority.</summary>
    public static readonly int[] SendOrder = [7, 3, 6, 2, 5, 1, 4, 0];

    /// <summary>Time to live of a kind, or null when records of that kind wait for as long as they must.</summary>
    public static TimeSpan? TtlOf(TelemetryConfig config, TelemetryKind kind) =>
        config.TtlHours.TryGetValue(WireName(kind), out var hours) && hours > 0 ? TimeSpan.FromHours(hours) : null;

    public static string WireName(TelemetryKind kind) => kind switch
    {
        TelemetryKind.Inference => "inference",
        TelemetryKind.Health => "health",
        TelemetryKind.Event => "event",
        TelemetryKind.Alarm => "alarm",
        TelemetryKind.Audit => "audit",
        TelemetryKind.OtaStatus => "ota-status",
        TelemetryKind.Evictions => "evictions",
        TelemetryKind.Latency => "latency",
        TelemetryKind.HardExample => "hard-example",
        _ => kind.ToString(),
    };
}
