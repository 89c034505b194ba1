using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Ota;

/// <summary>
/// Why an update was refused or undone. Stable names: they travel in <c>ota/status</c> and are listed in
/// docs/protocol.md. Each verification failure has its own code so an operator can tell an attack from a
/// mistake.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<OtaError>))]
public enum OtaError
{
    [JsonStringEnumMemberName("malformed")]
    Malformed,

    [JsonStringEnumMemberName("unknown-key")]
    UnknownKey,

    [JsonStringEnumMemberName("bad-signature")]
    BadSignature,

    [JsonStringEnumMemberName("threshold-not-met")]
    ThresholdNotMet,

    [JsonStringEnumMemberName("expired")]
    Expired,

    [JsonStringEnumMemberName("keyset-expired")]
    KeySetExpired,

    [JsonStringEnumMemberName("keyset-untrusted")]
    KeySetUntrusted,

    [JsonStringEnumMemberName("keyset-rollback")]
    KeySetRollback,

    [JsonStringEnumMemberName("root-rejected")]
    RootRejected,

    [JsonStringEnumMemberName("version-rollback")]
    VersionRollback,

    [JsonStringEnumMemberName("wrong-profile")]
    WrongProfile,

    [JsonStringEnumMemberName("artifact-too-long")]
    ArtifactTooLong,

    [JsonStringEnumMemberName("artifact-truncated")]
    ArtifactTruncated,

    [JsonStringEnumMemberName("hash-mismatch")]
    HashMismatch,

    [JsonStringEnumMemberName("download-failed")]
    DownloadFailed,

    [JsonStringEnumMemberName("insufficient-space")]
    InsufficientSpace,

    [JsonStringEnumMemberName("model-load-failed")]
    ModelLoadFailed,

    [JsonStringEnumMemberName("schema-mismatch")]
    SchemaMismatch,

    [JsonStringEnumMemberName("health-check-failed")]
    HealthCheckFailed,

    [JsonStringEnumMemberName("latency-budget-exceeded")]
    LatencyBudgetExceeded,

    [JsonStringEnumMemberName("crash-loop")]
    CrashLoop,

    [JsonStringEnumMemberName("inference-failing")]
    InferenceFailing,

    /// <summary>The manifest names a key set version other than the one whose keys verified it.</summary>
    [JsonStringEnumMemberName("keyset-mismatch")]
    KeySetMismatch,

    /// <summary>The manifest is for a model other than the one the device serves (a mix-and-match of valid documents).</summary>
    [JsonStringEnumMemberName("wrong-model")]
    WrongModel,

    /// <summary>A delta that is not a well-formed delta of the artifact (the whole artifact is fetched instead).</summary>
    [JsonStringEnumMemberName("delta-malformed")]
    DeltaMalformed,

    /// <summary>A delta rebuilt a file other than the artifact: the wrong base, or a tampered delta (the whole artifact is fetched instead).</summary>
    [JsonStringEnumMemberName("delta-mismatch")]
    DeltaMismatch,

    /// <summary>The download would exceed the device's daily byte budget; it waits (not a refusal).</summary>
    [JsonStringEnumMemberName("over-budget")]
    OverBudget,
}

/// <summary>A refusal: its code and a one-line reason for the operator.</summary>
public sealed record OtaFailure(OtaError Code, string Reason)
{
    public override string ToString() => $"{OtaErrors.Name(Code)}: {Reason}";
}

public static class OtaErrors
{
    /// <summary>The code's wire name, e.g. <c>bad-signature</c>.</summary>
    public static string Name(OtaError code) =>
        System.Text.Json.JsonSerializer.Serialize(code, OtaJsonContext.Default.OtaError).Trim('"');
}

/// <summary>A verified document, or why it was refused.</summary>
public readonly record struct Verified<T>(T? Document, OtaFailure? Failure)
    where T : class
{
    public bool Ok => Failure is null;

    public static Verified<T> Fail(OtaError code, string reason) => new(null, new OtaFailure(code, reason));

    public static implicit operator Verified<T>(OtaFailure failure) => new(null, failure);

    public static implicit operator Verified<T>(T document) => new(document, null);
}
