using System.Security.Claims;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace EdgeFleet.Fleet.Retraining;

public sealed record JobRequest
{
    public string? ModelId { get; set; }

    public string? Reason { get; set; }
}

/// <summary>An executor's report: <c>running</c> (with a progress message, as often as it likes) or <c>failed</c>.</summary>
public sealed record JobStatusRequest
{
    public string? State { get; set; }

    public string? Message { get; set; }
}

/// <summary>Feedback: a label for hard examples, named by id, or all of one device's within the last hours.</summary>
public sealed record LabelRequest
{
    public string? Label { get; set; }

    public List<string> Ids { get; set; } = [];

    public string? Device { get; set; }

    public double? Hours { get; set; }
}

public sealed record LabelResult(int Labelled);

/// <summary>
/// <c>/api/retraining</c>: policies (viewer reads, operator sets), jobs (viewer reads, operator queues and cancels),
/// and the executor's side, by the job's token: its inputs and base model, status reports, and the output upload.
/// Hard examples and their labels (feedback) live under <c>/api/models/{id}/examples</c>.
/// </summary>
public static class RetrainingApi
{
    private const long MaxOutputBytes = 4 * OtaApi.MaxArtifactBytes;

    public static IEndpointRouteBuilder MapRetrainingApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/retraining");
        api.MapGet("/policies", async (IFleetStore store, CancellationToken ct) => TypedResults.Ok(await store.ListRetrainingPoliciesAsync(ct).ConfigureAwait(false)))
            .RequireAuthorization(ApiAuthentication.ViewerPolicy);
        api.MapPut("/policies/{model}", PutPolicyAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        api.MapDelete("/policies/{model}", async Task<IResult> (string model, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct) =>
        {
            if (!await store.DeleteRetrainingPolicyAsync(model, ct).ConfigureAwait(false))
                return TypedResults.NotFound(new ApiError("UnknownPolicy", $"{LogText.Sanitize(model)} has no retraining policy"));
            await IdentityApi.AuditAsync(store, user, "retraining.policy.delete", model, null, null, time, ct).ConfigureAwait(false);
            return TypedResults.NoContent();
        }).RequireAuthorization(ApiAuthentication.OperatorPolicy);

        api.MapGet("/jobs", async (string? model, int? limit, IFleetStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.ListRetrainingJobsAsync(model, Math.Clamp(limit ?? 100, 1, 1000), ct).ConfigureAwait(false)).Select(RetrainingInputs.Public).ToList()))
            .RequireAuthorization(ApiAuthentication.ViewerPolicy);
        api.MapGet("/jobs/{id}", async Task<IResult> (string id, IFleetStore store, CancellationToken ct) =>
            await store.GetRetrainingJobAsync(id, ct).ConfigureAwait(false) is { } job ? TypedResults.Ok(RetrainingInputs.Public(job)) : UnknownJob(id))
            .RequireAuthorization(ApiAuthentication.ViewerPolicy);
        api.MapPost("/jobs", async Task<IResult> (JobRequest body, ClaimsPrincipal user, RetrainingScheduler scheduler, CancellationToken ct) =>
        {
            var (job, error, status) = await QueueManualAsync(body.ModelId, body.Reason, IdentityApi.Actor(user), scheduler, ct).ConfigureAwait(false);
            return job is not null ? TypedResults.Created($"/api/retraining/jobs/{job.Id}", RetrainingInputs.Public(job)) : TypedResults.Json(error, FleetApiJsonContext.Default.ApiError, statusCode: status);
        }).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        api.MapPost("/jobs/{id}/cancel", async Task<IResult> (string id, ClaimsPrincipal user, IFleetStore store, RetrainingExecutors executors, TimeProvider time, CancellationToken ct) =>
        {
            var (job, error, status) = await CancelAsync(id, IdentityApi.Actor(user), store, executors, time, ct).ConfigureAwait(false);
            return job is not null ? TypedResults.Ok(RetrainingInputs.Public(job)) : TypedResults.Json(error, FleetApiJsonContext.Default.ApiError, statusCode: status);
        }).RequireAuthorization(ApiAuthentication.OperatorPolicy);

        api.MapGet("/jobs/{id}/inputs", async Task<IResult> (string id, ClaimsPrincipal user, IFleetStore store, CancellationToken ct) =>
            !MayRead(user, id) ? TypedResults.Forbid()
            : await store.GetRetrainingJobAsync(id, ct).ConfigureAwait(false) is { } job ? TypedResults.Ok(await RetrainingInputs.BuildAsync(store, job, ct).ConfigureAwait(false))
            : UnknownJob(id)).RequireAuthorization(ApiAuthentication.RetrainingReaderPolicy);
        api.MapGet("/jobs/{id}/base-model", async Task<IResult> (string id, ClaimsPrincipal user, IFleetStore store, ArtifactStore artifacts, CancellationToken ct) =>
        {
            if (!MayRead(user, id))
                return TypedResults.Forbid();
            if (await store.GetRetrainingJobAsync(id, ct).ConfigureAwait(false) is not { } job)
                return UnknownJob(id);
            var inputs = await RetrainingInputs.BuildAsync(store, job with { Snapshot = job.Snapshot with { HardExampleIds = [] } }, ct).ConfigureAwait(false);
            return inputs.BaseModel is { } a && artifacts.Find(a.Sha256) is { } path
                ? TypedResults.PhysicalFile(path, "application/octet-stream", a.FileName, enableRangeProcessing: true)
                : TypedResults.NotFound(new ApiError("NoBaseModel", $"v{job.BaseVersion} of {job.ModelId} has no stored file"));
        }).RequireAuthorization(ApiAuthentication.RetrainingReaderPolicy);
        api.MapPost("/jobs/{id}/status", ReportAsync).RequireAuthorization(ApiAuthentication.RetrainingJobPolicy);
        api.MapPost("/jobs/{id}/output", UploadAsync).RequireAuthorization(ApiAuthentication.RetrainingJobPolicy)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxOutputBytes));

        var examples = app.MapGroup("/api/models/{id}/examples");
        examples.MapGet("", async Task<IResult> (string id, string? device, double? hours, int? limit, IFleetStore store, TimeProvider time, CancellationToken ct) =>
        {
            if (await store.GetModelAsync(id, ct).ConfigureAwait(false) is null)
                return TypedResults.NotFound(new ApiError("UnknownModel", $"no model {LogText.Sanitize(id)}"));
            var now = time.GetUtcNow();
            var list = await store.ListHardExamplesAsync(id, now - TimeSpan.FromHours(Math.Clamp(hours ?? 24, 0.01, 24 * 365)), now + TimeSpan.FromMinutes(5), device,
                Math.Clamp(limit ?? 100, 1, 10_000), ct).ConfigureAwait(false);
            return TypedResults.Ok(list.Select(e => new InputExample(e.Id, e.DeviceId, e.Ts, e.Example.Shape, e.Example.Input, e.Example.Label, e.Example.Confidence, e.Label)).ToList());
        }).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        examples.MapPost("/label", LabelAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        return app;
    }

    /// <summary>An operator queues a job for a model with a policy (the API and the console both come here).</summary>
    public static async Task<(RetrainingJob? Job, ApiError? Error, int Status)> QueueManualAsync(string? modelId, string? reason, string actor, RetrainingScheduler scheduler, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(modelId))
            return (null, new ApiError("InvalidJob", "modelId is required"), 400);
        if (string.IsNullOrWhiteSpace(reason))
            return (null, new ApiError("ReasonRequired", "say why the model is retrained (reason)"), 400);
        var store = scheduler.Store;
        if ((await store.ListRetrainingPoliciesAsync(ct).ConfigureAwait(false)).FirstOrDefault(p => p.ModelId == modelId) is not { } policy)
            return (null, new ApiError("NoPolicy", $"{LogText.Sanitize(modelId)} has no retraining policy (it names the executor): PUT /api/retraining/policies/{LogText.Sanitize(modelId)}"), 404);
        var alerts = (await store.ListDriftAlertsAsync(activeOnly: true, int.MaxValue, ct).ConfigureAwait(false)).Where(a => a.Model == modelId).ToList();
        var (job, error) = await scheduler.QueueAsync(policy, new TriggerDecision("manual", LogText.Sanitize(reason), alerts, null), actor, ct).ConfigureAwait(false);
        return job is not null ? (job, null, 201) : (null, new ApiError("NotQueued", error ?? "not queued"), 409);
    }

    /// <summary>An operator cancels an open job; its process, if this instance runs it, is killed.</summary>
    public static async Task<(RetrainingJob? Job, ApiError? Error, int Status)> CancelAsync(string id, string actor, IFleetStore store, RetrainingExecutors executors, TimeProvider time, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var changed = await store.UpdateRetrainingJobAsync(id, j => j.Open ? j.Moved(RetrainingJobStates.Cancelled, now, $"cancelled by {actor}") : null, ct).ConfigureAwait(false);
        if (changed is not { } c)
        {
            return await store.GetRetrainingJobAsync(id, ct).ConfigureAwait(false) is { } job
                ? (null, new ApiError("InvalidJobState", $"the job is {job.State}: only open jobs can be cancelled"), 409)
                : (null, new ApiError("UnknownJob", $"no retraining job {LogText.Sanitize(id)}"), 404);
        }
        executors.Stop(id);
        await store.AppendAuditAsync(new AuditEntry { At = now, Actor = actor, Action = "retraining.job.cancel", Target = id, Before = $$"""{"state":"{{c.Before.State}}"}""", After = """{"state":"cancelled"}""" }, ct).ConfigureAwait(false);
        return (c.After, null, 200);
    }

    private static async Task<IResult> PutPolicyAsync(string model, RetrainingPolicy body, ClaimsPrincipal user, IFleetStore store, FleetOptions options, TimeProvider time, CancellationToken ct)
    {
        var policy = body with { ModelId = model, UpdatedAt = time.GetUtcNow(), UpdatedBy = IdentityApi.Actor(user) };
        if (policy.Problem() is { } problem)
            return TypedResults.BadRequest(new ApiError("InvalidPolicy", problem));
        if (await store.GetModelAsync(model, ct).ConfigureAwait(false) is null)
            return TypedResults.NotFound(new ApiError("UnknownModel", $"no model {LogText.Sanitize(model)}"));
        if (!options.Retraining.Executors.ContainsKey(policy.Executor))
        {
            var known = options.Retraining.Executors.Keys.Order(StringComparer.Ordinal).ToList();
            return TypedResults.BadRequest(new ApiError("UnknownExecutor",
                $"executor '{LogText.Sanitize(policy.Executor)}' is not configured; the fleet has {(known.Count == 0 ? "none (Fleet:Retraining:Executors)" : string.Join(", ", known))}"));
        }
        var plan = new Rollouts.Rollout
        {
            Id = "policy",
            ModelId = model,
            Version = 1,
            Target = policy.Target,
            Phases = policy.Phases,
            Gates = policy.Gates ?? new Rollouts.RolloutGates(),
            State = Rollouts.RolloutStates.Draft,
            PhaseStartedAt = default,
            CreatedAt = default,
            CreatedBy = "",
            Manifest = default,
            KeySet = default,
        };
        if (Rollouts.RolloutPlan.Check(plan) is { } rolloutProblem)
            return TypedResults.BadRequest(new ApiError("InvalidPolicy", $"the draft rollout: {rolloutProblem}"));
        await store.PutRetrainingPolicyAsync(policy, ct).ConfigureAwait(false);
        await IdentityApi.AuditAsync(store, user, "retraining.policy.set", model, null, JsonSerializer.Serialize(policy, FleetApiJsonContext.Default.RetrainingPolicy), time, ct).ConfigureAwait(false);
        return TypedResults.Ok(policy);
    }

    private static async Task<IResult> ReportAsync(string id, JobStatusRequest body, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (!MayRead(user, id))
            return TypedResults.Forbid();
        var message = LogText.Sanitize(body.Message ?? "");
        if (message.Length > 2000)
            message = message[..2000];
        var now = time.GetUtcNow();
        var changed = body.State switch
        {
            RetrainingJobStates.Running => await store.UpdateRetrainingJobAsync(id, j => j.State is RetrainingJobStates.Queued or RetrainingJobStates.Running
                ? j.Moved(RetrainingJobStates.Running, now, message.Length > 0 ? message : "running") : null, ct).ConfigureAwait(false),
            RetrainingJobStates.Failed => await store.UpdateRetrainingJobAsync(id, j => j.State is RetrainingJobStates.Queued or RetrainingJobStates.Running
                ? j.Moved(RetrainingJobStates.Failed, now, $"the executor reported failure: {message}") with { Error = $"the executor reported failure: {message}" } : null, ct).ConfigureAwait(false),
            _ => null,
        };
        if (body.State is not (RetrainingJobStates.Running or RetrainingJobStates.Failed))
            return TypedResults.BadRequest(new ApiError("InvalidStatus", "state is running or failed; success is reported by uploading the output (POST …/output)"));
        return changed is { } c ? TypedResults.Ok(RetrainingInputs.Public(c.After)) : TypedResults.Conflict(new ApiError("InvalidJobState", "the job is no longer queued or running"));
    }

    /// <summary>
    /// The executor's result as <c>multipart/form-data</c>: file <c>model</c> (FP32 ONNX), files <c>data</c> (held-out
    /// <c>.npy</c> samples, in order), optional files or fields <c>labels</c> (one class index per line), <c>card</c> and
    /// <c>result</c>. The job moves to processing and the pipeline runs in the background.
    /// </summary>
    private static async Task<IResult> UploadAsync(string id, HttpRequest request, ClaimsPrincipal user, IFleetStore store, FleetOptions options, RetrainingPipeline pipeline, CancellationToken ct)
    {
        if (!MayRead(user, id))
            return TypedResults.Forbid();
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type) || !type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase)
            || HeaderUtilities.RemoveQuotes(type.Boundary).Value is not { Length: > 0 } boundary)
            return BadOutput("the body must be multipart/form-data: model, data (one or more), and optionally labels, card, result");
        var dir = Path.GetFullPath(Path.Combine(options.Retraining.WorkPath, id, "upload-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4))));
        var data = Path.Combine(dir, RetrainingPipeline.DataDirectory);
        Directory.CreateDirectory(data);
        var samples = 0;
        var model = false;
        try
        {
            var reader = new MultipartReader(boundary, request.Body);
            while (await reader.ReadNextSectionAsync(ct).ConfigureAwait(false) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) || HeaderUtilities.RemoveQuotes(disposition.Name).Value is not { } name)
                    return BadOutput("a part has no content-disposition name");
                var path = name switch
                {
                    "model" => Path.Combine(dir, RetrainingPipeline.ModelFile),
                    "data" => Path.Combine(data, $"{samples++:D6}.npy"),
                    "labels" => Path.Combine(data, "labels.txt"),
                    "card" => Path.Combine(dir, RetrainingPipeline.CardFile),
                    "result" => Path.Combine(dir, RetrainingPipeline.ResultFile),
                    _ => null,
                };
                if (path is null)
                    return BadOutput($"part '{LogText.Sanitize(name)}' is not model, data, labels, card or result");
                model |= name == "model";
                await using var file = File.Create(path);
                await section.Body.CopyToAsync(file, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            return BadOutput($"the upload broke off: {e.Message}");
        }
        if (!model || samples == 0)
            return BadOutput("the output needs the model and at least one data sample");
        if (await store.GetRetrainingJobAsync(id, ct).ConfigureAwait(false) is not { Open: true } job || job.State == RetrainingJobStates.Processing)
            return TypedResults.Conflict(new ApiError("InvalidJobState", "the job is not waiting for output"));
        _ = Task.Run(() => pipeline.ProcessAsync(id, dir, CancellationToken.None), CancellationToken.None);
        return TypedResults.Accepted($"/api/retraining/jobs/{id}", RetrainingInputs.Public(job));
    }

    private static async Task<IResult> LabelAsync(string id, LabelRequest body, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(body.Label))
            return TypedResults.BadRequest(new ApiError("InvalidLabel", "label is required"));
        var versions = await store.ListModelVersionsAsync(id, ct).ConfigureAwait(false);
        if (versions.Count == 0)
            return TypedResults.NotFound(new ApiError("UnknownModel", $"no model {LogText.Sanitize(id)} with versions"));
        var labels = versions[0].Card.Labels;
        if (labels.Count > 0 && !labels.Contains(body.Label))
            return TypedResults.BadRequest(new ApiError("InvalidLabel", $"'{LogText.Sanitize(body.Label)}' is not one of the model's labels: {string.Join(", ", labels)}"));
        List<string> ids = [.. body.Ids];
        if (body.Device is { } device)
        {
            var now = time.GetUtcNow();
            var mine = await store.ListHardExamplesAsync(id, now - TimeSpan.FromHours(Math.Clamp(body.Hours ?? 24, 0.01, 24 * 365)), now + TimeSpan.FromMinutes(5), device, 100_000, ct).ConfigureAwait(false);
            ids.AddRange(mine.Select(e => e.Id));
        }
        if (ids.Count == 0)
            return TypedResults.BadRequest(new ApiError("NothingToLabel", "name hard examples by ids, or a device (and hours)"));
        // Only this model's examples are labelled.
        var ofModel = (await store.GetHardExamplesAsync(ids, ct).ConfigureAwait(false)).Where(e => e.Example.Model == id).Select(e => e.Id).ToList();
        var labelled = await store.LabelHardExamplesAsync(ofModel, body.Label, IdentityApi.Actor(user), time.GetUtcNow(), ct).ConfigureAwait(false);
        await IdentityApi.AuditAsync(store, user, "model.examples.label", id, null, $$"""{"label":{{JsonSerializer.Serialize(body.Label, FleetApiJsonContext.Default.String)}},"labelled":{{labelled}}}""", time, ct).ConfigureAwait(false);
        return TypedResults.Ok(new LabelResult(labelled));
    }

    /// <summary>Operators may read any job; a job's token only its own.</summary>
    private static bool MayRead(ClaimsPrincipal user, string id) => !user.IsInRole(ApiAuthentication.RetrainingJobRole) || user.Identity?.Name == "job:" + id;

    private static IResult UnknownJob(string id) => TypedResults.NotFound(new ApiError("UnknownJob", $"no retraining job {LogText.Sanitize(id)}"));

    private static IResult BadOutput(string reason) => TypedResults.BadRequest(new ApiError("InvalidOutput", reason));
}
