using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Retraining;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>Retraining: each model's policy, the jobs (newest first) with their outcome and draft rollout; operators start and cancel jobs.</summary>
public sealed class RetrainingModel(IFleetStore store, RetrainingScheduler scheduler, RetrainingExecutors executors, TimeProvider time) : PageModel
{
    public const int PageSize = 50;

    public IReadOnlyList<RetrainingPolicy> Policies { get; private set; } = [];

    public IReadOnlyList<RetrainingJob> Jobs { get; private set; } = [];

    public string? Message { get; private set; }

    public string? Error { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        Policies = await store.ListRetrainingPoliciesAsync(ct).ConfigureAwait(false);
        Jobs = await store.ListRetrainingJobsAsync(null, PageSize, ct).ConfigureAwait(false);
        Message ??= TempData["message"] as string;
    }

    /// <summary>Retrain a model now (<c>run</c>, with a reason) or cancel an open job: operators only.</summary>
    public async Task<IActionResult> OnPostAsync(string action, string? model, string? job, string? reason, CancellationToken ct)
    {
        if (!ConsoleView.Can(User, OperatorRole.Operator))
            return Forbid(ConsoleAuth.Scheme);
        var (done, error, _) = action switch
        {
            "run" => await RetrainingApi.QueueManualAsync(model, reason?.Trim(), ConsoleView.Actor(User), scheduler, ct).ConfigureAwait(false),
            "cancel" when job is not null => await RetrainingApi.CancelAsync(job, ConsoleView.Actor(User), store, executors, time, ct).ConfigureAwait(false),
            _ => (null, new Devices.ApiError("InvalidAction", "run or cancel"), 400),
        };
        if (done is not null)
        {
            TempData["message"] = action == "run" ? $"job {done.Id} queued for {done.ModelId}" : $"job {done.Id} cancelled";
            return Redirect("/console/retraining");
        }
        Error = error?.Reason;
        Response.StatusCode = StatusCodes.Status409Conflict;
        await OnGetAsync(ct).ConfigureAwait(false);
        return Page();
    }

    public static string Triggers(RetrainingPolicy p)
    {
        var list = new List<string>();
        if (p.Drift is { } d)
            list.Add($"drift on ≥ {d.MinFeatures} feature(s) for ≥ {d.MinWindows} windows");
        if (p.Confidence is { } c)
            list.Add($"mean confidence down > {c.MaxDrop:0.###} over {c.Windows} windows");
        if (p.EveryHours is { } h)
            list.Add($"every {h:0.##} h");
        list.Add("by hand");
        return string.Join("; ", list);
    }
}
