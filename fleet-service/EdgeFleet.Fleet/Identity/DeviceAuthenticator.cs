using System.Collections.Concurrent;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// Checks a device's credentials: the MQTT CONNECT of the embedded broker (client id = user name = device id,
/// password = a <see cref="DeviceToken"/>) and device bearer tokens on the HTTP API. Registered keys are
/// cached briefly; a revocation on this instance clears the entry at once, one on another instance within
/// <see cref="CacheFor"/>.
/// </summary>
public sealed class DeviceAuthenticator
{
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(15);
    private readonly IFleetStore _store;
    private readonly SecurityOptions _options;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, (DeviceCredential? Credential, DateTimeOffset Until)> _cache = new(StringComparer.Ordinal);

    public DeviceAuthenticator(IFleetStore store, SecurityOptions options, TimeProvider time, DeviceRevocation revocation)
    {
        _store = store;
        _options = options;
        _time = time;
        revocation.Subscribe((id, _) =>
        {
            _cache.TryRemove(id, out var _);
            return Task.CompletedTask;
        });
    }

    public async Task<DeviceAuthResult> AuthenticateAsync(string? deviceId, string? token, CancellationToken cancellationToken)
    {
        if (CheckId(deviceId) is { } refused)
            return refused;
        if (string.IsNullOrEmpty(token))
            return DeviceAuthResult.Fail(DeviceAuthError.NoCredentials, "no device token (is the device enrolled?)");
        var now = _time.GetUtcNow();
        var (credential, status) = await EnrolledAsync(deviceId!, now, cancellationToken).ConfigureAwait(false);
        if (!status.Valid)
            return status;
        var check = DeviceToken.Verify(token, deviceId!, credential!.PublicKey, now,
            TimeSpan.FromMinutes(_options.DeviceTokenMaxLifetimeMinutes), TimeSpan.FromSeconds(_options.ClockSkewSeconds));
        return check.Valid
            ? DeviceAuthResult.Ok
            : DeviceAuthResult.Fail(DeviceAuthError.BadToken, check.Reason);
    }

    /// <summary>
    /// For a device whose identity something else proved (a client certificate): is it enrolled and not revoked?
    /// </summary>
    public async Task<DeviceAuthResult> CheckEnrolledAsync(string? deviceId, CancellationToken cancellationToken)
    {
        if (CheckId(deviceId) is { } refused)
            return refused;
        return (await EnrolledAsync(deviceId!, _time.GetUtcNow(), cancellationToken).ConfigureAwait(false)).Status;
    }

    /// <summary>
    /// A device id in the fleet's namespace is refused even when a record exists (enrolled before the namespace was
    /// reserved): such a device could take over the fleet's own session or account.
    /// </summary>
    private static DeviceAuthResult? CheckId(string? deviceId) =>
        !DeviceId.IsValid(deviceId) ? DeviceAuthResult.Fail(DeviceAuthError.InvalidDeviceId, "client id is not a valid device id")
        : DeviceId.IsReserved(deviceId) ? DeviceAuthResult.Fail(DeviceAuthError.InvalidDeviceId, $"client id is in the fleet's reserved namespace '{DeviceId.ReservedPrefix}*'")
        : null;

    private async Task<(DeviceCredential? Credential, DeviceAuthResult Status)> EnrolledAsync(string deviceId, DateTimeOffset now, CancellationToken ct)
    {
        var credential = await CredentialAsync(deviceId, now, ct).ConfigureAwait(false);
        if (credential is null)
            return (null, DeviceAuthResult.Fail(DeviceAuthError.UnknownDevice, "device is not enrolled"));
        if (credential.Revoked)
            return (credential, DeviceAuthResult.Fail(DeviceAuthError.Revoked, $"device was revoked at {credential.RevokedAt:yyyy-MM-ddTHH:mm:ssZ}"));
        return (credential, DeviceAuthResult.Ok);
    }

    /// <summary>A bearer device token on the HTTP API: the device id comes from the token's subject.</summary>
    public Task<DeviceAuthResult> AuthenticateBearerAsync(string token, out string? deviceId, CancellationToken cancellationToken)
    {
        deviceId = DeviceToken.Read(token, out var claims, out _, out _).Valid ? claims!.Sub : null;
        return deviceId is null
            ? Task.FromResult(DeviceAuthResult.Fail(DeviceAuthError.BadToken, "malformed device token"))
            : AuthenticateAsync(deviceId, token, cancellationToken);
    }

    private async Task<DeviceCredential?> CredentialAsync(string deviceId, DateTimeOffset now, CancellationToken ct)
    {
        if (_cache.TryGetValue(deviceId, out var cached) && cached.Until > now)
            return cached.Credential;
        var credential = await _store.GetCredentialAsync(deviceId, ct).ConfigureAwait(false);
        // Unknown devices are not cached: a device that enrolls a moment later must get in at once.
        if (credential is not null)
            _cache[deviceId] = (credential, now + CacheFor);
        return credential;
    }
}

public enum DeviceAuthError
{
    None,
    InvalidDeviceId,
    NoCredentials,
    UnknownDevice,
    Revoked,
    BadToken,
}

public readonly record struct DeviceAuthResult(DeviceAuthError Error, string Reason)
{
    public static DeviceAuthResult Ok => new(DeviceAuthError.None, "");

    public bool Valid => Error == DeviceAuthError.None;

    public static DeviceAuthResult Fail(DeviceAuthError error, string reason) => new(error, reason);
}
