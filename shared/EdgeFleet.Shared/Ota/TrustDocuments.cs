using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Ota;

/// <summary>An Ed25519 public key as signed documents list it; the id is derived from the key.</summary>
public sealed record PublicKeyEntry
{
    public required string KeyId { get; init; }

    public string Algorithm { get; set; } = "ed25519";

    /// <summary>The raw 32-byte public key, base64.</summary>
    public required string PublicKey { get; init; }
}

/// <summary>The part of every signed document that the verifier checks before anything else.</summary>
public interface ISignedBody
{
    string Type { get; }

    long Version { get; }

    DateTimeOffset Expires { get; }
}

/// <summary>
/// The root of trust, signed by its own keys (and, when it replaces an older root, by a threshold of the
/// older root's keys too). Root keys stay offline; they sign root and key-set documents only.
/// </summary>
public sealed record RootDocument : ISignedBody
{
    public const string TypeName = "root";

    public string Type { get; set; } = TypeName;

    public required long Version { get; init; }

    public required DateTimeOffset Expires { get; init; }

    public required IReadOnlyList<PublicKeyEntry> Keys { get; init; }

    public required int Threshold { get; init; }
}

/// <summary>The online signing keys and how many of them a manifest needs; signed by a threshold of root keys.</summary>
public sealed record KeySetDocument : ISignedBody
{
    public const string TypeName = "keyset";

    public string Type { get; set; } = TypeName;

    public required long Version { get; init; }

    public required DateTimeOffset IssuedAt { get; init; }

    public required DateTimeOffset Expires { get; init; }

    public required IReadOnlyList<PublicKeyEntry> Keys { get; init; }

    public required int Threshold { get; init; }
}

/// <summary>One model file for one hardware profile.</summary>
public sealed record ArtifactEntry
{
    /// <summary>Absolute URL, or a path that the agent resolves against its fleet URL.</summary>
    public required string Url { get; init; }

    public required long Length { get; init; }

    /// <summary>Lower-case hex SHA-256 of the file.</summary>
    public required string Sha256 { get; init; }

    /// <summary>
    /// Deltas that rebuild this file from a model a device may already have (<see cref="ModelDelta"/>); a device
    /// whose active model is one's base may fetch it instead, and fetches the whole file on any mismatch.
    /// </summary>
    public IReadOnlyList<DeltaEntry>? Deltas { get; init; }
}

/// <summary>A delta to an artifact from a base model, each file named by its SHA-256.</summary>
public sealed record DeltaEntry
{
    /// <summary>The model the delta applies to (lower-case hex SHA-256).</summary>
    public required string BaseSha256 { get; init; }

    /// <summary>Absolute URL, or a path that the agent resolves against its fleet URL.</summary>
    public required string Url { get; init; }

    public required long Length { get; init; }

    /// <summary>Lower-case hex SHA-256 of the delta file.</summary>
    public required string Sha256 { get; init; }
}

/// <summary>A model input or output: element type name (float32, int64, ...) and shape (-1 for symbolic).</summary>
public sealed record TensorSchema
{
    public required string Name { get; init; }

    public required string Type { get; init; }

    public required long[] Shape { get; init; }
}

public sealed record ModelSchema
{
    public required IReadOnlyList<TensorSchema> Inputs { get; init; }

    public required IReadOnlyList<TensorSchema> Outputs { get; init; }
}

/// <summary>A tensor as JSON: shape, element type and row-major values.</summary>
public sealed record TensorValue
{
    public required long[] Shape { get; init; }

    public string? Type { get; set; }

    public required double[] Data { get; init; }
}

public sealed record HealthSample
{
    public required Dictionary<string, TensorValue> Inputs { get; init; }

    public required Dictionary<string, TensorValue> Expected { get; init; }
}

/// <summary>What a new model must do before it is activated: reproduce these outputs, fast enough.</summary>
public sealed record HealthCheck
{
    public required IReadOnlyList<HealthSample> Samples { get; init; }

    /// <summary>Largest allowed absolute difference between an output value and its expected value.</summary>
    public double Tolerance { get; set; } = 1e-3;

    /// <summary>The slowest of the health-check runs (after one warm-up) must finish within this budget.</summary>
    public double LatencyBudgetMs { get; set; } = 100;
}

/// <summary>The signed description of one model version, for every hardware profile it ships to.</summary>
public sealed record ModelManifest : ISignedBody
{
    public const string TypeName = "manifest";

    public string Type { get; set; } = TypeName;

    public required string ModelId { get; init; }

    /// <summary>Monotonically increasing per model id; a device never installs a version at or below its own.</summary>
    public required long Version { get; init; }

    public required long KeySetVersion { get; init; }

    public string? RolloutId { get; set; }

    public required DateTimeOffset IssuedAt { get; init; }

    public required DateTimeOffset Expires { get; init; }

    /// <summary>Hardware profile name → artifact.</summary>
    public required Dictionary<string, ArtifactEntry> Artifacts { get; init; }

    public required ModelSchema Schema { get; init; }

    public required HealthCheck HealthCheck { get; init; }

    /// <summary>What the device sketches for drift while it runs this version (from the model card's baselines); absent: nothing.</summary>
    public Stats.DriftSpec? Drift { get; set; }

    /// <summary>
    /// An urgent release (a rollout marked so): the device fetches it even when the download would exceed its
    /// daily byte budget (the bytes still count). Signed, so only the fleet's keys can make a release urgent.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Urgent { get; set; }
}

public sealed record SignatureEntry
{
    public required string KeyId { get; init; }

    /// <summary>Ed25519 signature over the canonical bytes of <c>signed</c>, base64.</summary>
    public required string Sig { get; init; }
}

/// <summary>The transport form of every signed document: the body and its signatures.</summary>
public sealed record SignedEnvelope
{
    [JsonPropertyName("signed")]
    public required JsonElement Body { get; init; }

    public required IReadOnlyList<SignatureEntry> Signatures { get; init; }
}

// A signed document parses in exactly one way: member names as written (the web defaults would also take "Version"
// for "version"), numbers as numbers (they would also take "3").
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    PropertyNameCaseInsensitive = false,
    NumberHandling = JsonNumberHandling.Strict,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    MaxDepth = CanonicalJson.MaxDepth)]
[JsonSerializable(typeof(RootDocument))]
[JsonSerializable(typeof(KeySetDocument))]
[JsonSerializable(typeof(ModelManifest))]
[JsonSerializable(typeof(SignedEnvelope))]
[JsonSerializable(typeof(OtaError))]
[JsonSerializable(typeof(string))]
public sealed partial class OtaJsonContext : JsonSerializerContext;
