using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Cli;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>The create-rollout form (operators): a preview of the devices each phase would move, then create.</summary>
[Authorize(Policy = ConsoleAuth.OperatorPolicy)]
public sealed class NewRolloutModel(IFleetStore store, RolloutSigner signer, TimeProvider time) : PageModel
{
    [BindProperty] public string? Version { get; set; }
    [BindProperty] public string? Group { get; set; }
    [BindProperty] public string? Selector { get; set; }
    [BindProperty] public string? Devices { get; set; }
    [BindProperty] public string Phases { get; set; } = "10%:600:5,50%:600,100%";
    [BindProperty] public string OnFailure { get; set; } = "pause";
    [BindProperty] public double MaxFailureRate { get; set; } = 0.05;
    [BindProperty] public string? Id { get; set; }

    public IReadOnlyList<ModelVersion> Approved { get; private set; } = [];
    public IReadOnlyList<string> Groups { get; private set; } = [];
    public string? Error { get; private set; }

    /// <summary>Per phase: its cumulative size and the first devices it adds, in the rollout's order.</summary>
    public IReadOnlyList<(PhaseSpec Phase, int Size, IReadOnlyList<string> Adds)>? Preview { get; private set; }
    public int Eligible { get; private set; }

    public async Task OnGetAsync(CancellationToken ct) => await LoadAsync(ct).ConfigureAwait(false);

    public async Task<IActionResult> OnPostPreviewAsync(CancellationToken ct)
    {
        await LoadAsync(ct).ConfigureAwait(false);
        // The order depends on the rollout's id: the preview fixes one (kept in the form) so Create moves the devices shown.
        if (string.IsNullOrWhiteSpace(Id) && Version?.Split('@') is [var m, var v])
            Id = $"{m}-v{v}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3))}";
        if (FormRequest() is not { } request)
            return Page();
        var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
        var eligible = await RolloutEngine.EligibleAsync(store, request.Target, null, devices, ct).ConfigureAwait(false);
        Eligible = eligible.Count;
        Preview = [.. PhaseGrammar.Parse(Phases).Zip(RolloutPlan.Preview(request.Id!, eligible, request.Phases))
            .Select(p => (p.First, p.Second.Size, p.Second.Adds))];
        return Page();
    }

    public async Task<IActionResult> OnPostCreateAsync(CancellationToken ct)
    {
        await LoadAsync(ct).ConfigureAwait(false);
        if (FormRequest() is not { } request)
            return Page();
        var (rollout, error, _) = await RolloutsApi.CreateRolloutAsync(request, ConsoleView.Actor(User), store, signer, time, ct).ConfigureAwait(false);
        if (rollout is null)
        {
            Error = $"{error!.Error}: {error.Reason}";
            return Page();
        }
        return Redirect($"/console/rollouts/{Uri.EscapeDataString(rollout.Id)}");
    }

    private async Task LoadAsync(CancellationToken ct)
    {
        var approved = new List<ModelVersion>();
        foreach (var model in await store.ListModelsAsync(ct).ConfigureAwait(false))
            approved.AddRange((await store.ListModelVersionsAsync(model.Id, ct).ConfigureAwait(false)).Where(v => v.State == ApprovalStates.Approved));
        Approved = [.. approved.OrderBy(v => v.ModelId, StringComparer.Ordinal).ThenByDescending(v => v.Version)];
        Groups = [.. (await store.ListGroupsAsync(ct).ConfigureAwait(false)).Select(g => g.Name)];
    }

    /// <summary>The form as a rollout request; null with <see cref="Error"/> set when it does not read.</summary>
    private RolloutRequest? FormRequest()
    {
        var parts = Version?.Split('@');
        if (parts is not [var modelId, var versionText] || !long.TryParse(versionText, System.Globalization.CultureInfo.InvariantCulture, out var version))
        {
            Error = "pick an approved model version";
            return null;
        }
        List<PhaseSpec> phases;
        try
        {
            phases = PhaseGrammar.Parse(Phases);
        }
        catch (UsageException e)
        {
            Error = e.Message;
            return null;
        }
        var target = new RolloutTarget
        {
            Group = string.IsNullOrWhiteSpace(Group) ? null : Group,
            Selector = string.IsNullOrWhiteSpace(Selector) ? null : Selector.Trim(),
            Devices = [.. (Devices ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)],
        };
        var request = new RolloutRequest
        {
            Id = string.IsNullOrWhiteSpace(Id) ? null : Id.Trim(),
            ModelId = modelId,
            Version = version,
            Target = target,
            Phases = [.. phases.Select(p => new RolloutPhase { Percent = p.Percent, Count = p.Count, SoakSeconds = p.SoakSeconds ?? 0, MinReporting = p.MinReporting ?? 1, Shadow = p.Shadow })],
            Gates = new RolloutGates { MaxFailureRate = MaxFailureRate },
            OnGateFailure = OnFailure,
        };
        var check = RolloutPlan.Check(new Rollout
        {
            Id = "check",
            ModelId = modelId,
            Version = version,
            Target = target,
            Phases = request.Phases,
            Gates = request.Gates,
            OnGateFailure = OnFailure,
            State = RolloutStates.Running,
            PhaseStartedAt = default,
            CreatedAt = default,
            CreatedBy = "",
            Manifest = default,
            KeySet = default,
        });
        if (check is not null)
        {
            Error = check;
            return null;
        }
        return request;
    }
}
