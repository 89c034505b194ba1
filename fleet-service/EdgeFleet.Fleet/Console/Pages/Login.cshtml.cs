using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

[AllowAnonymous]
public sealed class LoginModel(ConsoleAuth auth) : PageModel
{
    public string? Error { get; private set; }

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    [BindProperty]
    public string? Username { get; set; }

    public void OnGet()
    {
    }

    public async Task<IActionResult> OnPostAsync(string? password, CancellationToken ct)
    {
        var result = await auth.LoginAsync(Username ?? "", password ?? "", HttpContext.Connection.RemoteIpAddress?.ToString() ?? "?", ct).ConfigureAwait(false);
        if (result.User is not { } user)
        {
            Error = result.Refused;
            Response.StatusCode = StatusCodes.Status401Unauthorized;
            return Page();
        }
        await HttpContext.SignInAsync(ConsoleAuth.Scheme, ConsoleAuth.Principal(user)).ConfigureAwait(false);
        // Only a local path: never an open redirect.
        return LocalRedirect(ReturnUrl is { } r && Url.IsLocalUrl(r) && r.StartsWith("/console", StringComparison.Ordinal) ? r : "/console");
    }
}
