using System.Text.Json;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>Which devices a rollout may reach: a group, a tag selector, explicit devices (any combination: all must hold).</summary>
public sealed record RolloutTarget
{
    public string? Group { get; init; }

    public string? Selector { get; init; }

    public List<string> Devices { get; set; } = [];
}

/// <summary>
/// One phase: the share of the target that has the new version once the phase runs (cumulative, a percentage or
/// a count), how long it soaks before the next phase may start, and how many of its devices must have reported
/// an outcome (installed or failed) before its gates are judged.
/// </summary>
public sealed record RolloutPhase
{
    public double? Percent { get; init; }

    public int? Count { get; init; }

    public double SoakSeconds { get; init; }

    public int MinReporting { get; set; } = 1;

    /// <summary>
    /// A shadow phase: its devices run the new version in shadow beside the model they serve (they keep serving
    /// the old one), and the phase's quality gates judge the shadow's agreement, latency and outputs against the
    /// served model on the same inputs. Shadow phases come before the others; the first phase that is not one
    /// makes the shadow devices serve the new version.
    /// </summary>
    public bool Shadow { get; init; }

    /// <summary>
    /// How many of <paramref name="eligible"/> devices have the new version once this phase runs: a count as given (at
    /// most the eligible), a percentage rounded down, so a phase never moves more than its share, except that a phase
    /// of more than 0 % moves at least one device (34 % of 3 is 1 device; 1 % of 50 is 1, not 0).
    /// </summary>
    public int Size(int eligible)
    {
        if (Count is { } c)
            return Math.Clamp(c, 0, eligible);
        var percent = Math.Clamp(Percent ?? 100, 0, 100);
        var share = (int)Math.Floor(eligible * percent / 100.0 + 1e-9);
        return percent > 0 && eligible > 0 ? Math.Max(1, share) : share;
    }
}

/// <summary>
/// Install gate, judged on the moved devices that reported: the share that failed (rejected, rolled back) must
/// stay at or under the limit; and the model-quality gates (<see cref="QualityGates"/>).
/// </summary>
public sealed record RolloutGates
{
    public double MaxFailureRate { get; set; } = 0.05;

    public QualityGates Quality { get; set; } = new();
}

/// <summary>A device the rollout moved: when, in which phase, from which model, and how it went.</summary>
public sealed record RolloutDevice
{
    public required string Id { get; init; }

    public required int Phase { get; init; }

    public required DateTimeOffset AssignedAt { get; init; }

    /// <summary>The model it ran when it was moved; a rollback makes this one desired again.</summary>
    public ModelRef? Previous { get; init; }

    /// <summary>pending, installed, failed; after a rollback: reverting, reverted.</summary>
    public string Status { get; set; } = RolloutDeviceStatus.Pending;

    public string? Reason { get; init; }

    /// <summary>
    /// The device runs the new version in shadow, not yet served: <see cref="Status"/> is that of the shadow
    /// (installed: running in shadow). Cleared when a later phase makes it serve the new version.
    /// </summary>
    public bool Shadow { get; init; }

    /// <summary>The shadow phase the device ran the new version in, if it did (kept after it serves it).</summary>
    public int? ShadowPhase { get; init; }

    /// <summary>The device's last update step for this version (downloading, waiting-for-budget, committed, …).</summary>
    public EdgeFleet.Shared.Wire.OtaState? Step { get; init; }

    /// <summary>How its artifact came: over HTTP or through the broker.</summary>
    public EdgeFleet.Shared.Wire.OtaTransport? Transport { get; init; }

    /// <summary>Bytes a delta saved it.</summary>
    public long? BytesSaved { get; init; }
}

public static class RolloutDeviceStatus
{
    public const string Pending = "pending";
    public const string Installed = "installed";
    public const string Failed = "failed";
    public const string Reverting = "reverting";
    public const string Reverted = "reverted";
}

public static class RolloutStates
{
    /// <summary>Planned but not started: a retrained version's rollout awaiting an operator's approval (unsigned until then).</summary>
    public const string Draft = "draft";
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Completed = "completed";
    public const string Aborted = "aborted";
    public const string RolledBack = "rolled-back";

    public static bool IsFinal(string state) => state is Completed or Aborted or RolledBack;
}

/// <summary>Something that happened to a rollout: a phase started, a gate failed, an operator acted. The audit trail of the rollout itself.</summary>
public sealed record RolloutEvent(DateTimeOffset At, string By, string Action, int Phase, string? Reason);

/// <summary>
/// A staged rollout of one approved model version. Devices are ranked by a hash of the rollout id and the
/// device id, so the order is stable: a device in the first phase stays ahead of the rest in every later
/// one, and the same devices are chosen after a restart.
/// </summary>
public sealed record Rollout
{
    public required string Id { get; init; }

    public required string ModelId { get; init; }

    public required long Version { get; init; }

    public required RolloutTarget Target { get; init; }

    public required List<RolloutPhase> Phases { get; init; }

    public RolloutGates Gates { get; set; } = new();

    /// <summary>pause (the default) or rollback: what a failed gate does.</summary>
    public string OnGateFailure { get; set; } = "pause";

    /// <summary>Signed into the manifest: devices fetch it even past their daily byte budget.</summary>
    public bool Urgent { get; init; }

    public required string State { get; init; }

    /// <summary>Bumped by every saved change: a change computed from an older revision is not saved.</summary>
    public long Revision { get; init; }

    /// <summary>How many devices the target held at the engine's last step (phase sizes are shares of it).</summary>
    public int Eligible { get; init; }

    /// <summary>The phase running now (index into <see cref="Phases"/>).</summary>
    public int Phase { get; init; }

    public required DateTimeOffset PhaseStartedAt { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }

    /// <summary>The signed manifest, key set and root updates every moved device receives.</summary>
    public required JsonElement Manifest { get; init; }

    public required JsonElement KeySet { get; init; }

    public List<JsonElement> Roots { get; set; } = [];

    /// <summary>After a rollback: per previous version, the registry version that re-releases it (devices refuse lower versions).</summary>
    public Dictionary<string, RevertRelease> Reverts { get; set; } = [];

    public List<RolloutDevice> Devices { get; set; } = [];

    public List<RolloutEvent> Events { get; set; } = [];

    public Rollout With(RolloutEvent e) => this with { Events = [.. Events, e] };
}

/// <summary>A previous version released again under a new number for a rollback, with its signed documents.</summary>
public sealed record RevertRelease(long Version, JsonElement Manifest);
