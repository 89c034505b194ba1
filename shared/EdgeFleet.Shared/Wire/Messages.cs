using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Wire;

/// <summary>Every wire message carries the protocol version and the sending device's id.</summary>
/// <remarks>
/// Properties with a default value use <c>set</c>, not <c>init</c>: the JSON source generator assigns every
/// init-only property in one object initializer, so a member missing from the payload would become null
/// instead of keeping its default.
/// </remarks>
public interface IWireMessage
{
    int V { get; }

    string DeviceId { get; }

    /// <summary>Checks the message's own invariants; returns a one-line reason, or null when valid.</summary>
    string? Validate();
}

/// <summary>A model as a device has it installed.</summary>
public sealed record ModelRef
{
    public required string Name { get; init; }

    public required string Version { get; init; }

    public string? Sha256 { get; init; }

    internal string? Validate(string field) =>
        string.IsNullOrWhiteSpace(Name) || Name.Length > 128 ? $"{field}.name must be 1-128 characters"
        : string.IsNullOrWhiteSpace(Version) || Version.Length > 64 ? $"{field}.version must be 1-64 characters"
        : Sha256 is not null && (Sha256.Length != 64 || !Sha256.All(char.IsAsciiHexDigit)) ? $"{field}.sha256 must be 64 hex digits"
        : null;
}

/// <summary><c>ef/v1/{d}/hello</c>: sent by the agent on every (re)connect.</summary>
public sealed record HelloMessage : IWireMessage
{
    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    public required string AgentVersion { get; init; }

    public required string HardwareProfile { get; init; }

    /// <summary>Random per agent start, so the fleet can tell a restart from a reconnect.</summary>
    public required string BootId { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    public IReadOnlyList<ModelRef> Models { get; set; } = [];

    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(AgentVersion) || AgentVersion.Length > 64)
            return "agentVersion must be 1-64 characters";
        if (ProfileName.Problem(HardwareProfile) is { } profile)
            return profile;
        if (string.IsNullOrWhiteSpace(BootId) || BootId.Length > 64)
            return "bootId must be 1-64 characters";
        if (Models.Count > 32)
            return "at most 32 models may be listed";
        for (var i = 0; i < Models.Count; i++)
        {
            if (Models[i] is null)
                return $"models[{i}] is null";
            if (Models[i].Validate($"models[{i}]") is { } error)
                return error;
        }
        return null;
    }
}

/// <summary>Where the device's model update state machine stands.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OtaState>))]
public enum OtaState
{
    [JsonStringEnumMemberName("idle")]
    Idle,

    [JsonStringEnumMemberName("downloading")]
    Downloading,

    [JsonStringEnumMemberName("verifying")]
    Verifying,

    [JsonStringEnumMemberName("staged")]
    Staged,

    [JsonStringEnumMemberName("health-check")]
    HealthCheck,

    [JsonStringEnumMemberName("activating")]
    Activating,

    /// <summary>Active and on probation: a crash loop or failing inference still rolls it back.</summary>
    [JsonStringEnumMemberName("committed")]
    Committed,

    [JsonStringEnumMemberName("rolled-back")]
    RolledBack,

    /// <summary>Refused before activation; the running model is unchanged.</summary>
    [JsonStringEnumMemberName("rejected")]
    Rejected,

    [JsonStringEnumMemberName("failed")]
    Failed,

    /// <summary>A model verified, health-checked and running in shadow (a desired state's shadow): not served.</summary>
    [JsonStringEnumMemberName("shadowing")]
    Shadowing,

    /// <summary>Verified, but its download would exceed today's byte budget: it starts when the budget allows (a new UTC day).</summary>
    [JsonStringEnumMemberName("waiting-for-budget")]
    WaitingForBudget,
}

/// <summary><c>ef/v1/{d}/state/reported</c> (retained): what the device runs now.</summary>
public sealed record ReportedState : IWireMessage
{
    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    public ModelRef? Active { get; init; }

    public ModelRef? Previous { get; init; }

    public ModelRef? Staged { get; init; }

    /// <summary>The model running in shadow beside <see cref="Active"/>, if any.</summary>
    public ModelRef? Shadow { get; init; }

    public OtaState Ota { get; set; } = OtaState.Idle;

    public required DateTimeOffset UpdatedAt { get; init; }

    public string? Validate() =>
        Active?.Validate("active") ?? Previous?.Validate("previous") ?? Staged?.Validate("staged") ?? Shadow?.Validate("shadow");
}
