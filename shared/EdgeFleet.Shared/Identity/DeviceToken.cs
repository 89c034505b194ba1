using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Identity;

/// <summary>
/// The short-lived credential a device presents to the broker (MQTT password, user name = device id) and to
/// the fleet's HTTP API (<c>Authorization: Bearer</c>): <c>eft1.{claims}.{signature}</c>, where claims is the
/// base64url JSON <c>{"sub","iat","exp"}</c> and signature the base64url Ed25519 signature by the device key
/// over the ASCII text <c>eft1.{claims}</c>. The fleet holds only the public key, registered at enrollment.
/// </summary>
public static class DeviceToken
{
    public const string Prefix = "eft1.";

    /// <summary>Tokens longer than this are refused before any parsing.</summary>
    public const int MaxLength = 512;

    public static string Create(SigningKey deviceKey, string deviceId, DateTimeOffset now, TimeSpan lifetime)
    {
        var claims = new DeviceTokenClaims
        {
            Sub = deviceId,
            Iat = now.ToUnixTimeSeconds(),
            Exp = now.Add(lifetime).ToUnixTimeSeconds(),
        };
        var body = Prefix + Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(claims, IdentityJsonContext.Default.DeviceTokenClaims));
        return body + "." + Base64Url.EncodeToString(deviceKey.Sign(Encoding.ASCII.GetBytes(body)));
    }

    /// <summary>Reads the claims without checking the signature (to find which key to check it with).</summary>
    public static DeviceTokenResult Read(string? token, out DeviceTokenClaims? claims, out string signedPart, out byte[] signature)
    {
        claims = null;
        signedPart = "";
        signature = [];
        if (string.IsNullOrEmpty(token) || token.Length > MaxLength || !token.StartsWith(Prefix, StringComparison.Ordinal))
            return DeviceTokenResult.Fail(DeviceTokenError.Malformed, "not an eft1 device token");
        var dot = token.LastIndexOf('.');
        if (dot <= Prefix.Length)
            return DeviceTokenResult.Fail(DeviceTokenError.Malformed, "device token has no signature");
        signedPart = token[..dot];
        try
        {
            signature = Base64Url.DecodeFromChars(token.AsSpan(dot + 1));
            var json = Base64Url.DecodeFromChars(token.AsSpan(Prefix.Length, dot - Prefix.Length));
            claims = JsonSerializer.Deserialize(json, IdentityJsonContext.Default.DeviceTokenClaims);
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return DeviceTokenResult.Fail(DeviceTokenError.Malformed, "device token is not valid base64url JSON");
        }
        if (claims is null || !DeviceId.IsValid(claims.Sub))
            return DeviceTokenResult.Fail(DeviceTokenError.Malformed, "device token names no valid device");
        return DeviceTokenResult.Ok;
    }

    /// <summary>
    /// Checks a token for <paramref name="deviceId"/> against its registered public key: signature, subject,
    /// expiry, and a lifetime no longer than <paramref name="maxLifetime"/> (a device cannot mint itself a
    /// credential that outlives a revocation check for long). <paramref name="skew"/> allows for device clocks.
    /// </summary>
    public static DeviceTokenResult Verify(string? token, string deviceId, ReadOnlySpan<byte> publicKey, DateTimeOffset now,
        TimeSpan maxLifetime, TimeSpan skew)
    {
        var read = Read(token, out var claims, out var signed, out var signature);
        if (!read.Valid)
            return read;
        if (!string.Equals(claims!.Sub, deviceId, StringComparison.Ordinal))
            return DeviceTokenResult.Fail(DeviceTokenError.WrongDevice, $"token was issued for another device ({claims.Sub})");
        if (!SigningKey.Verify(publicKey, Encoding.ASCII.GetBytes(signed), signature))
            return DeviceTokenResult.Fail(DeviceTokenError.BadSignature, "token signature does not verify with the device's registered key");
        var nowSeconds = now.ToUnixTimeSeconds();
        if (claims.Exp <= claims.Iat || claims.Exp - claims.Iat > (long)maxLifetime.TotalSeconds)
            return DeviceTokenResult.Fail(DeviceTokenError.LifetimeTooLong, $"token lifetime exceeds {maxLifetime.TotalMinutes:0} minutes");
        if (claims.Iat > nowSeconds + (long)skew.TotalSeconds)
            return DeviceTokenResult.Fail(DeviceTokenError.NotYetValid, "token issued in the future (check the device clock)");
        if (claims.Exp + (long)skew.TotalSeconds <= nowSeconds)
            return DeviceTokenResult.Fail(DeviceTokenError.Expired, $"token expired at {DateTimeOffset.FromUnixTimeSeconds(claims.Exp):yyyy-MM-ddTHH:mm:ssZ}");
        return DeviceTokenResult.Ok;
    }
}

public sealed record DeviceTokenClaims
{
    public required string Sub { get; init; }

    public required long Iat { get; init; }

    public required long Exp { get; init; }
}

public enum DeviceTokenError
{
    None,
    Malformed,
    WrongDevice,
    BadSignature,
    LifetimeTooLong,
    NotYetValid,
    Expired,
}

public readonly record struct DeviceTokenResult(DeviceTokenError Error, string Reason)
{
    public static DeviceTokenResult Ok => new(DeviceTokenError.None, "");

    public bool Valid => Error == DeviceTokenError.None;

    public static DeviceTokenResult Fail(DeviceTokenError error, string reason) => new(error, reason);
}
