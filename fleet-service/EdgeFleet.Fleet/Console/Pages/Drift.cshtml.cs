using EdgeFleet.Fleet.Drift;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>Drift per model version: alerts, the last window's PSI per feature and segment, baseline against live, PSI over time.</summary>
public sealed class DriftModel(IFleetStore store, DriftMonitor monitor, FleetOptions options, TimeProvider time) : PageModel
{
    /// <summary>Alerts the leader's check opened and that are not resolved yet.</summary>
    public IReadOnlyList<DriftAlert> Active { get; private set; } = [];

    [BindProperty(SupportsGet = true)] public string? Version { get; set; }
    /// <summary>Segments: profile or tag:KEY; the fleet's own setting (Fleet:Drift:SegmentBy) when not given.</summary>
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
        Active = await store.ListDriftAlertsAsync(activeOnly: true, 200, ct).ConfigureAwait(false);
        var pick = Version ?? choices.FirstOrDefault();
        if (pick?.Split('@') is not [var model, var version])
            return;
        Version = pick;
        By ??= options.Drift.SegmentBy;
        var now = time.GetUtcNow();
        var (report, error) = await DriftReport.BuildAsync(store, model, version, now.AddHours(-Math.Clamp(Hours, 0.01, 24 * 31)), now,
            string.IsNullOrWhiteSpace(By) ? null : By, options.Drift.AlertWindows, ct).ConfigureAwait(false);
        Report = report;
        Error = error?.Reason;
    }

    /// <summary>An operator acknowledges an open alert (it stays until the drift ends).</summary>
    public async Task<IActionResult> OnPostAckAsync(string id, CancellationToken ct)
    {
        if (!ConsoleView.Can(User, Identity.OperatorRole.Operator))
            return Forbid(ConsoleAuth.Scheme);
        await monitor.AcknowledgeAsync(id, ConsoleView.Actor(User), ct).ConfigureAwait(false);
        return Redirect(Request.Path + Request.QueryString);
    }
}
