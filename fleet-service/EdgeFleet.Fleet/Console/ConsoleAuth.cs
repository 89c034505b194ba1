using System.Globalization;
using System.Security.Claims;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

namespace EdgeFleet.Fleet.Console;

/// <summary>
/// Logins to the web console: a cookie session for a <see cref="UserRecord"/> whose password was checked
/// (PBKDF2), with lockout after repeated failures. The session cookie is HttpOnly, SameSite=Strict, and
/// Secure whenever the fleet serves TLS; it carries the user's stamp, so a changed password or role, or a
/// disabled user, ends it on the next request. The HTTP API does not accept the cookie (bearer keys only), so
/// browser sessions cannot be ridden into the API; console forms carry antiforgery tokens.
/// </summary>
public sealed partial class ConsoleAuth(IFleetStore store, TimeProvider time, AttemptLimiter limiter, ILogger<ConsoleAuth> log)
{
    public const string Scheme = "Console";
    public const string ViewerPolicy = "console-viewer";
    public const string OperatorPolicy = "console-operator";
    public const string AdminPolicy = "console-admin";
    public const int MaxFailures = 5;
    public static readonly TimeSpan Lockout = TimeSpan.FromMinutes(15);
    private const string StampClaim = "stamp";

    public static void AddTo(IServiceCollection services, bool tls)
    {
        services.AddSingleton<ConsoleAuth>();
        services.AddSingleton<OverviewFeed>();
        services.AddAuthentication().AddCookie(Scheme, o =>
        {
            o.Cookie.Name = "edgefleet-console";
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.Cookie.SecurePolicy = tls ? CookieSecurePolicy.Always : CookieSecurePolicy.SameAsRequest;
            o.LoginPath = "/console/login";
            o.LogoutPath = "/console/logout";
            o.AccessDeniedPath = "/console/denied";
            o.ExpireTimeSpan = TimeSpan.FromHours(8);
            o.SlidingExpiration = true;
            o.Events.OnValidatePrincipal = context => context.HttpContext.RequestServices.GetRequiredService<ConsoleAuth>().ValidateAsync(context);
        });
        services.AddAuthorizationBuilder()
            .AddPolicy(ViewerPolicy, p => p.AddAuthenticationSchemes(Scheme).RequireRole(nameof(OperatorRole.Viewer), nameof(OperatorRole.Operator), nameof(OperatorRole.Admin)))
            .AddPolicy(OperatorPolicy, p => p.AddAuthenticationSchemes(Scheme).RequireRole(nameof(OperatorRole.Operator), nameof(OperatorRole.Admin)))
            .AddPolicy(AdminPolicy, p => p.AddAuthenticationSchemes(Scheme).RequireRole(nameof(OperatorRole.Admin)));
    }

    /// <summary>The outcome of a login: the user, or why not (the same words for a wrong password and an unknown user).</summary>
    public sealed record LoginResult(UserRecord? User, string? Refused);

    public const string Refusal = "wrong username or password, or the account is locked after repeated failures";

    /// <summary>
    /// Checks a username and password. Unknown users cost the same hash as known ones; a wrong password counts a
    /// failure, and the fifth in a row locks the account for <see cref="Lockout"/> (a correct password does not
    /// open a locked account). Every attempt is in the audit log.
    /// </summary>
    public async Task<LoginResult> LoginAsync(string username, string password, string remote, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        // Many users' passwords guessed from one address (a spray never locks any one account): refused, unchecked.
        if (limiter.IsThrottled(LoginScope, remote, out _))
        {
            await AuditAsync("login.throttled", username.Length <= 64 ? username : username[..64], "too many failed logins from this address", remote, ct).ConfigureAwait(false);
            return new LoginResult(null, Throttled);
        }
        var result = await CheckAsync(username, password, remote, now, ct).ConfigureAwait(false);
        if (result.User is null && limiter.CountFailure(LoginScope, remote))
            Log.Throttled(log, remote);
        return result;
    }

    private const string LoginScope = "login";

    public const string Throttled = "too many failed logins from this address; wait a minute";

    private async Task<LoginResult> CheckAsync(string username, string password, string remote, DateTimeOffset now, CancellationToken ct)
    {
        var user = Passwords.CheckUsername(username) is null && password.Length <= Passwords.MaxLength ? await store.GetUserAsync(username, ct).ConfigureAwait(false) : null;
        var matches = Passwords.Verify(password.Length <= Passwords.MaxLength ? password : "", user?.PasswordHash ?? Passwords.Decoy) && user is not null;
        if (user is null)
        {
            await AuditAsync("login.failed", username.Length <= 64 ? username : username[..64], "unknown user", remote, ct).ConfigureAwait(false);
            return new LoginResult(null, Refusal);
        }
        if (user.DisabledAt is not null)
        {
            await AuditAsync("login.failed", user.Username, "disabled", remote, ct).ConfigureAwait(false);
            return new LoginResult(null, Refusal);
        }
        if (user.LockedUntil is { } until && until > now)
        {
            await AuditAsync("login.failed", user.Username, "locked", remote, ct).ConfigureAwait(false);
            return new LoginResult(null, Refusal);
        }
        if (!matches)
        {
            var updated = await store.UpdateUserAsync(user.Username, u =>
            {
                var failures = (u.LockedUntil is { } l && l <= now ? 0 : u.FailedLogins) + 1;
                return u with { FailedLogins = failures, LockedUntil = failures >= MaxFailures ? now + Lockout : u.LockedUntil };
            }, ct).ConfigureAwait(false);
            var locked = updated?.After.LockedUntil is { } lockedUntil && lockedUntil > now;
            if (locked)
                Log.Locked(log, user.Username, MaxFailures);
            await AuditAsync("login.failed", user.Username, locked ? $"wrong password; locked for {Lockout.TotalMinutes:F0} minutes" : "wrong password", remote, ct).ConfigureAwait(false);
            return new LoginResult(null, Refusal);
        }
        var signedIn = await store.UpdateUserAsync(user.Username, u => u with { FailedLogins = 0, LockedUntil = null, LastLoginAt = now }, ct).ConfigureAwait(false);
        await AuditAsync("login", user.Username, null, remote, ct).ConfigureAwait(false);
        return new LoginResult(signedIn?.After ?? user, null);
    }

    /// <summary>The session's principal: name <c>user:NAME</c> (what the audit log shows), role, stamp.</summary>
    public static ClaimsPrincipal Principal(UserRecord user) => new(new ClaimsIdentity(
        [new Claim(ClaimTypes.Name, "user:" + user.Username), new Claim(ClaimTypes.Role, user.Role.ToString()), new Claim(StampClaim, user.Stamp)], Scheme));

    /// <summary>Ends a session whose user is gone, disabled, or changed since it began.</summary>
    private async Task ValidateAsync(CookieValidatePrincipalContext context)
    {
        var name = context.Principal?.Identity?.Name;
        var stamp = context.Principal?.FindFirst(StampClaim)?.Value;
        var user = name is { } n && n.StartsWith("user:", StringComparison.Ordinal) ? await store.GetUserAsync(n["user:".Length..], context.HttpContext.RequestAborted).ConfigureAwait(false) : null;
        if (user is null || user.DisabledAt is not null || user.Stamp != stamp)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(Scheme).ConfigureAwait(false);
        }
    }

    private Task AuditAsync(string action, string username, string? reason, string remote, CancellationToken ct) =>
        store.AppendAuditAsync(new AuditEntry
        {
            At = time.GetUtcNow(),
            Actor = "user:" + LogText.Sanitize(username),
            Action = action,
            Target = "user:" + LogText.Sanitize(username),
            After = string.Create(CultureInfo.InvariantCulture, $$"""{"remote":{{System.Text.Json.JsonSerializer.Serialize(remote, Devices.FleetApiJsonContext.Default.String)}}{{(reason is null ? "" : $",\"reason\":{System.Text.Json.JsonSerializer.Serialize(reason, Devices.FleetApiJsonContext.Default.String)}")}}}"""),
        }, ct);

    private static partial class Log
    {
        [LoggerMessage(8001, LogLevel.Warning, "Console user {User} locked after {Failures} failed logins")]
        public static partial void Locked(ILogger logger, string user, int failures);

        [LoggerMessage(8002, LogLevel.Warning, "Console logins from {Remote} throttled after repeated failures")]
        public static partial void Throttled(ILogger logger, string remote);
    }
}
