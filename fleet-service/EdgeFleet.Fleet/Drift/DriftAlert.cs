namespace EdgeFleet.Fleet.Drift;

public static class DriftAlertStates
{
    public const string Open = "open";
    public const string Acknowledged = "acknowledged";
    public const string Resolved = "resolved";
}

/// <summary>
/// A sustained drift (or data-quality problem, <see cref="Kind"/>) of a feature of a model version in one segment:
/// opened after the configured number of drifting windows in a row, active until the drift ends (the configured
/// number of judged windows in a row below the warning level) or no device has served the version for a while.
/// One alert per model version, feature, segment and kind: when that drift comes back the same alert is reopened.
/// </summary>
public sealed record DriftAlert
{
    public required string Id { get; init; }

    public required string Model { get; init; }

    public required string Version { get; init; }

    public required string Feature { get; init; }

    public required string Segment { get; init; }

    /// <summary><c>drift</c> or <c>quality</c> (<see cref="DriftKinds"/>).</summary>
    public string Kind { get; init; } = DriftKinds.Drift;

    public required string State { get; init; }

    public required DateTimeOffset OpenedAt { get; init; }

    /// <summary>The window where the run of drifting windows that opened (or last reopened) it began.</summary>
    public required DateTimeOffset Since { get; init; }

    /// <summary>The latest judged PSI (0 for a data-quality alert without judged values).</summary>
    public required double Psi { get; init; }

    /// <summary>Drifting windows counted while the alert was active (it only grows).</summary>
    public required int Windows { get; init; }

    /// <summary>The newest window counted in <see cref="Windows"/>.</summary>
    public DateTimeOffset? LastWindow { get; init; }

    /// <summary>
    /// <c>warn</c> or <c>alert</c> (PSI reached the alert level); for a data-quality alert, <c>invalid</c> or <c>out-of-range</c>.
    /// </summary>
    public string Severity { get; init; } = "alert";

    /// <summary>The devices that contribute most, as of the latest drifting window.</summary>
    public List<DriftContributor> Devices { get; init; } = [];

    public int Reopened { get; init; }

    public DateTimeOffset? ReopenedAt { get; init; }

    public DateTimeOffset? AcknowledgedAt { get; init; }

    public string? AcknowledgedBy { get; init; }

    public DateTimeOffset? ResolvedAt { get; init; }

    /// <summary>Why it was resolved: the drift ended, or the version is no longer served.</summary>
    public string? Resolution { get; init; }

    /// <summary>Model, version, feature, segment (and kind, for data quality): at most one alert per key.</summary>
    public string Key => $"{Model}\n{Version}\n{Feature}\n{Segment}" + (Kind == DriftKinds.Drift ? "" : "\n" + Kind);

    public bool Active => State != DriftAlertStates.Resolved;
}
