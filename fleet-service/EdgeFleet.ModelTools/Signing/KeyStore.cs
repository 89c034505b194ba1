using EdgeFleet.Shared.Ota;

namespace EdgeFleet.ModelTools.Signing;

/// <summary>
/// The signing side's key directory:
/// <code>
/// root.json              the current root (devices pin this at install time)
/// roots/N.json           every root version, so devices on an older root can catch up
/// keyset.json            the current key set: online signing keys and the manifest threshold
/// root-keys/ID.key       root private keys (keep offline; 0600, optionally passphrase-encrypted)
/// signing-keys/ID.key    the current key set's private keys
/// retired/ID.key         keys rotated out
/// </code>
/// </summary>
public sealed class KeyStore(string directory)
{
    public string Directory { get; } = directory;

    public string RootPath => Path.Combine(Directory, "root.json");

    public string KeySetPath => Path.Combine(Directory, "keyset.json");

    private string RootKeysDir => Path.Combine(Directory, "root-keys");

    private string SigningKeysDir => Path.Combine(Directory, "signing-keys");

    private string RetiredDir => Path.Combine(Directory, "retired");

    public sealed record Options(int Roots = 1, int RootThreshold = 1, int Signers = 1, int Threshold = 1,
        TimeSpan? RootLifetime = null, TimeSpan? KeySetLifetime = null, string? Passphrase = null);

    /// <summary>Creates root keys, the root document, signing keys and key set v1. Refuses a non-empty directory.</summary>
    public (RootDocument Root, KeySetDocument KeySet) Init(Options options, DateTimeOffset now)
    {
        CheckCounts(options.Roots, options.RootThreshold, "root");
        CheckCounts(options.Signers, options.Threshold, "signing");
        if (File.Exists(RootPath))
            throw new InvalidOperationException($"{Directory} already holds keys (root.json exists)");
        foreach (var dir in new[] { Directory, RootKeysDir, SigningKeysDir, RetiredDir, Path.Combine(Directory, "roots") })
            System.IO.Directory.CreateDirectory(dir);
        var roots = NewKeys(RootKeysDir, options.Roots, options.Passphrase);
        var root = new RootDocument
        {
            Version = 1,
            Expires = now + (options.RootLifetime ?? TimeSpan.FromDays(3650)),
            Keys = roots.Select(k => k.PublicEntry).ToArray(),
            Threshold = options.RootThreshold,
        };
        WriteRoot(SignedDocuments.Sign(root, OtaJsonContext.Default.RootDocument, roots), root.Version);
        var keySet = IssueKeySet(1, options, roots, now);
        Dispose(roots);
        return (root, keySet);
    }

    /// <summary>Issues key set N+1 with fresh signing keys, signed by the root keys; the old signing keys retire.</summary>
    public KeySetDocument RotateKeySet(Options options, DateTimeOffset now)
    {
        CheckCounts(options.Signers, options.Threshold, "signing");
        var root = CurrentRoot();
        var current = CurrentKeySet();
        var roots = LoadKeys(RootKeysDir, options.Passphrase);
        try
        {
            RetireAll(SigningKeysDir);
            return IssueKeySet(current.Version + 1, options, roots, now, root);
        }
        finally
        {
            Dispose(roots);
        }
    }

    /// <summary>
    /// Issues root N+1 with fresh root keys, signed by the current roots and the new ones, then a key set under
    /// it (new signing keys too: a rotation after a suspected compromise must not keep them).
    /// </summary>
    public (RootDocument Root, KeySetDocument KeySet) RotateRoot(Options options, DateTimeOffset now)
    {
        CheckCounts(options.Roots, options.RootThreshold, "root");
        var current = CurrentRoot();
        var oldRoots = LoadKeys(RootKeysDir, options.Passphrase);
        var newRoots = new List<SigningKey>();
        try
        {
            if (oldRoots.Count < current.Threshold)
                throw new InvalidOperationException($"root v{current.Version} needs {current.Threshold} root keys to sign its successor; {oldRoots.Count} found in {RootKeysDir}");
            RetireAll(RootKeysDir);
            newRoots.AddRange(NewKeys(RootKeysDir, options.Roots, options.Passphrase));
            var root = new RootDocument
            {
                Version = current.Version + 1,
                Expires = now + (options.RootLifetime ?? TimeSpan.FromDays(3650)),
                Keys = newRoots.Select(k => k.PublicEntry).ToArray(),
                Threshold = options.RootThreshold,
            };
            WriteRoot(SignedDocuments.Sign(root, OtaJsonContext.Default.RootDocument, [.. oldRoots, .. newRoots]), root.Version);
            RetireAll(SigningKeysDir);
            return (root, IssueKeySet(CurrentKeySet().Version + 1, options, newRoots, now, root));
        }
        finally
        {
            Dispose(oldRoots);
            Dispose(newRoots);
        }
    }

    public RootDocument CurrentRoot() => Check(TrustVerifier.ReadRoot(File.ReadAllBytes(RootPath)));

    public KeySetDocument CurrentKeySet() =>
        Check(SignedDocuments.Parse(File.ReadAllBytes(KeySetPath), OtaJsonContext.Default.KeySetDocument, KeySetDocument.TypeName)).Body;

    /// <summary>Every root envelope after <paramref name="fromVersion"/>, oldest first.</summary>
    public IReadOnlyList<byte[]> RootsAfter(long fromVersion)
    {
        var list = new List<byte[]>();
        for (var v = fromVersion + 1; File.Exists(RootVersionPath(v)); v++)
            list.Add(File.ReadAllBytes(RootVersionPath(v)));
        return list;
    }

    /// <summary>The current key set's private keys, enough of them to meet its threshold.</summary>
    public IReadOnlyList<SigningKey> LoadSigners(string? passphrase)
    {
        var keySet = CurrentKeySet();
        var keys = LoadKeys(SigningKeysDir, passphrase).Where(k => keySet.Keys.Any(e => e.KeyId == k.KeyId)).ToList();
        if (keys.Count < keySet.Threshold)
        {
            Dispose(keys);
            throw new InvalidOperationException($"key set v{keySet.Version} needs {keySet.Threshold} signing keys; {keys.Count} found in {SigningKeysDir}");
        }
        return keys;
    }

    private KeySetDocument IssueKeySet(long version, Options options, IReadOnlyList<SigningKey> roots, DateTimeOffset now, RootDocument? root = null)
    {
        root ??= CurrentRoot();
        var usable = roots.Where(k => root.Keys.Any(e => e.KeyId == k.KeyId)).ToList();
        if (usable.Count < root.Threshold)
            throw new InvalidOperationException($"root v{root.Version} needs {root.Threshold} root keys to sign a key set; {usable.Count} found in {RootKeysDir}");
        var signers = NewKeys(SigningKeysDir, options.Signers, options.Passphrase);
        var keySet = new KeySetDocument
        {
            Version = version,
            IssuedAt = now,
            Expires = now + (options.KeySetLifetime ?? TimeSpan.FromDays(365)),
            Keys = signers.Select(k => k.PublicEntry).ToArray(),
            Threshold = options.Threshold,
        };
        WriteAtomically(KeySetPath, SignedDocuments.Sign(keySet, OtaJsonContext.Default.KeySetDocument, usable));
        Dispose(signers);
        return keySet;
    }

    private void WriteRoot(byte[] envelope, long version)
    {
        WriteAtomically(RootVersionPath(version), envelope);
        WriteAtomically(RootPath, envelope);
    }

    private string RootVersionPath(long version) => Path.Combine(Directory, "roots", $"{version}.json");

    private static List<SigningKey> NewKeys(string dir, int count, string? passphrase)
    {
        var keys = new List<SigningKey>();
        for (var i = 0; i < count; i++)
        {
            var key = SigningKey.Generate();
            KeyFile.Write(Path.Combine(dir, key.KeyId + ".key"), key, passphrase);
            keys.Add(key);
        }
        return keys;
    }

    private static List<SigningKey> LoadKeys(string dir, string? passphrase) =>
        System.IO.Directory.Exists(dir)
            ? System.IO.Directory.GetFiles(dir, "*.key").Order(StringComparer.Ordinal).Select(f => KeyFile.Read(f, passphrase)).ToList()
            : [];

    private void RetireAll(string dir)
    {
        foreach (var file in System.IO.Directory.GetFiles(dir, "*.key"))
            File.Move(file, Path.Combine(RetiredDir, Path.GetFileName(file)), overwrite: true);
    }

    private static void WriteAtomically(string path, byte[] content)
    {
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }

    private static void CheckCounts(int keys, int threshold, string what)
    {
        if (keys < 1 || keys > 16 || threshold < 1 || threshold > keys)
            throw new ArgumentException($"{what} keys: need 1 ≤ threshold ≤ keys ≤ 16 (got {threshold} of {keys})");
    }

    private static T Check<T>(Verified<T> result) where T : class =>
        result.Document ?? throw new InvalidDataException(result.Failure!.ToString());

    private static void Dispose(IEnumerable<SigningKey> keys)
    {
        foreach (var key in keys)
            key.Dispose();
    }
}
