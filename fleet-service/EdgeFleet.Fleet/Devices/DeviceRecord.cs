using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Devices;

/// <summary>The registry's view of one device.</summary>
public sealed record DeviceRecord
{
    public required string Id { get; init; }

    public required DateTimeOffset FirstSeen { get; init; }

    public required DateTimeOffset LastSeen { get; init; }

    public string? AgentVersion { get; init; }

    public string? HardwareProfile { get; init; }

    /// <summary>Labels such as site, region and customer; set at enrollment and by operators.</summary>
    public IReadOnlyDictionary<string, string> Tags { get; set; } = new Dictionary<string, string>();

    /// <summary>When the device enrolled (null for a device seen before enrollment existed).</summary>
    public DateTimeOffset? EnrolledAt { get; init; }

    public DateTimeOffset? RevokedAt { get; init; }

    public string? BootId { get; init; }

    /// <summary>How often the agent came back with a new boot id (process restarts, reboots).</summary>
    public int Restarts { get; init; }

    public ModelRef? ActiveModel { get; init; }

    /// <summary>The model the device runs in shadow (a rollout's shadow phase), as it last reported.</summary>
    public ModelRef? ShadowModel { get; init; }

    public OtaState Ota { get; init; }

    /// <summary>The last <c>ota/status</c> the device sent: step, progress, and the reason of a failure.</summary>
    public OtaStatusMessage? LastOta { get; init; }

    public string? StreamId { get; init; }

    public long AckedSeq { get; init; }

    /// <summary>Sequence numbers stored above <see cref="AckedSeq"/>, waiting for a hole below them to fill.</summary>
    public IReadOnlyList<SeqRange> StoredAboveAck { get; set; } = [];

    public long TelemetryRecords { get; init; }

    /// <summary>Sequence numbers that will never arrive: gaps the device left by evicting records unsent.</summary>
    public long SkippedRecords { get; init; }

    /// <summary>Records the device says its buffer evicted (its latest cumulative evictions report).</summary>
    public long EvictedRecords { get; init; }

    /// <summary>Sequence numbers that arrived twice with different content (a device that lost its buffer state).</summary>
    public long ConflictingRecords { get; init; }

    public DateTimeOffset? LastTelemetryAt { get; init; }

    public InferenceSample? LastInference { get; init; }

    /// <summary>The record after a hello: agent, profile, boot (a new boot id counts a restart), first model.</summary>
    public DeviceRecord WithHello(HelloMessage hello) => this with
    {
        AgentVersion = hello.AgentVersion,
        HardwareProfile = hello.HardwareProfile,
        BootId = hello.BootId,
        Restarts = BootId is not null && BootId != hello.BootId ? Restarts + 1 : Restarts,
        ActiveModel = hello.Models.Count > 0 ? hello.Models[0] : ActiveModel,
    };

    public DeviceRecord WithReported(ReportedState state) => this with { ActiveModel = state.Active, ShadowModel = state.Shadow, Ota = state.Ota };

    /// <summary>A shadow model's steps are kept as the last status but leave the served model's OTA state alone.</summary>
    /// <summary>
    /// The device's latest OTA step. Statuses travel two ways (live on <c>ota/status</c>, and outcomes also through
    /// the telemetry buffer), and a lossy link or a reconnect delivers them out of order: a progress report of an
    /// update that already ended (committed, rolled back, rejected) is late, and does not undo the outcome. A failed
    /// update is retried, so its progress reports count again. Decided by state, not time: device clocks step.
    /// </summary>
    public DeviceRecord WithOtaStatus(OtaStatusMessage status) =>
        IsLate(status) ? this : this with { LastOta = status, Ota = status.Shadow ? Ota : status.State };

    private bool IsLate(OtaStatusMessage status) =>
        LastOta is { } last && last.ModelId == status.ModelId && last.Version == status.Version && last.Shadow == status.Shadow
        && last.State is OtaState.Committed or OtaState.RolledBack or OtaState.Rejected
        && status.State is OtaState.Downloading or OtaState.Verifying or OtaState.Staged or OtaState.HealthCheck or OtaState.Activating;
}
