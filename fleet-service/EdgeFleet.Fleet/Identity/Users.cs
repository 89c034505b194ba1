using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// A person who logs in to the web console. Only a PBKDF2 hash of the password is stored. Repeated failed
/// logins lock the account for a while; <see cref="Stamp"/> changes with the password, role or state, which
/// ends every session issued before.
/// </summary>
public sealed record UserRecord
{
    public required string Username { get; init; }

    public required OperatorRole Role { get; init; }

    public required string PasswordHash { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }

    public int FailedLogins { get; init; }

    public DateTimeOffset? LockedUntil { get; init; }

    public DateTimeOffset? DisabledAt { get; init; }

    public DateTimeOffset? LastLoginAt { get; init; }

    /// <summary>Random, renewed when the password, role or state changes: a session carries it and ends when it differs.</summary>
    public string Stamp { get; init; } = "";
}

/// <summary>Usernames, password rules, and PBKDF2-HMAC-SHA256 password hashes (<c>pbkdf2-sha256$iterations$salt$hash</c>).</summary>
public static class Passwords
{
    /// <summary>OWASP's 2023 figure for PBKDF2-HMAC-SHA256; stored with each hash, so it can rise later.</summary>
    public const int Iterations = 600_000;
    public const int MinLength = 12;
    public const int MaxLength = 256;

    /// <summary>A hash of a password nobody has, checked for unknown users so they take as long as known ones.</summary>
    public static readonly string Decoy = Hash("decoy password that is never used");

    public static string? CheckUsername(string? username) =>
        string.IsNullOrEmpty(username) || username.Length > 64 || !username.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_')
            ? "usernames are 1-64 of a-z, 0-9, '.', '-', '_'"
            : null;

    public static string? CheckPassword(string? password) =>
        password is null || password.Length < MinLength ? $"passwords need at least {MinLength} characters"
        : password.Length > MaxLength ? $"passwords have at most {MaxLength} characters"
        : null;

    public static string Hash(string password, int iterations = Iterations)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, 32);
        return $"pbkdf2-sha256${iterations.ToString(CultureInfo.InvariantCulture)}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    /// <summary>Whether <paramref name="password"/> matches <paramref name="stored"/>, in time independent of where they differ.</summary>
    public static bool Verify(string password, string stored)
    {
        var parts = stored.Split('$');
        if (parts is not ["pbkdf2-sha256", var iterationsText, var saltText, var hashText]
            || !int.TryParse(iterationsText, NumberStyles.None, CultureInfo.InvariantCulture, out var iterations) || iterations is < 1 or > 10_000_000)
            return false;
        byte[] salt, expected;
        try
        {
            salt = Convert.FromBase64String(saltText);
            expected = Convert.FromBase64String(hashText);
        }
        catch (FormatException)
        {
            return false;
        }
        var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    public static string NewStamp() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
}
