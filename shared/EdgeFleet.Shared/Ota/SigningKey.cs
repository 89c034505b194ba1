using System.Security.Cryptography;
using NSec.Cryptography;

namespace EdgeFleet.Shared.Ota;

/// <summary>An Ed25519 key pair that signs trust documents (root, key set) or manifests.</summary>
public sealed class SigningKey : IDisposable
{
    private static readonly SignatureAlgorithm Ed25519 = SignatureAlgorithm.Ed25519;
    private readonly Key _key;

    private SigningKey(Key key)
    {
        _key = key;
        PublicKeyBytes = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        KeyId = KeyIdOf(PublicKeyBytes);
    }

    public string KeyId { get; }

    public byte[] PublicKeyBytes { get; }

    public PublicKeyEntry PublicEntry => new() { KeyId = KeyId, PublicKey = Convert.ToBase64String(PublicKeyBytes) };

    public static SigningKey Generate() =>
        new(Key.Create(Ed25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport }));

    public static SigningKey FromPrivateKey(ReadOnlySpan<byte> rawPrivateKey) =>
        new(Key.Import(Ed25519, rawPrivateKey, KeyBlobFormat.RawPrivateKey,
            new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport }));

    /// <summary>The raw 32-byte private key: only for writing the key file.</summary>
    public byte[] ExportPrivateKey() => _key.Export(KeyBlobFormat.RawPrivateKey);

    public byte[] Sign(ReadOnlySpan<byte> data) => Ed25519.Sign(_key, data);

    /// <summary>A key's id: the first 16 bytes of the SHA-256 of its raw public key, as hex.</summary>
    public static string KeyIdOf(ReadOnlySpan<byte> rawPublicKey) =>
        Convert.ToHexStringLower(SHA256.HashData(rawPublicKey).AsSpan(0, 16));

    /// <summary>Verifies one signature; false for a malformed key or signature rather than an exception.</summary>
    public static bool Verify(ReadOnlySpan<byte> rawPublicKey, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (rawPublicKey.Length != Ed25519.PublicKeySize || signature.Length != Ed25519.SignatureSize)
            return false;
        if (!PublicKey.TryImport(Ed25519, rawPublicKey, KeyBlobFormat.RawPublicKey, out var key) || key is null)
            return false;
        return Ed25519.Verify(key, data, signature);
    }

    public void Dispose() => _key.Dispose();
}
