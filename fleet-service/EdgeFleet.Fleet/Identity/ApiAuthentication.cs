using System.Security.Claims;
using System.Text.Encodings.Web;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// Bearer authentication for the HTTP API: an operator's API key (<c>efk_…</c>, role from the key) or a
/// device token (<c>eft1.…</c>, role <c>device</c>, which may only download artifacts). Failed attempts are
/// logged with the key id or device id, never the secret.
/// </summary>
public sealed partial class ApiAuthentication(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    IFleetStore store, DeviceAuthenticator devices) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "EdgeFleet";
    public const string DeviceRole = "device";
    public const string ViewerPolicy = "viewer";
    public const string OperatorPolicy = "operator";
    public const string AdminPolicy = "admin";
    public const string ArtifactReaderPolicy = "artifact-reader";

    /// <summary>A retraining executor holding its job's token: it may read that job's inputs and report on it, nothing else.</summary>
    public const string RetrainingJobRole = "retraining-job";
    public const string RetrainingJobPolicy = "retraining-job";

    /// <summary>A job's own executor or any operator role: the job's inputs and base model.</summary>
    public const string RetrainingReaderPolicy = "retraining-reader";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(header))
            return AuthenticateResult.NoResult();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return Fail("not a bearer credential", "(unknown)");
        var credential = header["Bearer ".Length..].Trim();
        if (Secrets.TryParseApiKey(credential, out var id, out var secret))
        {
            var key = await store.GetApiKeyAsync(id, Context.RequestAborted).ConfigureAwait(false);
            if (key is null || !Secrets.HashEquals(secret, key.SecretHash))
                return Fail("unknown API key or wrong secret", "key:" + id);
            if (key.RevokedAt is not null)
                return Fail("API key was revoked", "key:" + id);
            return Success(new Claim(ClaimTypes.Name, "key:" + key.Id), new Claim("key-name", key.Name), new Claim(ClaimTypes.Role, key.Role.ToString()));
        }
        if (credential.StartsWith(Shared.Identity.DeviceToken.Prefix, StringComparison.Ordinal))
        {
            var result = await devices.AuthenticateBearerAsync(credential, out var deviceId, Context.RequestAborted).ConfigureAwait(false);
            return result.Valid
                ? Success(new Claim(ClaimTypes.Name, "device:" + deviceId), new Claim(ClaimTypes.Role, DeviceRole))
                : Fail(result.Reason, "device:" + (deviceId ?? "?"));
        }
        if (Retraining.JobTokens.TryParse(credential, out var jobId, out var jobSecret))
        {
            var job = await store.GetRetrainingJobAsync(jobId, Context.RequestAborted).ConfigureAwait(false);
            if (job is null || job.TokenHash.Length == 0 || !Secrets.HashEquals(jobSecret, job.TokenHash))
                return Fail("unknown retraining job or wrong token", "job:" + jobId);
            if (!job.Open)
                return Fail($"the retraining job is {job.State}", "job:" + jobId);
            return Success(new Claim(ClaimTypes.Name, "job:" + jobId), new Claim(ClaimTypes.Role, RetrainingJobRole));
        }
        return Fail("neither an API key, a device token nor a retraining job token", "(unknown)");
    }

    private static AuthenticateResult Success(params Claim[] claims) =>
        AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName)), SchemeName));

    private AuthenticateResult Fail(string reason, string who)
    {
        Log.Refused(Logger, LogText.Sanitize(who), Request.Path, reason);
        return AuthenticateResult.Fail(reason);
    }

    /// <summary>Registers the scheme and the role policies: each role includes the ones below it.</summary>
    public static void AddTo(IServiceCollection services)
    {
        services.AddAuthentication(SchemeName).AddScheme<AuthenticationSchemeOptions, ApiAuthentication>(SchemeName, null);
        services.AddAuthorizationBuilder()
            .AddPolicy(ViewerPolicy, p => p.RequireRole(nameof(OperatorRole.Viewer), nameof(OperatorRole.Operator), nameof(OperatorRole.Admin)))
            .AddPolicy(OperatorPolicy, p => p.RequireRole(nameof(OperatorRole.Operator), nameof(OperatorRole.Admin)))
            .AddPolicy(AdminPolicy, p => p.RequireRole(nameof(OperatorRole.Admin)))
            .AddPolicy(ArtifactReaderPolicy, p => p.RequireRole(DeviceRole, nameof(OperatorRole.Viewer), nameof(OperatorRole.Operator), nameof(OperatorRole.Admin)))
            .AddPolicy(RetrainingJobPolicy, p => p.RequireRole(RetrainingJobRole))
            .AddPolicy(RetrainingReaderPolicy, p => p.RequireRole(RetrainingJobRole, nameof(OperatorRole.Viewer), nameof(OperatorRole.Operator), nameof(OperatorRole.Admin)));
    }

    private static partial class Log
    {
        [LoggerMessage(6001, LogLevel.Warning, "Refused API credential of {Who} for {Path}: {Reason}")]
        public static partial void Refused(ILogger logger, string who, string path, string reason);
    }
}
