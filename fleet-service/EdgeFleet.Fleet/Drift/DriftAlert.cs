namespace EdgeFleet.Fleet.Drift;

public static class DriftAlertStates
{
    public const string Open = "open";
    public const string Acknowledged = "acknowledged";
    public const string Resolved = "resolved";
}

/// <summary>
/// A sustained drift: a feature of a model version whose PSI stayed at the alert level for the configured number of
/// windows in a row, in one segment. Open until an operator acknowledges it (still active) and until the drift ends
/// (the next judged window below the alert level resolves it). One alert is active per model version, feature and segment.
/// </summary>
public sealed record DriftAlert
{
    public required string Id { get; init; }

    public required string Model { get; init; }

    public required string Version { get; init; }

    public required string Feature { get; init; }

    public required string Segment { get; init; }

    public required string State { get; init; }

    public required DateTimeOffset OpenedAt { get; init; }

    /// <summary>The window where the run of alerting windows began.</summary>
    public required DateTimeOffset Since { get; init; }

    public required double Psi { get; init; }

    public required int Windows { get; init; }

    public DateTimeOffset? AcknowledgedAt { get; init; }

    public string? AcknowledgedBy { get; init; }

    public DateTimeOffset? ResolvedAt { get; init; }

    /// <summary>Model, version, feature and segment: at most one active alert per key.</summary>
    public string Key => $"{Model}\n{Version}\n{Feature}\n{Segment}";

    public bool Active => State != DriftAlertStates.Resolved;
}
