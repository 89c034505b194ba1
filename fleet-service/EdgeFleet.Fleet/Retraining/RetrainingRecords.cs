using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Retraining;

/// <summary>Retrain when drift alerts of the model are active on at least <see cref="MinFeatures"/> features, each for at least <see cref="MinWindows"/> windows in a row.</summary>
public sealed record DriftTrigger
{
    public int MinFeatures { get; set; } = 1;

    public int MinWindows { get; set; } = 3;
}

/// <summary>
/// Retrain when the fleet's mean top-class confidence over the last <see cref="Windows"/> drift windows fell more than
/// <see cref="MaxDrop"/> below the model card's (metric <c>meanConfidence</c>, else the mean of the confidence baseline).
/// </summary>
public sealed record ConfidenceTrigger
{
    public double MaxDrop { get; set; } = 0.1;

    public int Windows { get; set; } = 3;
}

/// <summary>
/// When and how a model is retrained: its triggers (drift, a confidence drop, a schedule; a job can always be
/// started by hand), the executor that runs the job (named in the fleet's configuration, so the API cannot make
/// the fleet run arbitrary programs), the cooldown between automatic jobs, the job's time limit, and the
/// rollout a validated result is drafted as.
/// </summary>
public sealed record RetrainingPolicy
{
    /// <summary>The model (the API takes it from the path).</summary>
    public string ModelId { get; init; } = "";

    public bool Enabled { get; set; } = true;

    /// <summary>A key of <c>Fleet:Retraining:Executors</c>.</summary>
    public string Executor { get; init; } = "";

    public DriftTrigger? Drift { get; init; }

    public ConfidenceTrigger? Confidence { get; init; }

    /// <summary>Retrain every so many hours (counted from the last job).</summary>
    public double? EveryHours { get; init; }

    /// <summary>No automatic job within this long after the last one started.</summary>
    public double CooldownHours { get; set; } = 24;

    /// <summary>A job not finished this long after it was queued fails as timed out.</summary>
    public double TimeoutMinutes { get; set; } = 60;

    /// <summary>How many hard examples a job takes (the newest).</summary>
    public int MaxExamples { get; set; } = 5000;

    /// <summary>The draft rollout's target (a group, a selector or devices, as for any rollout) and phases (default: 10%, then 100%).</summary>
    public RolloutTarget Target { get; set; } = new();

    public List<RolloutPhase> Phases { get; set; } = [new() { Percent = 10, SoakSeconds = 600 }, new() { Percent = 100 }];

    public RolloutGates? Gates { get; init; }

    public DateTimeOffset UpdatedAt { get; init; }

    public string UpdatedBy { get; init; } = "";

    /// <summary>Null when the policy is consistent, else the first problem.</summary>
    public string? Problem() =>
        !DeviceId.IsValid(ModelId) ? "modelId must be a registered model's id"
        : string.IsNullOrWhiteSpace(Executor) ? "executor must name one of the fleet's Fleet:Retraining:Executors"
        : Drift is { } d && (d.MinFeatures < 1 || d.MinWindows < 1) ? "drift.minFeatures and drift.minWindows must be at least 1"
        : Confidence is { } c && (!(c.MaxDrop > 0) || c.MaxDrop >= 1 || c.Windows < 1) ? "confidence.maxDrop must be in (0, 1) and confidence.windows at least 1"
        : EveryHours is { } h && !(h >= 0.01) ? "everyHours must be at least 0.01"
        : !(CooldownHours >= 0) ? "cooldownHours must not be negative"
        : !(TimeoutMinutes > 0) || TimeoutMinutes > 7 * 24 * 60 ? "timeoutMinutes must be within (0, 10080]"
        : MaxExamples is < 0 or > 100_000 ? "maxExamples must be 0-100000"
        : Phases.Count == 0 ? "phases must not be empty"
        : null;
}

public static class RetrainingJobStates
{
    public const string Queued = "queued";
    public const string Running = "running";

    /// <summary>The executor's output is being registered, quantized and validated.</summary>
    public const string Processing = "processing";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    public static bool IsOpen(string state) => state is Queued or Running or Processing;
}

/// <summary>What a job was started from: the window of time, the segments and alerts that drifted, the hard examples taken.</summary>
public sealed record JobSnapshot
{
    public required DateTimeOffset From { get; init; }

    public required DateTimeOffset To { get; init; }

    public List<string> Segments { get; set; } = [];

    public List<string> Features { get; set; } = [];

    public List<Drift.DriftAlert> Alerts { get; set; } = [];

    /// <summary>The hard examples of the model within the window (their labels are read when the executor fetches them).</summary>
    public List<string> HardExampleIds { get; set; } = [];

    /// <summary>The confidence reading that triggered the job, if one did.</summary>
    public double? MeanConfidence { get; init; }

    public double? BaselineConfidence { get; init; }
}

public sealed record JobEvent(DateTimeOffset At, string State, string Message);

/// <summary>
/// One retraining run of a model: queued by a trigger or an operator (one open job per model), run by an executor
/// that reports back, and its output registered as a new version, quantized, validated and drafted as a rollout.
/// </summary>
public sealed record RetrainingJob
{
    public required string Id { get; init; }

    public required string ModelId { get; init; }

    /// <summary>The version the job retrains (the newest approved one when it was queued).</summary>
    public required long BaseVersion { get; init; }

    public required string State { get; init; }

    /// <summary>drift, confidence, schedule or manual.</summary>
    public required string Trigger { get; init; }

    public required string Reason { get; init; }

    public required string Executor { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }

    public required DateTimeOffset Deadline { get; init; }

    public DateTimeOffset? StartedAt { get; init; }

    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>SHA-256 (hex) of the job's bearer token, which lets the executor fetch its inputs and report back.</summary>
    public required string TokenHash { get; init; }

    public required JobSnapshot Snapshot { get; init; }

    /// <summary>The version the output became, its validation verdict, and the draft rollout.</summary>
    public long? OutputVersion { get; init; }

    public string? Verdict { get; init; }

    public string? RolloutId { get; init; }

    public string? Error { get; init; }

    /// <summary>What the executor said of its run (its result.json), as written.</summary>
    public System.Text.Json.JsonElement? Result { get; init; }

    public List<JobEvent> Events { get; set; } = [];

    public bool Open => RetrainingJobStates.IsOpen(State);

    public RetrainingJob Moved(string state, DateTimeOffset at, string message) => this with
    {
        State = state,
        StartedAt = state == RetrainingJobStates.Running ? StartedAt ?? at : StartedAt,
        FinishedAt = RetrainingJobStates.IsOpen(state) ? FinishedAt : at,
        Events = [.. Events, new JobEvent(at, state, message)],
    };
}

/// <summary>A hard example as the fleet keeps it: from which device and when, and the label someone gave it (feedback).</summary>
public sealed record StoredHardExample
{
    /// <summary>device, stream and sequence number: the same record sent twice is kept once.</summary>
    public required string Id { get; init; }

    public required string DeviceId { get; init; }

    public required DateTimeOffset Ts { get; init; }

    public required HardExample Example { get; init; }

    public string? Label { get; init; }

    public string? LabelledBy { get; init; }

    public DateTimeOffset? LabelledAt { get; init; }

    public static string IdOf(string deviceId, string streamId, long seq) => $"{deviceId}:{streamId}:{seq.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
}
