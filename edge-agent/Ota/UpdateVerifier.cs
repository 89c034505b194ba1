using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Agent.Ota;

/// <summary>A manifest verified through the whole chain, and the trust documents it was verified with.</summary>
public sealed record VerifiedUpdate(ModelManifest Manifest, byte[] Root, byte[] KeySet);

/// <summary>
/// The device's side of the chain of trust: root (pinned, or a verified successor) → any newer roots the
/// desired state carries → key set (never older than the one already accepted) → manifest.
/// </summary>
public static class UpdateVerifier
{
    /// <param name="servedModelId">The model the device serves: a manifest for another model is refused
    /// (<see cref="OtaError.WrongModel"/>), however validly signed. Null: a device that serves nothing yet, or one
    /// configured to take any model.</param>
    public static Verified<VerifiedUpdate> Verify(byte[] trustedRoot, byte[]? acceptedKeySet, byte[] manifest, byte[] keySet,
        IEnumerable<byte[]> roots, DateTimeOffset now, string hardwareProfile, Func<string, long> installedVersion, string? servedModelId = null)
    {
        var root = TrustVerifier.ReadRoot(trustedRoot);
        if (!root.Ok)
            return root.Failure!;
        var rootEnvelope = trustedRoot;
        foreach (var candidate in roots)
        {
            var peek = SignedDocuments.Parse(candidate, OtaJsonContext.Default.RootDocument, RootDocument.TypeName);
            if (peek.Ok && peek.Document!.Body.Version <= root.Document!.Version)
                continue;
            var next = TrustVerifier.VerifyRootUpdate(root.Document!, candidate);
            if (!next.Ok)
                return next.Failure!;
            root = next;
            rootEnvelope = candidate;
        }

        // A key set older than the accepted one is replayed, not new: keep using the accepted one.
        var accepted = acceptedKeySet is null ? null : TrustVerifier.VerifyKeySet(root.Document!, acceptedKeySet, now) is { Ok: true } a ? a.Document : null;
        var carried = TrustVerifier.VerifyKeySet(root.Document!, keySet, now, accepted?.Version ?? 0);
        KeySetDocument usedKeySet;
        byte[] usedEnvelope;
        if (carried.Ok)
        {
            (usedKeySet, usedEnvelope) = (carried.Document!, keySet);
        }
        else if (carried.Failure!.Code == OtaError.KeySetRollback && accepted is not null)
        {
            (usedKeySet, usedEnvelope) = (accepted, acceptedKeySet!);
        }
        else
        {
            return carried.Failure;
        }

        var identity = PeekIdentity(manifest);
        var verified = TrustVerifier.VerifyManifest(usedKeySet, manifest, now, hardwareProfile, installedVersion(identity?.ModelId ?? ""));
        if (!verified.Ok)
            return verified.Failure!;
        if (servedModelId is not null && verified.Document!.ModelId != servedModelId)
        {
            return new OtaFailure(OtaError.WrongModel,
                $"manifest is for model {verified.Document.ModelId}; this device serves {servedModelId} (set ota.allowModelChange to switch models)");
        }
        return new VerifiedUpdate(verified.Document!, rootEnvelope, usedEnvelope);
    }

    /// <summary>The model id and version a manifest claims, unverified: only for choosing what to compare with.</summary>
    public static (string ModelId, long Version)? PeekIdentity(byte[] manifest)
    {
        var parsed = SignedDocuments.Parse(manifest, OtaJsonContext.Default.ModelManifest, ModelManifest.TypeName);
        return parsed.Ok ? (parsed.Document!.Body.ModelId, parsed.Document.Body.Version) : null;
    }
}
