using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

public sealed class AuditModel(IFleetStore store) : PageModel
{
    public const int PageSize = 100;

    [BindProperty(SupportsGet = true)] public string? Target { get; set; }

    [BindProperty(SupportsGet = true)] public int P { get; set; } = 1;

    public IReadOnlyList<AuditEntry> Entries { get; private set; } = [];

    public bool More { get; private set; }

    /// <summary>Newest first, a page of 100; the store reads down to the page shown (pages up to 10,000 entries deep).</summary>
    public async Task OnGetAsync(CancellationToken ct)
    {
        P = Math.Clamp(P, 1, 100);
        var read = await store.GetAuditAsync(string.IsNullOrWhiteSpace(Target) ? null : Target.Trim(), (P * PageSize) + 1, ct).ConfigureAwait(false);
        Entries = [.. read.Skip((P - 1) * PageSize).Take(PageSize)];
        More = read.Count > P * PageSize;
    }

    public string Link(int page) => "/console/audit" + QueryString.Create(new Dictionary<string, string?> { ["target"] = Target, ["p"] = page.ToString(System.Globalization.CultureInfo.InvariantCulture) }.Where(kv => !string.IsNullOrEmpty(kv.Value))).ToUriComponent();
}
