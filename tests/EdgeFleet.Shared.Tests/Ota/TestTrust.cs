using System.Text.Json;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Tests.Ota;

/// <summary>A root, a key set and manifest factories, built with the real signing code.</summary>
internal sealed class TestTrust : IDisposable
{
    public static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);

    public TestTrust(int signers = 2, int threshold = 1)
    {
        RootKeys = [SigningKey.Generate(), SigningKey.Generate()];
        Root = new RootDocument { Version = 1, Expires = Now.AddYears(5), Keys = RootKeys.Select(k => k.PublicEntry).ToArray(), Threshold = 2 };
        RootEnvelope = SignedDocuments.Sign(Root, OtaJsonContext.Default.RootDocument, RootKeys);
        Signers = Enumerable.Range(0, signers).Select(_ => SigningKey.Generate()).ToArray();
        KeySet = NewKeySet(1, Signers, threshold);
        KeySetEnvelope = SignKeySet(KeySet, RootKeys);
    }

    public SigningKey[] RootKeys { get; }

    public RootDocument Root { get; }

    public byte[] RootEnvelope { get; }

    public SigningKey[] Signers { get; }

    public KeySetDocument KeySet { get; }

    public byte[] KeySetEnvelope { get; }

    public static KeySetDocument NewKeySet(long version, IEnumerable<SigningKey> keys, int threshold, DateTimeOffset? expires = null) => new()
    {
        Version = version,
        IssuedAt = Now.AddDays(-1),
        Expires = expires ?? Now.AddDays(90),
        Keys = keys.Select(k => k.PublicEntry).ToArray(),
        Threshold = threshold,
    };

    public static byte[] SignKeySet(KeySetDocument keySet, IEnumerable<SigningKey> roots) =>
        SignedDocuments.Sign(keySet, OtaJsonContext.Default.KeySetDocument, roots);

    public static ModelManifest Manifest(long version = 2, DateTimeOffset? expires = null, string profile = "x86-64-generic") => new()
    {
        ModelId = "vibration-classifier",
        Version = version,
        KeySetVersion = 1,
        RolloutId = "r-1",
        IssuedAt = Now.AddHours(-1),
        Expires = expires ?? Now.AddDays(7),
        Artifacts = new() { [profile] = new ArtifactEntry { Url = "/api/artifacts/" + new string('a', 64), Length = 1234, Sha256 = new string('a', 64) } },
        Schema = new ModelSchema
        {
            Inputs = [new TensorSchema { Name = "features", Type = "float32", Shape = [-1, 8] }],
            Outputs = [new TensorSchema { Name = "probabilities", Type = "float32", Shape = [-1, 3] }],
        },
        HealthCheck = new HealthCheck
        {
            Samples = [new HealthSample
            {
                Inputs = new() { ["features"] = new TensorValue { Shape = [1, 8], Data = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] } },
                Expected = new() { ["probabilities"] = new TensorValue { Shape = [1, 3], Data = [0.9, 0.05, 0.05] } },
            }],
        },
    };

    public byte[] Sign(ModelManifest manifest, params SigningKey[] keys) =>
        SignedDocuments.Sign(manifest, OtaJsonContext.Default.ModelManifest, keys.Length == 0 ? [Signers[0]] : keys);

    public Verified<ModelManifest> Verify(byte[] envelope, long installed = 1, string profile = "x86-64-generic", DateTimeOffset? now = null, KeySetDocument? keySet = null) =>
        TrustVerifier.VerifyManifest(keySet ?? KeySet, envelope, now ?? Now, profile, installed);

    /// <summary>Rewrites one part of a signed envelope without re-signing it.</summary>
    public static byte[] Tamper(byte[] envelope, Action<System.Text.Json.Nodes.JsonObject> change)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(envelope)!.AsObject();
        change(node);
        return JsonSerializer.SerializeToUtf8Bytes(node);
    }

    public void Dispose()
    {
        foreach (var key in RootKeys.Concat(Signers))
            key.Dispose();
    }
}
