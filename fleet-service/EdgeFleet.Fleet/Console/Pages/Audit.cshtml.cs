using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

public sealed class AuditModel(IFleetStore store) : PageModel
{
    [BindProperty(SupportsGet = true)] public string? Target { get; set; }

    public IReadOnlyList<AuditEntry> Entries { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct) =>
        Entries = await store.GetAuditAsync(string.IsNullOrWhiteSpace(Target) ? null : Target.Trim(), 500, ct).ConfigureAwait(false);
}
