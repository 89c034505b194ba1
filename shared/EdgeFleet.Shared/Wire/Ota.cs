using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Wire;

/// <summary>
/// <c>ef/v1/{d}/state/desired</c> (retained): the model the device should run, as a signed manifest with the
/// key set that signed it, plus any root rotations the device may not have seen; and optionally a model to run
/// in shadow beside it (a rollout's shadow phase). The message itself is not trusted: everything in it is
/// verified against the device's pinned root. Without <see cref="Manifest"/> the device keeps the model it
/// runs; without <see cref="Shadow"/> it runs no shadow.
/// </summary>
public sealed record DesiredState : IWireMessage
{
    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    /// <summary>The signed manifest envelope of the model to serve; absent: keep the one running.</summary>
    public JsonElement? Manifest { get; init; }

    /// <summary>
    /// The signed manifest envelope of a model to run in shadow: on the same inputs as the served model, its
    /// results compared and reported (<see cref="ShadowWindow"/>), never served. Signed under <see cref="KeySet"/>.
    /// </summary>
    public JsonElement? Shadow { get; init; }

    /// <summary>The signed key-set envelope the manifest was signed under.</summary>
    public required JsonElement KeySet { get; init; }

    /// <summary>Signed root documents in version order, for devices that pinned an older root.</summary>
    public IReadOnlyList<JsonElement> Roots { get; set; } = [];

    public string? Validate() =>
        Manifest is { ValueKind: not JsonValueKind.Object } ? "manifest must be a signed envelope object"
        : Shadow is { ValueKind: not JsonValueKind.Object } ? "shadow must be a signed envelope object"
        : KeySet.ValueKind != JsonValueKind.Object ? "keySet must be a signed envelope object"
        : Roots.Count > 16 ? "at most 16 roots"
        : Roots.Any(r => r.ValueKind != JsonValueKind.Object) ? "roots must be signed envelope objects"
        : null;
}

/// <summary>How a device fetches an artifact.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OtaTransport>))]
public enum OtaTransport
{
    /// <summary>HTTP range requests to the artifact's URL.</summary>
    [JsonStringEnumMemberName("http")]
    Http,

    /// <summary>Chunk requests through the MQTT broker (<c>ota/chunk/get</c>, <see cref="ChunkRequest"/>).</summary>
    [JsonStringEnumMemberName("mqtt")]
    Mqtt,
}

/// <summary>Bytes of an artifact downloaded so far.</summary>
public sealed record OtaProgress
{
    public required long Bytes { get; init; }

    public required long Total { get; init; }
}

/// <summary><c>ef/v1/{d}/ota/status</c>: one step of one update, with the reason when it failed.</summary>
public sealed record OtaStatusMessage : IWireMessage
{
    [JsonRequired]
    public int V { get; set; } = Protocol.Version;

    public required string DeviceId { get; init; }

    public required string ModelId { get; init; }

    public required long Version { get; init; }

    public string? RolloutId { get; set; }

    /// <summary>A step of the shadow model's installation (<see cref="DesiredState.Shadow"/>), not of the served model's.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Shadow { get; set; }

    public required OtaState State { get; init; }

    public OtaProgress? Progress { get; set; }

    /// <summary>How the artifact's bytes came while downloading: over HTTP from the fleet, or through the broker.</summary>
    public OtaTransport? Transport { get; set; }

    /// <summary>Bytes not sent because a delta rebuilt the artifact from the model the device had (the artifact's length less the delta's).</summary>
    public long? BytesSaved { get; set; }

    public OtaError? Error { get; set; }

    public string? Reason { get; set; }

    public required DateTimeOffset At { get; init; }

    public string? Validate() =>
        string.IsNullOrWhiteSpace(ModelId) || ModelId.Length > 128 ? "modelId must be 1-128 characters"
        : Reason is { Length: > 1024 } ? "reason must be at most 1024 characters"
        : RolloutId is { Length: > 128 } ? "rolloutId must be at most 128 characters"
        : null;
}
