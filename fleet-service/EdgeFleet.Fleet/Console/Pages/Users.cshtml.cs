using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>Console users (admins): create, change role, disable or enable (which also clears a lockout).</summary>
[Authorize(Policy = ConsoleAuth.AdminPolicy)]
public sealed class UsersModel(IFleetStore store, TimeProvider time) : PageModel
{
    public IReadOnlyList<UserRecord> Users { get; private set; } = [];

    public IReadOnlyList<ApiKeyRecord> Keys { get; private set; } = [];

    /// <summary>A key just created: shown this once, never stored in clear.</summary>
    public string? NewKey { get; private set; }
    public string? Error { get; private set; }
    public string? Message { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        Users = await store.ListUsersAsync(ct).ConfigureAwait(false);
        Keys = await store.ListApiKeysAsync(ct).ConfigureAwait(false);
        Message ??= TempData["message"] as string;
    }

    public async Task<IActionResult> OnPostCreateAsync(string username, OperatorRole role, string password, CancellationToken ct)
    {
        var (user, error) = await UsersApi.CreateAsync(store, username ?? "", role, password ?? "", ConsoleView.Actor(User), time, ct).ConfigureAwait(false);
        return await DoneAsync(user is null ? error!.Reason : $"user {user.Username} created", user is null, ct).ConfigureAwait(false);
    }

    public async Task<IActionResult> OnPostChangeAsync(string username, OperatorRole? role, bool? disabled, CancellationToken ct)
    {
        if (ConsoleView.Actor(User) == "user:" + username && (disabled == true || (role is { } r && r != OperatorRole.Admin)))
            return await DoneAsync("you cannot disable yourself or take away your own admin role", failed: true, ct).ConfigureAwait(false);
        var (user, error) = await UsersApi.ChangeAsync(store, username ?? "", new UserChangeRequest(role, null, disabled), ConsoleView.Actor(User), time, ct).ConfigureAwait(false);
        return await DoneAsync(user is null ? error!.Reason : $"user {user.Username} changed", user is null, ct).ConfigureAwait(false);
    }

    /// <summary>An API key for the CLI or a script; the page shows it once (it is not redirected, so it is not in a URL or a cookie).</summary>
    public async Task<IActionResult> OnPostCreateKeyAsync(string name, OperatorRole role, CancellationToken ct)
    {
        var (record, key, error) = await IdentityApi.NewApiKeyAsync(name, role, User, store, time, ct).ConfigureAwait(false);
        if (record is null)
            return await DoneAsync(error!.Reason, failed: true, ct).ConfigureAwait(false);
        NewKey = key;
        Message = $"API key {record.Id} ({record.Role.ToString().ToLowerInvariant()}) for {record.Name}: copy it now, it is not shown again";
        Response.Headers.CacheControl = "no-store";
        await OnGetAsync(ct).ConfigureAwait(false);
        return Page();
    }

    public async Task<IActionResult> OnPostRevokeKeyAsync(string id, CancellationToken ct) =>
        await IdentityApi.RevokeKeyAsync(id ?? "", User, store, time, ct).ConfigureAwait(false)
            ? await DoneAsync($"API key {id} revoked", failed: false, ct).ConfigureAwait(false)
            : await DoneAsync($"no API key {id}", failed: true, ct).ConfigureAwait(false);

    private async Task<IActionResult> DoneAsync(string text, bool failed, CancellationToken ct)
    {
        if (!failed)
        {
            TempData["message"] = text;
            return Redirect("/console/users");
        }
        Error = text;
        Response.StatusCode = StatusCodes.Status400BadRequest;
        await OnGetAsync(ct).ConfigureAwait(false);
        return Page();
    }
}
