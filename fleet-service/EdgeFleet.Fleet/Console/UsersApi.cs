using System.Security.Claims;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Console;

public sealed record UserRequest(string Username, OperatorRole Role, string Password);

/// <summary>A change to a user: any of role, password, disabled (false enables it again and clears a lockout).</summary>
public sealed record UserChangeRequest(OperatorRole? Role, string? Password, bool? Disabled);

public sealed record UserView(string Username, OperatorRole Role, DateTimeOffset CreatedAt, string CreatedBy, DateTimeOffset? LastLoginAt,
    DateTimeOffset? LockedUntil, DateTimeOffset? DisabledAt)
{
    public static UserView Of(UserRecord u) => new(u.Username, u.Role, u.CreatedAt, u.CreatedBy, u.LastLoginAt, u.LockedUntil, u.DisabledAt);
}

/// <summary>
/// <c>/api/users</c> (admin): console users. The first admin is made here with the bootstrap admin API key
/// (<c>edgefleet users create</c>); there is no default user or password.
/// </summary>
public static class UsersApi
{
    public static IEndpointRouteBuilder MapUsersApi(this IEndpointRouteBuilder app)
    {
        var users = app.MapGroup("/api/users").RequireAuthorization(ApiAuthentication.AdminPolicy);
        users.MapGet("", async (IFleetStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.ListUsersAsync(ct).ConfigureAwait(false)).Select(UserView.Of).ToList()));
        users.MapPost("", async Task<IResult> (UserRequest body, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct) =>
        {
            var (created, error) = await CreateAsync(store, body.Username, body.Role, body.Password, IdentityApi.Actor(user), time, ct).ConfigureAwait(false);
            return error is { } e
                ? e.Error == "UserExists" ? TypedResults.Conflict(e) : TypedResults.BadRequest(e)
                : TypedResults.Created($"/api/users/{created!.Username}", UserView.Of(created));
        });
        users.MapPost("/{username}", async Task<IResult> (string username, UserChangeRequest body, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct) =>
        {
            var (changed, error) = await ChangeAsync(store, username, body, IdentityApi.Actor(user), time, ct).ConfigureAwait(false);
            return error is { } e
                ? e.Error == "UnknownUser" ? TypedResults.NotFound(e) : TypedResults.BadRequest(e)
                : TypedResults.Ok(UserView.Of(changed!));
        });
        return app;
    }

    /// <summary>Creates a user (the API and the console's users page both come here), audited.</summary>
    public static async Task<(UserRecord? User, ApiError? Error)> CreateAsync(IFleetStore store, string username, OperatorRole role, string password, string by, TimeProvider time, CancellationToken ct)
    {
        if (Passwords.CheckUsername(username) is { } badName)
            return (null, new ApiError("InvalidUsername", badName));
        if (OperatorRoles.Problem(role) is { } badRole)
            return (null, new ApiError("InvalidRole", badRole));
        if (Passwords.CheckPassword(password) is { } badPassword)
            return (null, new ApiError("WeakPassword", badPassword));
        var record = new UserRecord { Username = username, Role = role, PasswordHash = Passwords.Hash(password), CreatedAt = time.GetUtcNow(), CreatedBy = by, Stamp = Passwords.NewStamp() };
        if (!await store.CreateUserAsync(record, ct).ConfigureAwait(false))
            return (null, new ApiError("UserExists", $"user {username} exists"));
        await store.AppendAuditAsync(new AuditEntry { At = time.GetUtcNow(), Actor = by, Action = "user.create", Target = "user:" + username, After = $$"""{"role":"{{role}}"}""" }, ct).ConfigureAwait(false);
        return (record, null);
    }

    /// <summary>Changes a user's role, password or state; each change renews the stamp (ending the user's sessions), audited.</summary>
    public static async Task<(UserRecord? User, ApiError? Error)> ChangeAsync(IFleetStore store, string username, UserChangeRequest change, string by, TimeProvider time, CancellationToken ct)
    {
        if (change.Password is { } password && Passwords.CheckPassword(password) is { } bad)
            return (null, new ApiError("WeakPassword", bad));
        if (change.Role is { } role && OperatorRoles.Problem(role) is { } badRole)
            return (null, new ApiError("InvalidRole", badRole));
        var hash = change.Password is { } p ? Passwords.Hash(p) : null;
        var now = time.GetUtcNow();
        var result = await store.UpdateUserAsync(username, u => u with
        {
            Role = change.Role ?? u.Role,
            PasswordHash = hash ?? u.PasswordHash,
            DisabledAt = change.Disabled switch { true => u.DisabledAt ?? now, false => null, null => u.DisabledAt },
            FailedLogins = change.Disabled == false || hash is not null ? 0 : u.FailedLogins,
            LockedUntil = change.Disabled == false || hash is not null ? null : u.LockedUntil,
            Stamp = Passwords.NewStamp(),
        }, ct).ConfigureAwait(false);
        if (result is not { } r)
            return (null, new ApiError("UnknownUser", $"no user {LogText.Sanitize(username)}"));
        string State(UserRecord u) => $$"""{"role":"{{u.Role}}","disabled":{{(u.DisabledAt is null ? "false" : "true")}}}""";
        await store.AppendAuditAsync(new AuditEntry
        {
            At = now,
            Actor = by,
            Action = hash is null ? "user.change" : "user.change-password",
            Target = "user:" + username,
            Before = State(r.Before),
            After = State(r.After),
        }, ct).ConfigureAwait(false);
        return (r.After, null);
    }
}
