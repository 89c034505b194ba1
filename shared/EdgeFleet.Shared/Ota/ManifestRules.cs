using System.Text.RegularExpressions;

namespace EdgeFleet.Shared.Ota;

/// <summary>The structural rules of a manifest beyond its JSON shape; a violation is <see cref="OtaError.Malformed"/>.</summary>
public static partial class ManifestRules
{
    public const long MaxArtifactBytes = 4L << 30;

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    public static partial Regex ModelIdPattern();

    public static string? Check(ModelManifest m)
    {
        if (!ModelIdPattern().IsMatch(m.ModelId))
            return "modelId must be 1-128 characters of letters, digits, '.', '_' or '-'";
        if (m.Version < 1)
            return "version must be at least 1";
        if (m.Expires <= m.IssuedAt)
            return "expires must be after issuedAt";
        if (m.Artifacts.Count == 0)
            return "the manifest lists no artifacts";
        if (m.Drift?.Validate() is { } drift)
            return drift;
        foreach (var (profile, artifact) in m.Artifacts)
        {
            if (string.IsNullOrWhiteSpace(profile) || profile.Length > 64)
                return "hardware profile names must be 1-64 characters";
            if (string.IsNullOrWhiteSpace(artifact.Url))
                return $"artifact for {profile} has no url";
            if (artifact.Length < 1 || artifact.Length > MaxArtifactBytes)
                return $"artifact for {profile} has length {artifact.Length}; it must be 1..{MaxArtifactBytes}";
            if (artifact.Sha256.Length != 64 || !artifact.Sha256.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
                return $"artifact for {profile} needs a lower-case hex sha256";
            if (artifact.Deltas is { Count: > 8 })
                return $"artifact for {profile} lists {artifact.Deltas.Count} deltas; at most 8";
            foreach (var delta in artifact.Deltas ?? [])
            {
                if (!Wire.ChunkFrame.IsSha256(delta.BaseSha256) || !Wire.ChunkFrame.IsSha256(delta.Sha256) || string.IsNullOrWhiteSpace(delta.Url))
                    return $"a delta for {profile} needs a url and lower-case hex sha256 and baseSha256";
                if (delta.Length < 1 || delta.Length >= artifact.Length)
                    return $"a delta for {profile} has length {delta.Length}; it must be 1..{artifact.Length - 1} (smaller than the artifact)";
            }
        }
        if (m.Schema.Inputs.Count == 0 || m.Schema.Outputs.Count == 0)
            return "the schema needs at least one input and one output";
        if (m.HealthCheck.Samples.Count == 0)
            return "the health check needs at least one sample";
        if (m.HealthCheck.Tolerance < 0 || !double.IsFinite(m.HealthCheck.Tolerance))
            return "healthCheck.tolerance must be a finite number ≥ 0";
        if (m.HealthCheck.LatencyBudgetMs <= 0 || !double.IsFinite(m.HealthCheck.LatencyBudgetMs))
            return "healthCheck.latencyBudgetMs must be > 0";
        return null;
    }
}
