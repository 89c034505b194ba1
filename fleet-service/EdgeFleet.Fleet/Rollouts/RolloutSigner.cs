using System.Text.Json;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.ModelTools.Signing;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>The signed documents a device needs for one release: the manifest, the key set, and root updates.</summary>
public sealed record SignedRelease(JsonElement Manifest, JsonElement KeySet, List<JsonElement> Roots);

/// <summary>
/// Signs rollout manifests with the fleet's key directory (<see cref="SigningOptions"/>). The artifact is the
/// version's INT8 file when it has one, else its FP32 original, for every hardware profile named; the health
/// check is computed here by running that file (<see cref="ManifestBuilder.SyntheticSamples"/>).
/// </summary>
public sealed class RolloutSigner(FleetOptions options, ArtifactStore artifacts, TimeProvider time, DeltaCatalog? deltas = null)
{
    public bool Configured => options.Signing.KeyDirectory is not null;

    /// <param name="bases">The SHA-256s of the files devices run now: the manifest offers a delta from each the fleet has.</param>
    public SignedRelease Sign(ModelVersion version, long releaseAs, IReadOnlyList<string> profiles, string rolloutId, IReadOnlyCollection<string>? bases = null,
        bool urgent = false)
    {
        if (options.Signing.KeyDirectory is not { } directory)
            throw new InvalidOperationException("the fleet has no signing keys: set Fleet:Signing:KeyDirectory to a directory made by `edgefleet keys init`");
        var artifact = version.Artifacts.FirstOrDefault(a => a.Kind == ModelArtifact.Int8Kind)
            ?? version.Artifacts.FirstOrDefault(a => a.Kind == ModelArtifact.Fp32Kind)
            ?? throw new InvalidOperationException($"{version.ModelId} v{version.Version} has no FP32 or INT8 artifact");
        var path = artifacts.Find(artifact.Sha256) ?? throw new InvalidOperationException($"artifact {artifact.Sha256} of {version.ModelId} v{version.Version} is missing from the artifact store");
        var store = new KeyStore(directory);
        var passphrase = options.Signing.PassphraseFile is { } file ? File.ReadAllText(file).TrimEnd('\r', '\n')
            : Environment.GetEnvironmentVariable("EDGEFLEET_KEY_PASSPHRASE");
        var keySet = store.CurrentKeySet();
        var manifest = ManifestBuilder.Build(new ManifestBuilder.Request
        {
            ModelPath = path,
            ModelId = version.ModelId,
            Version = releaseAs,
            Profiles = profiles,
            Samples = ManifestBuilder.SyntheticSamples(path),
            RolloutId = rolloutId,
            LatencyBudgetMs = 1000,
        }, keySet, time.GetUtcNow());
        manifest.Drift = DriftSpecOf(version.Card, options.Drift.WindowSeconds);
        manifest.Urgent = urgent;
        var offered = deltas is null ? [] : (bases ?? []).Take(8).Select(b => deltas.For(b, artifact.Sha256)).OfType<DeltaEntry>().ToList();
        if (offered.Count > 0)
        {
            foreach (var profile in manifest.Artifacts.Keys.ToList())
                manifest.Artifacts[profile] = manifest.Artifacts[profile] with { Deltas = offered };
        }
        var signers = store.LoadSigners(passphrase);
        try
        {
            var signed = ManifestBuilder.Sign(manifest, signers);
            return new SignedRelease(
                JsonDocument.Parse(signed).RootElement.Clone(),
                JsonDocument.Parse(File.ReadAllBytes(store.KeySetPath)).RootElement.Clone(),
                [.. store.RootsAfter(1).Select(r => JsonDocument.Parse(r).RootElement.Clone())]);
        }
        finally
        {
            foreach (var key in signers)
                key.Dispose();
        }
    }

    /// <summary>The card's baselines that name a source, as the drift spec devices sketch; null when there are none.</summary>
    public static EdgeFleet.Shared.Stats.DriftSpec? DriftSpecOf(ModelCard card, double windowSeconds)
    {
        var features = card.FeatureBaselines.Where(b => b.EffectiveSource is not null)
            .Select(b => new EdgeFleet.Shared.Stats.DriftFeature(b.Name, b.EffectiveSource!, b.Edges)).ToList();
        return features.Count == 0 ? null : new EdgeFleet.Shared.Stats.DriftSpec { WindowSeconds = windowSeconds, Features = features };
    }
}
