using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// Random bearer secrets and their stored form. The secrets carry 256 random bits, so a plain SHA-256 is
/// enough to store them (a slow password hash protects guessable secrets, which these are not).
/// </summary>
public static class Secrets
{
    public const string EnrollmentPrefix = "efe_";
    public const string ApiKeyPrefix = "efk_";

    public static string NewEnrollmentToken() => EnrollmentPrefix + Random(32);

    /// <summary>A new API key: its id (public, in logs and the audit log) and the full key to hand out once.</summary>
    public static (string Id, string Key, string SecretHash) NewApiKey()
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        var secret = Random(32);
        return (id, $"{ApiKeyPrefix}{id}_{secret}", Hash(secret));
    }

    /// <summary>Splits <c>efk_{id}_{secret}</c>; false for anything else.</summary>
    public static bool TryParseApiKey(string key, out string id, out string secret)
    {
        id = secret = "";
        if (!key.StartsWith(ApiKeyPrefix, StringComparison.Ordinal) || key.Length > 256)
            return false;
        var rest = key.AsSpan(ApiKeyPrefix.Length);
        var sep = rest.IndexOf('_');
        if (sep != 12)
            return false;
        id = rest[..sep].ToString();
        secret = rest[(sep + 1)..].ToString();
        return secret.Length > 0;
    }

    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    public static bool HashEquals(string secret, string expectedHash) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Hash(secret)), Encoding.ASCII.GetBytes(expectedHash));

    private static string Random(int bytes) => Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(bytes));
}
