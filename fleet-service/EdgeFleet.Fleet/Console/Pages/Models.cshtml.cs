using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>The registry: each model's versions, approval state, model card, and the last validation report's figures.</summary>
public sealed class ModelsModel(IFleetStore store) : PageModel
{
    public IReadOnlyList<(RegisteredModel Model, IReadOnlyList<ModelVersion> Versions)> Models { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct)
    {
        var list = new List<(RegisteredModel, IReadOnlyList<ModelVersion>)>();
        foreach (var model in await store.ListModelsAsync(ct).ConfigureAwait(false))
            list.Add((model, [.. (await store.ListModelVersionsAsync(model.Id, ct).ConfigureAwait(false)).OrderByDescending(v => v.Version)]));
        Models = list;
    }

    /// <summary>A number from the last validation report (INT8 against FP32), or a dash.</summary>
    public static string Figure(ModelVersion v, string name, string format) =>
        v.Validations.Count > 0 && v.Validations[^1].Report.ValueKind == System.Text.Json.JsonValueKind.Object
            && v.Validations[^1].Report.TryGetProperty(name, out var value) && value.ValueKind == System.Text.Json.JsonValueKind.Number
            ? value.GetDouble().ToString(format, System.Globalization.CultureInfo.InvariantCulture)
            : "—";
}
