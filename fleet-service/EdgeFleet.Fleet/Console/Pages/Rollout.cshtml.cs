using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>A rollout: per-phase progress, gate values from its events, and (operators) its actions, each with a reason.</summary>
public sealed class RolloutModel(IFleetStore store, RolloutEngine engine, RolloutSigner signer, TimeProvider time) : PageModel
{
    public const int PageSize = 100;

    public RolloutView? View { get; private set; }

    /// <summary>When the page read the rollout (Unix ms): live figures read before it are older than the page.</summary>
    public long ReadAt { get; private set; }

    /// <summary>A draft's target as it stands now: the devices each phase would move once approved.</summary>
    public IReadOnlyList<(int Size, IReadOnlyList<string> Adds)>? DraftPreview { get; private set; }

    public int DraftEligible { get; private set; }

    /// <summary>The page of the moved devices' table.</summary>
    [BindProperty(SupportsGet = true)] public int P { get; set; } = 1;
    public string? Message { get; private set; }
    public string? Error { get; private set; }

    public async Task<IActionResult> OnGetAsync(string id, CancellationToken ct)
    {
        ReadAt = time.GetUtcNow().ToUnixTimeMilliseconds();
        if (await store.GetRolloutAsync(id, ct).ConfigureAwait(false) is not { } rollout)
            return NotFound();
        View = RolloutsApi.View(rollout, withDevices: true);
        if (rollout.State == RolloutStates.Draft)
        {
            var eligible = await RolloutEngine.EligibleAsync(store, rollout.Target, null, await store.ListDevicesAsync(ct).ConfigureAwait(false), ct)
                .ConfigureAwait(false);
            DraftEligible = eligible.Count;
            DraftPreview = RolloutPlan.Preview(rollout.Id, eligible, rollout.Phases);
        }
        Message = TempData["message"] as string;
        return Page();
    }

    /// <summary>Approve (a draft), pause, resume, abort, roll back or promote: operators only, whatever the page showed.</summary>
    public async Task<IActionResult> OnPostAsync(string id, string action, string? reason, CancellationToken ct)
    {
        if (!ConsoleView.Can(User, OperatorRole.Operator))
            return Forbid(ConsoleAuth.Scheme);
        if (action is not ("approve" or "pause" or "resume" or "abort" or "rollback" or "promote"))
            return BadRequest();
        if (action is "rollback" or "abort" or "promote" && string.IsNullOrWhiteSpace(reason))
        {
            Error = $"{action} needs a reason";
        }
        else if (action == "approve")
        {
            var (approved, error, status) = await RolloutsApi.ApproveDraftAsync(id, string.IsNullOrWhiteSpace(reason) ? null : reason.Trim(), User, store, signer, time, ct).ConfigureAwait(false);
            if (status == StatusCodes.Status404NotFound)
                return NotFound();
            if (approved is not null)
            {
                TempData["message"] = "approved: the rollout runs";
                return Redirect($"/console/rollouts/{Uri.EscapeDataString(id)}");
            }
            Error = error?.Reason;
        }
        else
        {
            var (rollout, refused) = await RolloutsApi.ActAsync(engine, store, id, action, ConsoleView.Actor(User), string.IsNullOrWhiteSpace(reason) ? null : reason.Trim(), time, ct).ConfigureAwait(false);
            if (rollout is null && refused is null)
                return NotFound();
            if (refused is null)
            {
                TempData["message"] = $"{action}: done";
                return Redirect($"/console/rollouts/{Uri.EscapeDataString(id)}");
            }
            Error = refused;
        }
        Response.StatusCode = StatusCodes.Status409Conflict;
        return await OnGetAsync(id, ct).ConfigureAwait(false);
    }
}
