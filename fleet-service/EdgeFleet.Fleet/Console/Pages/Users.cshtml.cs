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
    public string? Error { get; private set; }
    public string? Message { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        Users = await store.ListUsersAsync(ct).ConfigureAwait(false);
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
