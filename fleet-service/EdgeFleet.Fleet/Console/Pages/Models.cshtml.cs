using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>The registry: each model's versions, approval state, model card, and the last validation report's figures.</summary>
public sealed class ModelsModel(IFleetStore store, TimeProvider time) : PageModel
{
    public string? Error { get; private set; }

    public string? Message { get; private set; }

    public IReadOnlyList<(RegisteredModel Model, IReadOnlyList<ModelVersion> Versions)> Models { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct)
    {
        var list = new List<(RegisteredModel, IReadOnlyList<ModelVersion>)>();
        foreach (var model in await store.ListModelsAsync(ct).ConfigureAwait(false))
            list.Add((model, [.. (await store.ListModelVersionsAsync(model.Id, ct).ConfigureAwait(false)).OrderByDescending(v => v.Version)]));
        Models = list;
        Message ??= TempData["message"] as string;
    }

    /// <summary>Approve, reject or retire a version (operators; a rejection needs a reason).</summary>
    public async Task<Microsoft.AspNetCore.Mvc.IActionResult> OnPostAsync(string id, long version, string action, string? reason, CancellationToken ct)
    {
        if (!ConsoleView.Can(User, Identity.OperatorRole.Operator))
            return Forbid(ConsoleAuth.Scheme);
        var to = action switch { "approve" => ApprovalStates.Approved, "reject" => ApprovalStates.Rejected, "retire" => ApprovalStates.Retired, _ => null };
        if (to is null)
            return BadRequest();
        var (moved, error, _) = await ModelsApi.MoveStateAsync(id, version, to, string.IsNullOrWhiteSpace(reason) ? null : reason.Trim(), User, store, time, ct).ConfigureAwait(false);
        if (moved is not null)
        {
            TempData["message"] = $"{id} v{version} is {moved.State}";
            return Redirect("/console/models");
        }
        Error = error!.Reason;
        Response.StatusCode = StatusCodes.Status409Conflict;
        await OnGetAsync(ct).ConfigureAwait(false);
        return Page();
    }

    /// <summary>A number from the last validation report (INT8 against FP32), or a dash.</summary>
    public static string Figure(ModelVersion v, string name, string format) =>
        v.Validations.Count > 0 && v.Validations[^1].Report.ValueKind == System.Text.Json.JsonValueKind.Object
            && v.Validations[^1].Report.TryGetProperty(name, out var value) && value.ValueKind == System.Text.Json.JsonValueKind.Number
            ? value.GetDouble().ToString(format, System.Globalization.CultureInfo.InvariantCulture)
            : "—";
}
