using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

public sealed class IndexModel(IFleetStore store, FleetOptions options, TimeProvider time) : PageModel
{
    public OverviewFigures? Figures { get; private set; }

    public async Task OnGetAsync(CancellationToken ct) => Figures = await OverviewFigures.ReadAsync(store, options, time, ct).ConfigureAwait(false);
}
