using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Fleet.Ota;

/// <summary>
/// The deltas the fleet offers: for a pair (base, target) of stored artifacts, the smaller of the two delta methods
/// (<see cref="ModelDeltas"/>), stored as an artifact of its own and remembered in <c>deltas/{base}-{target}</c> so
/// that each pair is encoded once. A pair whose best delta is not below 90 % of the target is remembered as none.
/// </summary>
public sealed class DeltaCatalog(ArtifactStore artifacts)
{
    /// <summary>A delta must save at least this share of the target to be worth a second file and a rebuild.</summary>
    private const double MaxShare = 0.9;

    /// <summary>The delta from <paramref name="baseSha256"/> to the target, or null when there is none worth offering.</summary>
    public DeltaEntry? For(string baseSha256, string targetSha256)
    {
        if (baseSha256 == targetSha256 || artifacts.Find(baseSha256) is not { } basePath || artifacts.Find(targetSha256) is not { } targetPath)
            return null;
        var index = Path.Combine(artifacts.Directory, "deltas", $"{baseSha256}-{targetSha256}");
        if (File.Exists(index))
        {
            var known = File.ReadAllText(index).Trim();
            return known == "none" ? null : Entry(baseSha256, known);
        }
        var target = File.ReadAllBytes(targetPath);
        string content = "none";
        if (target.Length <= ModelDelta.MaxTargetBytes)
        {
            var best = ModelDeltas.Encode(File.ReadAllBytes(basePath), target)[0];
            if (best.Bytes.Length < target.Length * MaxShare)
                content = artifacts.Put(best.Bytes);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(index)!);
        EdgeFleet.Shared.IO.AtomicFile.Write(index, System.Text.Encoding.UTF8.GetBytes(content));
        return content == "none" ? null : Entry(baseSha256, content);
    }

    private DeltaEntry? Entry(string baseSha256, string deltaSha256) => artifacts.Find(deltaSha256) is { } path
        ? new DeltaEntry { BaseSha256 = baseSha256, Sha256 = deltaSha256, Length = new FileInfo(path).Length, Url = $"/api/artifacts/{deltaSha256}" }
        : null;
}
