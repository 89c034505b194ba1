using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>One device: its record, latency percentiles over its recent windows, its recent predictions, OTA and buffer state.</summary>
public sealed class DeviceModel(IFleetStore store, FleetOptions options, Identity.DeviceRevocation revocation, TimeProvider time) : PageModel
{
    public string? Message { get; private set; }

    public DeviceView? View { get; private set; }
    public IReadOnlyList<LatencyWindow> Windows { get; private set; } = [];
    public IReadOnlyList<(string Label, double Count)> Labels { get; private set; } = [];
    public IReadOnlyList<TelemetryRecord> OtaHistory { get; private set; } = [];
    public IReadOnlyList<ShadowWindow> Shadows { get; private set; } = [];
    public DateTimeOffset Now { get; private set; }

    public async Task<IActionResult> OnGetAsync(string id, CancellationToken ct)
    {
        if (!DeviceId.IsValid(id) || await store.GetDeviceAsync(id, ct).ConfigureAwait(false) is not { } device)
            return NotFound();
        Now = time.GetUtcNow();
        View = DeviceView.Of(device, Now, TimeSpan.FromSeconds(options.OfflineAfterSeconds), await DeviceView.DriftByDeviceAsync(store, ct).ConfigureAwait(false));
        var recent = await store.GetRecentTelemetryAsync(id, 2000, ct).ConfigureAwait(false);
        Windows = [.. recent.Select(r => r.Latency).OfType<LatencyWindow>().OrderBy(w => w.From)];
        Labels = [.. recent.Select(r => r.Inference).OfType<InferenceSample>().GroupBy(i => i.Label).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => (g.Key, (double)g.Count()))];
        OtaHistory = [.. recent.Where(r => r.Ota is not null).OrderByDescending(r => r.Seq).Take(20)];
        Shadows = [.. recent.Select(r => r.Shadow).OfType<ShadowWindow>().OrderByDescending(w => w.From).Take(5)];
        Message ??= TempData["message"] as string;
        return Page();
    }

    /// <summary>Revokes the device (operators, as in the API): it is disconnected and refused from now on.</summary>
    public async Task<IActionResult> OnPostRevokeAsync(string id, CancellationToken ct)
    {
        if (!ConsoleView.Can(User, Identity.OperatorRole.Operator))
            return Forbid(ConsoleAuth.Scheme);
        if (!DeviceId.IsValid(id))
            return NotFound();
        var (found, brokerError) = await Identity.IdentityApi.RevokeDeviceAsync(id, User, store, revocation, time, ct).ConfigureAwait(false);
        if (!found)
            return NotFound();
        TempData["message"] = brokerError ?? $"{id} is revoked: disconnected and refused from now on";
        return Redirect($"/console/devices/{id}");
    }
}
