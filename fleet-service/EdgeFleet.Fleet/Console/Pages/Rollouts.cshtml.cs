using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

public sealed class RolloutsModel(IFleetStore store) : PageModel
{
    public IReadOnlyList<RolloutView> Rollouts { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct) =>
        Rollouts = [.. (await store.ListRolloutsAsync(ct).ConfigureAwait(false)).Select(r => RolloutsApi.View(r, withDevices: false))];
}
