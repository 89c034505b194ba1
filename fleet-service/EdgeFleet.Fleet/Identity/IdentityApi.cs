using System.Security.Claims;
using System.Text.Json;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Devices;
using Microsoft.AspNetCore.Mvc;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Identity;

public sealed record EnrollmentTokenRequest
{
    public double? ExpiresInHours { get; set; }

    public int? Uses { get; set; }

    public string? Note { get; set; }

    public Dictionary<string, string> Tags { get; set; } = [];
}

/// <summary>The created token: shown once.</summary>
public sealed record EnrollmentTokenView(string Id, string Token, DateTimeOffset ExpiresAt, int Uses, IReadOnlyDictionary<string, string> Tags);

public sealed record ApiKeyRequest
{
    public required string Name { get; init; }

    public OperatorRole Role { get; set; } = OperatorRole.Viewer;
}

/// <summary>An API key as listed; <see cref="Key"/> only in the response that created it.</summary>
public sealed record ApiKeyView(string Id, string Name, OperatorRole Role, DateTimeOffset CreatedAt, string CreatedBy, DateTimeOffset? RevokedAt, string? Key = null)
{
    public static ApiKeyView Of(ApiKeyRecord k, string? key = null) => new(k.Id, k.Name, k.Role, k.CreatedAt, k.CreatedBy, k.RevokedAt, key);
}

/// <summary>
/// Enrollment (<c>POST /api/enroll</c>, authenticated by the one-time token in the body), enrollment tokens,
/// device revocation, API keys and the audit log.
/// </summary>
public static partial class IdentityApi
{
    public static IEndpointRouteBuilder MapIdentityApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/enrollment-tokens", CreateEnrollmentTokenAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        // Anonymous: the body a stranger may make the fleet read is a few kilobytes, not Kestrel's default 30 MB.
        app.MapPost("/api/enroll", EnrollAsync).AllowAnonymous().WithMetadata(new RequestSizeLimitAttribute(MaxEnrollBytes));
        app.MapPost("/api/devices/{id}/revoke", RevokeAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        app.MapGet("/api/api-keys", async (IFleetStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.ListApiKeysAsync(ct).ConfigureAwait(false)).Select(k => ApiKeyView.Of(k)).ToList()))
            .RequireAuthorization(ApiAuthentication.AdminPolicy);
        app.MapPost("/api/api-keys", CreateApiKeyAsync).RequireAuthorization(ApiAuthentication.AdminPolicy);
        app.MapDelete("/api/api-keys/{id}", RevokeApiKeyAsync).RequireAuthorization(ApiAuthentication.AdminPolicy);
        app.MapGet("/api/audit", async (string? target, int? limit, IFleetStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.GetAuditAsync(target, Math.Clamp(limit ?? 100, 1, 10_000), ct).ConfigureAwait(false)).ToList()))
            .RequireAuthorization(ApiAuthentication.ViewerPolicy);
        return app;
    }

    private static async Task<IResult> CreateEnrollmentTokenAsync(EnrollmentTokenRequest request, ClaimsPrincipal user, IFleetStore store,
        FleetOptions options, TimeProvider time, CancellationToken ct)
    {
        var hours = request.ExpiresInHours ?? 24;
        if (hours <= 0 || hours > options.Security.EnrollmentTokenMaxHours)
            return TypedResults.BadRequest(new ApiError("InvalidExpiry", $"expiresInHours must be in (0, {options.Security.EnrollmentTokenMaxHours}]"));
        var uses = request.Uses ?? 1;
        if (uses is < 1 or > 100_000)
            return TypedResults.BadRequest(new ApiError("InvalidUses", "uses must be in [1, 100000]"));
        if (ValidateTags(request.Tags) is { } tagProblem)
            return TypedResults.BadRequest(new ApiError("InvalidTags", tagProblem));
        var now = time.GetUtcNow();
        var token = Secrets.NewEnrollmentToken();
        var record = new EnrollmentTokenRecord
        {
            Hash = Secrets.Hash(token),
            CreatedBy = Actor(user),
            CreatedAt = now,
            ExpiresAt = now.AddHours(hours),
            UsesLeft = uses,
            Note = request.Note,
            Tags = request.Tags,
        };
        await store.CreateEnrollmentTokenAsync(record, ct).ConfigureAwait(false);
        await AuditAsync(store, user, "enrollment-token.create", record.Id, null,
            $$"""{"expiresAt":"{{record.ExpiresAt:O}}","uses":{{uses}}}""", time, ct).ConfigureAwait(false);
        return TypedResults.Ok(new EnrollmentTokenView(record.Id, token, record.ExpiresAt, uses, record.Tags));
    }

    private static async Task<IResult> EnrollAsync(HttpRequest http, IFleetStore store, FleetOptions options, TimeProvider time,
        ILoggerFactory logs, AttemptLimiter limiter, [FromServices] MosquittoDynamicSecurity? brokerAccounts, CancellationToken ct)
    {
        var log = logs.CreateLogger(typeof(IdentityApi));
        var remote = http.HttpContext.Connection.RemoteIpAddress?.ToString() ?? "?";
        if (limiter.IsThrottled(EnrollScope, remote, out var retryAfter))
        {
            http.HttpContext.Response.Headers.RetryAfter = Math.Ceiling(retryAfter.TotalSeconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Refuse(log, "?", EnrollErrors.Throttled,
                $"too many failed enrollments from {remote}; try again in {Math.Ceiling(retryAfter.TotalSeconds):0} s", StatusCodes.Status429TooManyRequests);
        }
        EnrollRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Body, IdentityJsonContext.Default.EnrollRequest, ct).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            return Refuse(log, "?", EnrollErrors.Malformed, "body is not an enrollment request: " + e.Message, StatusCodes.Status400BadRequest);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Refuse(log, "?", EnrollErrors.Malformed, $"the request is over {MaxEnrollBytes} bytes", StatusCodes.Status413PayloadTooLarge);
        }
        if (request is null)
            return Refuse(log, "?", EnrollErrors.Malformed, "body is not an enrollment request", StatusCodes.Status400BadRequest);
        if (DeviceId.Problem(request.DeviceId) is { } idProblem)
        {
            var error = DeviceId.IsValid(request.DeviceId) ? EnrollErrors.ReservedDeviceId : EnrollErrors.Malformed;
            return Refuse(log, request.DeviceId, error, idProblem, StatusCodes.Status400BadRequest);
        }
        if (options.Broker.Username is { } account && string.Equals(account, request.DeviceId, StringComparison.OrdinalIgnoreCase))
        {
            // An operator's broker account outside the reserved namespace (set up before it existed): still never a device's.
            return Refuse(log, request.DeviceId, EnrollErrors.ReservedDeviceId,
                $"deviceId '{request.DeviceId}' is the fleet's own broker account", StatusCodes.Status400BadRequest);
        }
        if (request.HardwareProfile is not null && ProfileName.Problem(request.HardwareProfile) is { } profileProblem)
            return Refuse(log, request.DeviceId, EnrollErrors.Malformed, profileProblem, StatusCodes.Status400BadRequest);
        if (request.AgentVersion is { Length: > 64 })
            return Refuse(log, request.DeviceId, EnrollErrors.Malformed, "agentVersion must be at most 64 characters", StatusCodes.Status400BadRequest);
        byte[] publicKey;
        try
        {
            publicKey = Convert.FromBase64String(request.PublicKey);
        }
        catch (FormatException)
        {
            publicKey = [];
        }
        if (publicKey.Length != 32)
            return Refuse(log, request.DeviceId, EnrollErrors.Malformed, "publicKey must be a base64 raw Ed25519 public key", StatusCodes.Status400BadRequest);
        var now = time.GetUtcNow();
        var tokenHash = Secrets.Hash(request.Token ?? "");
        var outcome = await store.EnrollAsync(tokenHash, new DeviceCredential
        {
            DeviceId = request.DeviceId,
            PublicKey = publicKey,
            EnrolledAt = now,
            EnrolledWith = tokenHash,
        }, request.HardwareProfile, now, ct).ConfigureAwait(false);
        if (outcome is EnrollOutcome.InvalidToken or EnrollOutcome.TokenExpired or EnrollOutcome.TokenUsed
            && limiter.CountFailure(EnrollScope, remote))
        {
            Log.Throttled(log, remote, options.Security.MaxFailedAttemptsPerMinute);
            await store.AppendAuditAsync(new AuditEntry
            {
                At = now,
                Actor = "remote:" + remote,
                Action = "enroll.throttled",
                Target = "remote:" + remote,
                After = $$"""{"failedAttempts":{{options.Security.MaxFailedAttemptsPerMinute}},"windowSeconds":60}""",
            }, ct).ConfigureAwait(false);
        }
        switch (outcome)
        {
            case EnrollOutcome.InvalidToken:
                return Refuse(log, request.DeviceId, EnrollErrors.InvalidToken, "the enrollment token is not known", StatusCodes.Status403Forbidden);
            case EnrollOutcome.TokenExpired:
                return Refuse(log, request.DeviceId, EnrollErrors.TokenExpired, "the enrollment token has expired", StatusCodes.Status403Forbidden);
            case EnrollOutcome.TokenUsed:
                return Refuse(log, request.DeviceId, EnrollErrors.TokenUsed, "the enrollment token has been used up", StatusCodes.Status403Forbidden);
            case EnrollOutcome.DeviceIdTaken:
                return Refuse(log, request.DeviceId, EnrollErrors.DeviceIdTaken, $"device id '{request.DeviceId}' is enrolled with another key", StatusCodes.Status409Conflict);
            case EnrollOutcome.DeviceRevoked:
                return Refuse(log, request.DeviceId, EnrollErrors.DeviceRevoked, $"device '{request.DeviceId}' was revoked; enroll under a new id", StatusCodes.Status403Forbidden);
        }
        string? brokerPassword = null;
        if (brokerAccounts is not null)
        {
            try
            {
                brokerPassword = await brokerAccounts.ProvisionDeviceAsync(request.DeviceId, ct).ConfigureAwait(false);
            }
            catch (NotADeviceAccountException e)
            {
                return Refuse(log, request.DeviceId, EnrollErrors.DeviceIdTaken, e.Message, StatusCodes.Status409Conflict);
            }
            catch (BrokerAccountException e)
            {
                // The registration stands; the device retries (same key, same token) and gets its account then.
                return Refuse(log, request.DeviceId, EnrollErrors.BrokerUnavailable, e.Message, StatusCodes.Status503ServiceUnavailable);
            }
        }
        var device = await store.GetDeviceAsync(request.DeviceId, ct).ConfigureAwait(false);
        await store.AppendAuditAsync(new AuditEntry
        {
            At = now,
            Actor = "device:" + request.DeviceId,
            Action = "device.enroll",
            Target = request.DeviceId,
            After = $$"""{"keyId":"{{SigningKey.KeyIdOf(publicKey)}}","token":"{{tokenHash[..12]}}"}""",
        }, ct).ConfigureAwait(false);
        Log.Enrolled(log, request.DeviceId, SigningKey.KeyIdOf(publicKey));
        var broker = options.Broker;
        var embeddedTls = broker.Mode == BrokerMode.Embedded && options.Tls.Enabled;
        return TypedResults.Ok(new EnrollResponse
        {
            DeviceId = request.DeviceId,
            BrokerHost = broker.PublicHost ?? http.Host.Host,
            BrokerPort = broker.PublicPort ?? (embeddedTls ? broker.TlsPort : broker.Port),
            BrokerTls = broker.PublicTls ?? embeddedTls,
            BrokerAuth = brokerPassword is null ? "token" : "password",
            BrokerPassword = brokerPassword,
            Tags = new Dictionary<string, string>(device?.Tags ?? new Dictionary<string, string>()),
        });
    }

    private static async Task<IResult> RevokeAsync(string id, ClaimsPrincipal user, IFleetStore store, DeviceRevocation revocation,
        TimeProvider time, CancellationToken ct)
    {
        if (!DeviceId.IsValid(id))
            return TypedResults.BadRequest(new ApiError("InvalidDeviceId", "device ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
        var (found, brokerError) = await RevokeDeviceAsync(id, user, store, revocation, time, ct).ConfigureAwait(false);
        if (!found)
            return TypedResults.NotFound(new ApiError("UnknownDevice", $"device '{id}' is not enrolled"));
        return brokerError is null ? TypedResults.NoContent()
            : TypedResults.Json(new ApiError("BrokerUnavailable", brokerError), FleetApiJsonContext.Default.ApiError, statusCode: StatusCodes.Status502BadGateway);
    }

    /// <summary>
    /// Revokes a device (the API and the console both come here), audited: false when it is not enrolled; a broker
    /// that could not be told is said in the second value (the registry already refuses the device).
    /// </summary>
    public static async Task<(bool Found, string? BrokerError)> RevokeDeviceAsync(string id, ClaimsPrincipal user, IFleetStore store, DeviceRevocation revocation,
        TimeProvider time, CancellationToken ct)
    {
        if (!await store.RevokeDeviceAsync(id, Actor(user), time.GetUtcNow(), ct).ConfigureAwait(false))
            return (false, null);
        await AuditAsync(store, user, "device.revoke", id, """{"revoked":false}""", """{"revoked":true}""", time, ct).ConfigureAwait(false);
        try
        {
            await revocation.RevokedAsync(id, ct).ConfigureAwait(false);
            return (true, null);
        }
        catch (NotADeviceAccountException)
        {
            return (true, null); // the broker account of that name is not the device's: nothing of the device's to disable
        }
        catch (BrokerAccountException e)
        {
            return (true, $"'{id}' is revoked in the registry, but the broker was not told ({e.Message}); it will be when the fleet reconnects, or repeat the request");
        }
    }

    private static async Task<IResult> CreateApiKeyAsync(ApiKeyRequest request, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        var (record, key, error) = await NewApiKeyAsync(request.Name, request.Role, user, store, time, ct).ConfigureAwait(false);
        return record is null ? TypedResults.BadRequest(error) : TypedResults.Ok(ApiKeyView.Of(record, key));
    }

    /// <summary>Creates an API key (the API and the console's users page both come here), audited; the key itself is returned once.</summary>
    public static async Task<(ApiKeyRecord? Record, string? Key, ApiError? Error)> NewApiKeyAsync(string? name, OperatorRole role, ClaimsPrincipal user, IFleetStore store,
        TimeProvider time, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 100)
            return (null, null, new ApiError("InvalidName", "name must be 1-100 characters"));
        if (OperatorRoles.Problem(role) is { } badRole)
            return (null, null, new ApiError("InvalidRole", badRole));
        var (id, key, hash) = Secrets.NewApiKey();
        var record = new ApiKeyRecord
        {
            Id = id,
            Name = name,
            Role = role,
            SecretHash = hash,
            CreatedAt = time.GetUtcNow(),
            CreatedBy = Actor(user),
        };
        await store.CreateApiKeyAsync(record, ct).ConfigureAwait(false);
        await AuditAsync(store, user, "api-key.create", id, null, $$"""{"name":{{JsonSerializer.Serialize(name, FleetApiJsonContext.Default.String)}},"role":"{{role}}"}""", time, ct).ConfigureAwait(false);
        return (record, key, null);
    }

    private static async Task<IResult> RevokeApiKeyAsync(string id, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct) =>
        await RevokeKeyAsync(id, user, store, time, ct).ConfigureAwait(false)
            ? TypedResults.NoContent()
            : TypedResults.NotFound(new ApiError("UnknownApiKey", $"no API key '{LogText.Sanitize(id)}'"));

    /// <summary>Revokes an API key, audited; false when there is no such key.</summary>
    public static async Task<bool> RevokeKeyAsync(string id, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (!await store.RevokeApiKeyAsync(id, time.GetUtcNow(), ct).ConfigureAwait(false))
            return false;
        await AuditAsync(store, user, "api-key.revoke", id, """{"revoked":false}""", """{"revoked":true}""", time, ct).ConfigureAwait(false);
        return true;
    }

    /// <summary>The authenticated caller as the audit log names it: <c>key:{id}</c> or <c>device:{id}</c>.</summary>
    public static string Actor(ClaimsPrincipal user) => user.Identity?.Name ?? "anonymous";

    public static Task AuditAsync(IFleetStore store, ClaimsPrincipal user, string action, string target, string? before, string? after,
        TimeProvider time, CancellationToken ct) =>
        store.AppendAuditAsync(new AuditEntry { At = time.GetUtcNow(), Actor = Actor(user), Action = action, Target = target, Before = before, After = after }, ct);

    public static string? ValidateTags(IReadOnlyDictionary<string, string> tags)
    {
        if (tags.Count > TagPatch.MaxTags)
            return $"at most {TagPatch.MaxTags} tags";
        foreach (var (k, v) in tags)
        {
            if (!TagSelector.IsKey(k))
                return $"tag name '{LogText.Sanitize(k)}' must be 1-64 of letters, digits, '-', '_', '.'";
            if (v.Length > 256)
                return $"tag '{k}' value is longer than 256 characters";
        }
        return null;
    }

    private const string EnrollScope = "enroll";

    /// <summary>An enrollment request is a token, an id, a key, a profile and a version: far under this.</summary>
    public const int MaxEnrollBytes = 16 * 1024;

    private static IResult Refuse(ILogger log, string? deviceId, string error, string reason, int status)
    {
        Log.EnrollRefused(log, LogText.Sanitize(deviceId), error, reason);
        return TypedResults.Json(new ApiError(error, reason), FleetApiJsonContext.Default.ApiError, statusCode: status);
    }

    private static partial class Log
    {
        [LoggerMessage(6201, LogLevel.Information, "Enrolled device {DeviceId} with key {KeyId}")]
        public static partial void Enrolled(ILogger logger, string deviceId, string keyId);

        [LoggerMessage(6202, LogLevel.Warning, "Refused enrollment of {DeviceId}: {Error}: {Reason}")]
        public static partial void EnrollRefused(ILogger logger, string deviceId, string error, string reason);

        [LoggerMessage(6203, LogLevel.Warning, "Enrollment from {Remote} throttled after {Failures} failed attempts in a minute")]
        public static partial void Throttled(ILogger logger, string remote, int failures);
    }
}
