using EdgeFleet.Fleet.Drift;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>Drift per model version: alerts, the last window's PSI per feature and segment, baseline against live, PSI over time.</summary>
public sealed class DriftModel(IFleetStore store, TimeProvider time) : PageModel
{
    [BindProperty(SupportsGet = true)] public string? Version { get; set; }
    [BindProperty(SupportsGet = true)] public string? By { get; set; }
    [BindProperty(SupportsGet = true)] public double Hours { get; set; } = 24;

    /// <summary>Versions whose model card has baselines, as model@version.</summary>
    public IReadOnlyList<string> Choices { get; private set; } = [];
    public DriftReport? Report { get; private set; }
    public string? Error { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        var choices = new List<string>();
        foreach (var registered in await store.ListModelsAsync(ct).ConfigureAwait(false))
        {
            choices.AddRange((await store.ListModelVersionsAsync(registered.Id, ct).ConfigureAwait(false))
                .Where(v => v.Card.FeatureBaselines.Count > 0 && v.State is ApprovalStates.Approved or ApprovalStates.Validated)
                .OrderByDescending(v => v.Version).Select(v => $"{v.ModelId}@{v.Version}"));
        }
        Choices = choices;
        var pick = Version ?? choices.FirstOrDefault();
        if (pick?.Split('@') is not [var model, var version])
            return;
        Version = pick;
        var now = time.GetUtcNow();
        var (report, error) = await DriftReport.BuildAsync(store, model, version, now.AddHours(-Math.Clamp(Hours, 0.01, 24 * 31)), now,
            string.IsNullOrWhiteSpace(By) ? null : By, DriftReport.DefaultAlertWindows, ct).ConfigureAwait(false);
        Report = report;
        Error = error?.Reason;
    }
}
