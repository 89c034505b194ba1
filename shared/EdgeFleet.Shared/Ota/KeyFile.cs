using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeFleet.Shared.IO;
using NSec.Cryptography;

namespace EdgeFleet.Shared.Ota;

/// <summary>
/// A private key on disk: JSON, created with mode 0600, and optionally encrypted with a passphrase
/// (Argon2id → XChaCha20-Poly1305, the key id as associated data so a file cannot be relabelled).
/// </summary>
public static class KeyFile
{
    private const int SaltBytes = 16;

    /// <summary>
    /// Writes a new key file; an existing one is never overwritten (<see cref="IOException"/>). Through
    /// <see cref="AtomicFile"/>: a crash or power cut leaves no half key at the path, which would block every
    /// later enrollment, and the name is durable when this returns.
    /// </summary>
    public static void Write(string path, SigningKey key, string? passphrase) => Write(FileSystem.Os, path, key, passphrase);

    public static void Write(FileSystem files, string path, SigningKey key, string? passphrase)
    {
        var raw = key.ExportPrivateKey();
        byte[]? json = null;
        try
        {
            var file = new KeyFileContent { KeyId = key.KeyId, PublicKey = Convert.ToBase64String(key.PublicKeyBytes) };
            if (passphrase is null)
                file.PrivateKey = Convert.ToBase64String(raw);
            else
                file.Encrypted = Encrypt(raw, passphrase, key.KeyId);
            json = JsonSerializer.SerializeToUtf8Bytes(file, KeyFileJsonContext.Default.KeyFileContent);
            AtomicFile.Write(files, path, json, privateFile: true, replace: false);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(raw);
            if (json is not null)
                CryptographicOperations.ZeroMemory(json);
        }
    }

    /// <summary>Reads a key file; throws <see cref="InvalidDataException"/> with a one-line reason.</summary>
    public static SigningKey Read(string path, string? passphrase)
    {
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
            throw new InvalidDataException($"{path} is readable by group or others; chmod 600 it");
        return Parse(File.ReadAllBytes(path), path, passphrase);
    }

    /// <summary>A key file's content; <paramref name="path"/> names it in errors (<see cref="InvalidDataException"/>).</summary>
    public static SigningKey Parse(ReadOnlySpan<byte> content, string path, string? passphrase)
    {
        KeyFileContent file;
        try
        {
            file = JsonSerializer.Deserialize(content, KeyFileJsonContext.Default.KeyFileContent)
                ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a key file: {e.Message}");
        }
        byte[] raw;
        if (file.Encrypted is { } encrypted)
        {
            if (passphrase is null)
                throw new InvalidDataException($"{path} is encrypted; give its passphrase");
            raw = Decrypt(encrypted, passphrase, file.KeyId)
                ?? throw new InvalidDataException($"wrong passphrase for {path}");
        }
        else
        {
            raw = Convert.FromBase64String(file.PrivateKey ?? throw new InvalidDataException($"{path} holds no private key"));
        }
        try
        {
            var key = SigningKey.FromPrivateKey(raw);
            if (key.KeyId != file.KeyId)
            {
                key.Dispose();
                throw new InvalidDataException($"{path}: the private key does not match key id {file.KeyId}");
            }
            return key;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(raw);
        }
    }

    private static EncryptedKey Encrypt(byte[] raw, string passphrase, string keyId)
    {
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var parameters = new Argon2Parameters { DegreeOfParallelism = 1, MemorySize = 64 * 1024, NumberOfPasses = 3 };
        var aead = AeadAlgorithm.XChaCha20Poly1305;
        using var key = Derive(passphrase, salt, parameters, aead);
        var nonce = RandomNumberGenerator.GetBytes(aead.NonceSize);
        return new EncryptedKey
        {
            Salt = Convert.ToBase64String(salt),
            MemoryKiB = parameters.MemorySize,
            Passes = parameters.NumberOfPasses,
            Nonce = Convert.ToBase64String(nonce),
            Ciphertext = Convert.ToBase64String(aead.Encrypt(key, nonce, Encoding.UTF8.GetBytes(keyId), raw)),
        };
    }

    private static byte[]? Decrypt(EncryptedKey encrypted, string passphrase, string keyId)
    {
        var parameters = new Argon2Parameters { DegreeOfParallelism = 1, MemorySize = encrypted.MemoryKiB, NumberOfPasses = encrypted.Passes };
        var aead = AeadAlgorithm.XChaCha20Poly1305;
        using var key = Derive(passphrase, Convert.FromBase64String(encrypted.Salt), parameters, aead);
        return aead.Decrypt(key, Convert.FromBase64String(encrypted.Nonce), Encoding.UTF8.GetBytes(keyId),
            Convert.FromBase64String(encrypted.Ciphertext));
    }

    private static Key Derive(string passphrase, byte[] salt, Argon2Parameters parameters, AeadAlgorithm aead)
    {
        var kdf = PasswordBasedKeyDerivationAlgorithm.Argon2id(parameters);
        return kdf.DeriveKey(passphrase, salt, aead);
    }
}

public sealed record KeyFileContent
{
    public required string KeyId { get; init; }

    public required string PublicKey { get; init; }

    public string? PrivateKey { get; set; }

    public EncryptedKey? Encrypted { get; set; }
}

public sealed record EncryptedKey
{
    public string Kdf { get; set; } = "argon2id";

    public required string Salt { get; init; }

    public required long MemoryKiB { get; init; }

    public required long Passes { get; init; }

    public string Cipher { get; set; } = "xchacha20poly1305";

    public required string Nonce { get; init; }

    public required string Ciphertext { get; init; }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(KeyFileContent))]
internal sealed partial class KeyFileJsonContext : JsonSerializerContext;
