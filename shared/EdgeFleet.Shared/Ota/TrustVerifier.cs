using System.Globalization;

namespace EdgeFleet.Shared.Ota;

/// <summary>
/// Verifies root rotations, key sets and manifests, TUF style: root keys (pinned on the device) sign key
/// sets; a key set names the online keys and how many of them must sign a manifest. Signatures are checked
/// first, so nothing unauthenticated influences any later decision. Never throws for bad input.
/// </summary>
public static class TrustVerifier
{
    /// <summary>Reads the pinned root: it must carry a threshold of its own keys' signatures.</summary>
    public static Verified<RootDocument> ReadRoot(ReadOnlyMemory<byte> envelope)
    {
        var parsed = SignedDocuments.Parse(envelope, OtaJsonContext.Default.RootDocument, RootDocument.TypeName);
        if (!parsed.Ok)
            return parsed.Failure!;
        var root = parsed.Document!.Body;
        if (CheckKeys(root.Keys, root.Threshold, "root") is { } malformed)
            return malformed;
        if (CheckSignatures(parsed.Document, root.Keys, root.Threshold, "root") is { } failure)
            return new OtaFailure(OtaError.RootRejected, $"root v{root.Version} is not signed by its own keys: {failure.Reason}");
        return root;
    }

    /// <summary>
    /// Accepts root <c>trusted.Version + 1</c> when a threshold of the trusted root's keys and a threshold of
    /// its own keys sign it. Expiry is not checked on intermediate roots, only on use (as in TUF).
    /// </summary>
    public static Verified<RootDocument> VerifyRootUpdate(RootDocument trusted, ReadOnlyMemory<byte> envelope)
    {
        var parsed = SignedDocuments.Parse(envelope, OtaJsonContext.Default.RootDocument, RootDocument.TypeName);
        if (!parsed.Ok)
            return parsed.Failure!;
        var next = parsed.Document!.Body;
        if (CheckKeys(next.Keys, next.Threshold, "root") is { } malformed)
            return malformed;
        if (next.Version != trusted.Version + 1)
            return new OtaFailure(OtaError.RootRejected, $"root v{next.Version} does not follow the trusted root v{trusted.Version}");
        if (CheckSignatures(parsed.Document, trusted.Keys, trusted.Threshold, "root") is { } byOld)
            return new OtaFailure(OtaError.RootRejected, $"root v{next.Version} is not signed by the trusted root v{trusted.Version}: {byOld.Reason}");
        if (CheckSignatures(parsed.Document, next.Keys, next.Threshold, "root") is { } byNew)
            return new OtaFailure(OtaError.RootRejected, $"root v{next.Version} is not signed by its own keys: {byNew.Reason}");
        return next;
    }

    /// <summary>A key set signed by a threshold of the root's keys, unexpired, and not older than <paramref name="minVersion"/>.</summary>
    public static Verified<KeySetDocument> VerifyKeySet(RootDocument root, ReadOnlyMemory<byte> envelope, DateTimeOffset now, long minVersion = 0)
    {
        if (root.Expires <= now)
            return new OtaFailure(OtaError.KeySetUntrusted, $"the trusted root v{root.Version} expired at {Time(root.Expires)}");
        var parsed = SignedDocuments.Parse(envelope, OtaJsonContext.Default.KeySetDocument, KeySetDocument.TypeName);
        if (!parsed.Ok)
            return parsed.Failure!;
        var keySet = parsed.Document!.Body;
        if (CheckKeys(keySet.Keys, keySet.Threshold, "key set") is { } malformed)
            return malformed;
        if (CheckSignatures(parsed.Document, root.Keys, root.Threshold, "key set") is { } failure)
            return new OtaFailure(OtaError.KeySetUntrusted, $"key set v{keySet.Version} is not signed by the root: {failure.Reason}");
        if (keySet.Version < minVersion)
            return new OtaFailure(OtaError.KeySetRollback, $"key set v{keySet.Version} is older than the installed v{minVersion}");
        if (keySet.Expires <= now)
            return new OtaFailure(OtaError.KeySetExpired, $"key set v{keySet.Version} expired at {Time(keySet.Expires)}");
        return keySet;
    }

    /// <summary>
    /// A manifest signed by a threshold of the key set's keys, unexpired, newer than the installed version,
    /// with an artifact for this device's hardware profile.
    /// </summary>
    public static Verified<ModelManifest> VerifyManifest(KeySetDocument keySet, ReadOnlyMemory<byte> envelope, DateTimeOffset now,
        string hardwareProfile, long installedVersion)
    {
        var parsed = SignedDocuments.Parse(envelope, OtaJsonContext.Default.ModelManifest, ModelManifest.TypeName);
        if (!parsed.Ok)
            return parsed.Failure!;
        var manifest = parsed.Document!.Body;
        if (CheckSignatures(parsed.Document, keySet.Keys, keySet.Threshold, "manifest") is { } failure)
            return failure;
        if (keySet.Expires <= now)
            return new OtaFailure(OtaError.KeySetExpired, $"key set v{keySet.Version} expired at {Time(keySet.Expires)}");
        if (ManifestRules.Check(manifest) is { } invalid)
            return new OtaFailure(OtaError.Malformed, invalid);
        if (manifest.KeySetVersion != keySet.Version)
            return new OtaFailure(OtaError.KeySetMismatch, $"manifest {manifest.ModelId} v{manifest.Version} names key set v{manifest.KeySetVersion}, but key set v{keySet.Version} verified it");
        if (manifest.Expires <= now)
            return new OtaFailure(OtaError.Expired, $"manifest {manifest.ModelId} v{manifest.Version} expired at {Time(manifest.Expires)}");
        if (manifest.Version <= installedVersion)
            return new OtaFailure(OtaError.VersionRollback, $"manifest {manifest.ModelId} v{manifest.Version} is not above the installed v{installedVersion}");
        if (!manifest.Artifacts.ContainsKey(hardwareProfile))
            return new OtaFailure(OtaError.WrongProfile, $"manifest {manifest.ModelId} v{manifest.Version} has no artifact for profile {hardwareProfile} (it has {string.Join(", ", manifest.Artifacts.Keys)})");
        return manifest;
    }

    /// <summary>
    /// Counts valid signatures from distinct listed keys. Below the threshold, the most specific reason wins:
    /// a listed key with a bad signature, else a signature by an unlisted key, else too few signatures.
    /// </summary>
    private static OtaFailure? CheckSignatures<T>(Parsed<T> document, IReadOnlyList<PublicKeyEntry> keys, int threshold, string what)
    {
        var valid = new HashSet<string>(StringComparer.Ordinal);
        string? unknown = null;
        string? bad = null;
        foreach (var (keyId, sig) in document.Signatures)
        {
            var key = keys.FirstOrDefault(k => k.KeyId == keyId);
            if (key is null)
            {
                unknown ??= keyId;
                continue;
            }
            if (SigningKey.Verify(Convert.FromBase64String(key.PublicKey), document.Canonical, sig))
                valid.Add(keyId);
            else
                bad ??= keyId;
        }
        if (valid.Count >= threshold)
            return null;
        if (bad is not null)
            return new OtaFailure(OtaError.BadSignature, $"the {what}'s signature by key {bad} does not verify");
        if (unknown is not null)
            return new OtaFailure(OtaError.UnknownKey, $"the {what} is signed by key {unknown}, which is not trusted");
        return new OtaFailure(OtaError.ThresholdNotMet, $"the {what} has {valid.Count} valid signature(s) from distinct keys; {threshold} needed");
    }

    private static OtaFailure? CheckKeys(IReadOnlyList<PublicKeyEntry> keys, int threshold, string what)
    {
        if (keys.Count == 0 || threshold < 1 || threshold > keys.Count)
            return new OtaFailure(OtaError.Malformed, $"the {what} needs 1 ≤ threshold ≤ keys ({threshold} of {keys.Count})");
        foreach (var key in keys)
        {
            if (key.Algorithm != "ed25519")
                return new OtaFailure(OtaError.Malformed, $"the {what} lists key {key.KeyId} with unsupported algorithm {key.Algorithm}");
            byte[] raw;
            try
            {
                raw = Convert.FromBase64String(key.PublicKey);
            }
            catch (FormatException)
            {
                return new OtaFailure(OtaError.Malformed, $"the {what} lists key {key.KeyId} with a public key that is not base64");
            }
            if (raw.Length != 32 || SigningKey.KeyIdOf(raw) != key.KeyId)
                return new OtaFailure(OtaError.Malformed, $"the {what} lists key {key.KeyId}, whose id does not match its public key");
        }
        return keys.Select(k => k.KeyId).Distinct(StringComparer.Ordinal).Count() == keys.Count
            ? null : new OtaFailure(OtaError.Malformed, $"the {what} lists a key twice");
    }

    private static string Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
