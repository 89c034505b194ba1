using System.Security.Claims;
using System.Text;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace EdgeFleet.Fleet.Models;

public sealed record ModelRequest
{
    public string? Id { get; set; }

    public string? Description { get; set; }

    public string? Owner { get; set; }
}

public sealed record StateChangeRequest
{
    public string? Reason { get; set; }
}

/// <summary>A model with the summary of its versions (newest first).</summary>
public sealed record ModelView(RegisteredModel Model, IReadOnlyList<VersionSummary> Versions);

public sealed record VersionSummary(long Version, string State, DateTimeOffset CreatedAt, string CreatedBy, IReadOnlyList<ModelArtifact> Artifacts, string? LastVerdict);

/// <summary>
/// The model registry: <c>/api/models</c> (register, list, show), versions uploaded as multipart forms with
/// their files, model card and validation report, and the approval moves (approve, reject, retire). Files go to
/// the content-addressed artifact store, so a version's artifacts are served at <c>/api/artifacts/{sha256}</c>.
/// </summary>
public static class ModelsApi
{
    private const int MaxFieldBytes = 4 << 20;

    public static IEndpointRouteBuilder MapModelsApi(this IEndpointRouteBuilder app)
    {
        var models = app.MapGroup("/api/models");
        models.MapGet("", ListAsync).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        models.MapPost("", RegisterAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        models.MapGet("/{id}", GetAsync).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        models.MapPost("/{id}/versions", PushVersionAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(4 * OtaApi.MaxArtifactBytes));
        models.MapGet("/{id}/versions/{version:long}", GetVersionAsync).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        models.MapPost("/{id}/versions/{version:long}/validations", AttachValidationAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        foreach (var (action, state) in new[] { ("approve", ApprovalStates.Approved), ("reject", ApprovalStates.Rejected), ("retire", ApprovalStates.Retired) })
        {
            models.MapPost($"/{{id}}/versions/{{version:long}}/{action}", (string id, long version, StateChangeRequest? body, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct) =>
                MoveAsync(id, version, state, body?.Reason, user, store, time, ct)).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        }
        return app;
    }

    private static async Task<IResult> ListAsync(IFleetStore store, CancellationToken ct)
    {
        var views = new List<ModelView>();
        foreach (var model in await store.ListModelsAsync(ct).ConfigureAwait(false))
            views.Add(new ModelView(model, Summaries(await store.ListModelVersionsAsync(model.Id, ct).ConfigureAwait(false))));
        return TypedResults.Ok(views);
    }

    private static async Task<IResult> GetAsync(string id, IFleetStore store, CancellationToken ct) =>
        await store.GetModelAsync(id, ct).ConfigureAwait(false) is { } model
            ? TypedResults.Ok(new ModelView(model, Summaries(await store.ListModelVersionsAsync(id, ct).ConfigureAwait(false))))
            : UnknownModel(id);

    private static async Task<IResult> RegisterAsync(ModelRequest body, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (!RegisteredModel.IsValidId(body.Id))
            return TypedResults.BadRequest(new ApiError("InvalidModelId", "model ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
        var model = new RegisteredModel { Id = body.Id!, Description = body.Description, Owner = body.Owner, CreatedAt = time.GetUtcNow(), CreatedBy = IdentityApi.Actor(user) };
        if (!await store.CreateModelAsync(model, ct).ConfigureAwait(false))
            return TypedResults.Conflict(new ApiError("ModelExists", $"model {model.Id} is already registered"));
        await IdentityApi.AuditAsync(store, user, "model.register", model.Id, null, Json(model, FleetApiJsonContext.Default.RegisteredModel), time, ct).ConfigureAwait(false);
        return TypedResults.Created($"/api/models/{model.Id}", new ModelView(model, []));
    }

    private static async Task<IResult> GetVersionAsync(string id, long version, IFleetStore store, CancellationToken ct) =>
        await store.GetModelVersionAsync(id, version, ct).ConfigureAwait(false) is { } v ? TypedResults.Ok(v) : UnknownVersion(id, version);

    /// <summary>
    /// <c>multipart/form-data</c>: files <c>fp32</c>, <c>int8</c> and <c>variant.PROFILE</c> (at least one), the
    /// field <c>card</c> (the model card as JSON), optionally <c>version</c> (default: the next) and <c>report</c>
    /// (a validation report, which moves the version to validated or rejected by its verdict).
    /// </summary>
    private static async Task<IResult> PushVersionAsync(string id, HttpRequest request, ClaimsPrincipal user, IFleetStore store, ArtifactStore artifacts, TimeProvider time, CancellationToken ct)
    {
        if (await store.GetModelAsync(id, ct).ConfigureAwait(false) is null)
            return UnknownModel(id);
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type) || !type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase)
            || HeaderUtilities.RemoveQuotes(type.Boundary).Value is not { Length: > 0 } boundary)
            return BadVersion("the body must be multipart/form-data with the model files and a card field");
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        var files = new List<ModelArtifact>();
        try
        {
            var reader = new MultipartReader(boundary, request.Body);
            while (await reader.ReadNextSectionAsync(ct).ConfigureAwait(false) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) || HeaderUtilities.RemoveQuotes(disposition.Name).Value is not { } name)
                    return BadVersion("a part has no content-disposition name");
                if (disposition.FileName.HasValue || disposition.FileNameStar.HasValue)
                {
                    var (kind, profile) = name switch
                    {
                        "fp32" => (ModelArtifact.Fp32Kind, (string?)null),
                        "int8" => (ModelArtifact.Int8Kind, null),
                        _ when name.StartsWith("variant.", StringComparison.Ordinal) && EdgeFleet.Shared.Wire.DeviceId.IsValid(name[8..]) => (ModelArtifact.VariantKind, name[8..]),
                        _ => (null, null),
                    };
                    if (kind is null)
                        return BadVersion($"file part '{LogText.Sanitize(name)}' is not fp32, int8 or variant.PROFILE");
                    if (files.Any(f => f.Kind == kind && f.Profile == profile))
                        return BadVersion($"file part '{LogText.Sanitize(name)}' appears twice");
                    var (sha, length) = await artifacts.PutAsync(section.Body, OtaApi.MaxArtifactBytes, ct).ConfigureAwait(false);
                    var fileName = Path.GetFileName(HeaderUtilities.RemoveQuotes(disposition.FileNameStar.HasValue ? disposition.FileNameStar : disposition.FileName).Value ?? name);
                    files.Add(new ModelArtifact(kind, profile, sha, length, LogText.Sanitize(fileName)));
                }
                else
                {
                    fields[name] = await ReadFieldAsync(section.Body, ct).ConfigureAwait(false);
                }
            }
        }
        catch (InvalidDataException e)
        {
            return BadVersion(e.Message);
        }
        catch (IOException e)
        {
            return BadVersion($"the upload broke off: {e.Message}");
        }
        if (files.Count == 0)
            return BadVersion("a version needs at least one model file (fp32, int8 or variant.PROFILE)");
        if (!fields.TryGetValue("card", out var cardJson))
            return BadVersion("the card field (the model card as JSON) is missing");
        if (ParseCard(cardJson) is not { } card)
            return BadVersion("the card field is not a model card in JSON");
        if (card.Problem() is { } problem)
            return TypedResults.BadRequest(new ApiError("InvalidModelCard", problem));

        long? requested = null;
        if (fields.TryGetValue("version", out var versionText))
        {
            if (!long.TryParse(versionText, System.Globalization.CultureInfo.InvariantCulture, out var v) || v <= 0)
                return BadVersion("version must be a positive integer");
            requested = v;
        }
        var now = time.GetUtcNow();
        var actor = IdentityApi.Actor(user);
        var record = new ModelVersion
        {
            ModelId = id,
            Version = requested ?? 0,
            State = ApprovalStates.Draft,
            Card = card,
            Artifacts = files,
            CreatedAt = now,
            CreatedBy = actor,
            History = [new StateChange("", ApprovalStates.Draft, actor, now, "uploaded")],
        };
        if (fields.TryGetValue("report", out var reportJson))
        {
            var (withReport, error) = WithValidation(record, reportJson, actor, now);
            if (error is not null)
                return BadVersion(error);
            record = withReport!;
        }
        var (stored, latest) = await AddVersionAsync(store, record, requested, actor, time, ct).ConfigureAwait(false);
        return stored is not null
            ? TypedResults.Created($"/api/models/{id}/versions/{stored.Version}", stored)
            : TypedResults.Conflict(new ApiError("VersionNotAbove", $"version {requested} of {id} is not above the latest, {latest}; versions only grow"));
    }

    /// <summary>
    /// Stores a new version of <paramref name="record"/>'s model as number <paramref name="requested"/>, or the next
    /// one (retried when another upload takes it), and audits it; null and the latest version when it is not above it.
    /// </summary>
    public static async Task<(ModelVersion? Version, long Latest)> AddVersionAsync(IFleetStore store, ModelVersion record, long? requested, string actor, TimeProvider time, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var latest = (await store.ListModelVersionsAsync(record.ModelId, ct).ConfigureAwait(false)).Select(v => v.Version).DefaultIfEmpty(0).Max();
            var candidate = record with { Version = requested ?? latest + 1 };
            var (added, current) = await store.AddModelVersionAsync(candidate, ct).ConfigureAwait(false);
            if (added)
            {
                await store.AppendAuditAsync(new AuditEntry
                {
                    At = time.GetUtcNow(),
                    Actor = actor,
                    Action = "model.version.push",
                    Target = $"{record.ModelId}@{candidate.Version}",
                    After = $$"""{"state":"{{candidate.State}}","artifacts":{{Json(candidate.Artifacts, FleetApiJsonContext.Default.IReadOnlyListModelArtifact)}}}""",
                }, ct).ConfigureAwait(false);
                return (candidate, current);
            }
            if (requested is not null || attempt >= 3)
                return (null, current);
        }
    }

    private static async Task<IResult> AttachValidationAsync(string id, long version, HttpRequest request, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        string json;
        try
        {
            json = await ReadFieldAsync(request.Body, ct).ConfigureAwait(false);
        }
        catch (InvalidDataException e)
        {
            return BadVersion(e.Message);
        }
        string? error = null;
        var changed = await store.UpdateModelVersionAsync(id, version, v =>
        {
            if (v.State is not (ApprovalStates.Draft or ApprovalStates.Validated))
            {
                error = $"the version is {v.State}; reports are attached to drafts and validated versions";
                return v;
            }
            var (after, problem) = WithValidation(v, json, IdentityApi.Actor(user), time.GetUtcNow());
            error = problem;
            return after ?? v;
        }, ct).ConfigureAwait(false);
        if (changed is null)
            return UnknownVersion(id, version);
        if (error is not null)
            return BadVersion(error);
        await IdentityApi.AuditAsync(store, user, "model.version.validation", $"{id}@{version}", changed.Value.Before.State, changed.Value.After.State, time, ct).ConfigureAwait(false);
        return TypedResults.Ok(changed.Value.After);
    }

    private static async Task<IResult> MoveAsync(string id, long version, string to, string? reason, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        var (moved, error, status) = await MoveStateAsync(id, version, to, reason, user, store, time, ct).ConfigureAwait(false);
        return moved is not null ? TypedResults.Ok(moved) : TypedResults.Json(error, FleetApiJsonContext.Default.ApiError, statusCode: status);
    }

    /// <summary>Approves, rejects or retires a version (the API and the console both come here), audited; else the error and its HTTP status.</summary>
    public static async Task<(ModelVersion? Version, ApiError? Error, int Status)> MoveStateAsync(string id, long version, string to, string? reason, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (to == ApprovalStates.Rejected && string.IsNullOrWhiteSpace(reason))
            return (null, new ApiError("ReasonRequired", "say why the version is rejected (reason)"), 400);
        string? refused = null;
        var changed = await store.UpdateModelVersionAsync(id, version, v =>
        {
            refused = ApprovalStates.CheckMove(v.State, to);
            return refused is null
                ? v with { State = to, History = [.. v.History, new StateChange(v.State, to, IdentityApi.Actor(user), time.GetUtcNow(), reason)] }
                : v;
        }, ct).ConfigureAwait(false);
        if (changed is null)
            return (null, new ApiError("UnknownVersion", $"no version {version} of model {LogText.Sanitize(id)}"), 404);
        if (refused is not null)
            return (null, new ApiError("InvalidStateChange", refused), 409);
        await IdentityApi.AuditAsync(store, user, $"model.version.{to}", $"{id}@{version}", changed.Value.Before.State,
            $$"""{"state":"{{to}}","reason":{{Json(reason ?? "", FleetApiJsonContext.Default.String)}}}""", time, ct).ConfigureAwait(false);
        return (changed.Value.After, null, 200);
    }

    /// <summary>Attaches a validation report: it must be about one of the version's files; its verdict moves a draft.</summary>
    internal static (ModelVersion? Version, string? Error) WithValidation(ModelVersion version, string reportJson, string actor, DateTimeOffset now)
    {
        JsonElement report;
        try
        {
            report = JsonDocument.Parse(reportJson).RootElement.Clone();
        }
        catch (JsonException e)
        {
            return (null, $"the report is not JSON: {e.Message}");
        }
        string? Text(string name) => report.ValueKind == JsonValueKind.Object && report.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
        var verdict = Text("verdict");
        var candidate = Text("candidateSha256");
        var reference = Text("referenceSha256");
        if (verdict is not ("accepted" or "rejected") || candidate is null)
            return (null, "the report needs verdict (accepted or rejected) and candidateSha256, as edgefleet model validate --json writes them");
        var shas = version.Artifacts.Select(a => a.Sha256).ToHashSet(StringComparer.Ordinal);
        if (!shas.Contains(candidate))
            return (null, $"the report's candidate ({candidate[..Math.Min(12, candidate.Length)]}…) is not a file of this version");
        if (reference is not null && !shas.Contains(reference) && version.Artifacts.Any(a => a.Kind == ModelArtifact.Fp32Kind))
            return (null, $"the report's reference ({reference[..Math.Min(12, reference.Length)]}…) is not this version's fp32 file");
        var record = new ValidationRecord(now, actor, verdict, candidate, reference, report);
        var to = verdict == "accepted" ? ApprovalStates.Validated : ApprovalStates.Rejected;
        var moved = version.State == ApprovalStates.Draft || (version.State == ApprovalStates.Validated && to == ApprovalStates.Rejected);
        return (version with
        {
            Validations = [.. version.Validations, record],
            State = moved ? to : version.State,
            History = moved ? [.. version.History, new StateChange(version.State, to, actor, now, $"validation gate: {verdict}")] : version.History,
        }, null);
    }

    private static ModelCard? ParseCard(string json)
    {
        try
        {
            return JsonSerializer.Deserialize(json, FleetApiJsonContext.Default.ModelCard);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static async Task<string> ReadFieldAsync(Stream body, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int read;
        while ((read = await body.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > MaxFieldBytes)
                throw new InvalidDataException($"a form field is larger than {MaxFieldBytes} bytes");
            buffer.Write(chunk, 0, read);
        }
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static List<VersionSummary> Summaries(IReadOnlyList<ModelVersion> versions) =>
        [.. versions.Select(v => new VersionSummary(v.Version, v.State, v.CreatedAt, v.CreatedBy, v.Artifacts, (v.Validations.Count > 0 ? v.Validations[^1].Verdict : null)))];

    private static string Json<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) => JsonSerializer.Serialize(value, info);

    private static IResult BadVersion(string reason) => TypedResults.BadRequest(new ApiError("InvalidVersion", reason));

    private static IResult UnknownModel(string id) => TypedResults.NotFound(new ApiError("UnknownModel", $"no model {LogText.Sanitize(id)}"));

    private static IResult UnknownVersion(string id, long version) => TypedResults.NotFound(new ApiError("UnknownVersion", $"no version {version} of model {LogText.Sanitize(id)}"));
}
