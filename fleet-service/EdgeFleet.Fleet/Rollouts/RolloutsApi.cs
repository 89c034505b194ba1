using System.Security.Claims;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>The body of <c>POST /api/rollouts</c>.</summary>
public sealed record RolloutRequest
{
    /// <summary>Optional: generated when absent (1-64 of a-z, 0-9, '-', '_', '.').</summary>
    public string? Id { get; init; }

    public required string ModelId { get; init; }

    public required long Version { get; init; }

    public required RolloutTarget Target { get; init; }

    public required List<RolloutPhase> Phases { get; init; }

    public RolloutGates? Gates { get; init; }

    public string? OnGateFailure { get; init; }

    /// <summary>Devices fetch the release even past their daily byte budget (a security fix).</summary>
    public bool Urgent { get; init; }
}

public sealed record RolloutActionRequest(string? Reason);

/// <summary>Devices whose artifact came through the broker, devices waiting for their daily byte budget, and bytes deltas saved.</summary>
public sealed record RolloutDelivery(int ThroughBroker, int WaitingForBudget, long BytesSaved);

/// <summary>Progress of one phase: its size now, and how its devices stand.</summary>
/// <remarks>For a shadow phase, <see cref="Installed"/> counts the devices that ran the new version in shadow (including those that serve it since).</remarks>
/// <summary>
/// One phase's progress. <paramref name="Size"/> is the devices this phase adds (its share less the share of the
/// phase before it of the same kind), so the phases' sizes and progress add up to the rollout's; <see cref="Cumulative"/>
/// is the share of the target that has the new version once it has run.
/// </summary>
public sealed record PhaseView(int Phase, double? Percent, int? Count, int Size, int Assigned, int Installed, int Failed, int Pending,
    double SoakSeconds, int MinReporting)
{
    public bool Shadow { get; init; }

    public int Cumulative { get; init; }
}

/// <summary>A rollout as the API shows it: its record, phase progress and totals.</summary>
public sealed record RolloutView
{
    public required string Id { get; init; }

    public required string ModelId { get; init; }

    public required long Version { get; init; }

    public required string State { get; init; }

    public required int Phase { get; init; }

    public required int PhaseCount { get; init; }

    public required DateTimeOffset PhaseStartedAt { get; init; }

    public required RolloutTarget Target { get; init; }

    public required RolloutGates Gates { get; init; }

    public required string OnGateFailure { get; init; }

    public required int Eligible { get; init; }

    public required RolloutTally Tally { get; init; }

    public required List<PhaseView> Phases { get; init; }

    public required List<RolloutEvent> Events { get; init; }

    public Dictionary<string, long> Reverts { get; set; } = [];

    /// <summary>Every moved device (only on <c>GET /api/rollouts/{id}</c>).</summary>
    public List<RolloutDevice>? Devices { get; init; }

    /// <summary>How the moved devices' downloads went: through the broker, waiting for their byte budget, bytes deltas saved.</summary>
    public RolloutDelivery Delivery { get; init; } = new(0, 0, 0);

    public bool Urgent { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }
}

/// <summary><c>/api/rollouts</c>: create (operator; the version must be approved), list and show (viewer), and the operator actions.</summary>
public static class RolloutsApi
{
    public static IEndpointRouteBuilder MapRolloutsApi(this IEndpointRouteBuilder app)
    {
        var rollouts = app.MapGroup("/api/rollouts");
        rollouts.MapGet("", async (IFleetStore store, CancellationToken ct) =>
        {
            var list = await store.ListRolloutsAsync(ct).ConfigureAwait(false);
            return TypedResults.Ok(list.Select(r => View(r, withDevices: false)).ToList());
        }).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        rollouts.MapGet("/{id}", async Task<IResult> (string id, IFleetStore store, CancellationToken ct) =>
            await store.GetRolloutAsync(id, ct).ConfigureAwait(false) is { } r
                ? TypedResults.Ok(View(r, withDevices: true))
                : TypedResults.NotFound(new ApiError("UnknownRollout", $"no rollout {LogText.Sanitize(id)}"))).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        rollouts.MapPost("", CreateAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        rollouts.MapPost("/{id}/approve", async Task<IResult> (string id, RolloutActionRequest? body, ClaimsPrincipal user, IFleetStore store, RolloutSigner signer, TimeProvider time, CancellationToken ct) =>
        {
            var (rollout, error, status) = await ApproveDraftAsync(id, body?.Reason, user, store, signer, time, ct).ConfigureAwait(false);
            return rollout is not null ? TypedResults.Ok(View(rollout, withDevices: false)) : TypedResults.Json(error, FleetApiJsonContext.Default.ApiError, statusCode: status);
        }).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        foreach (var action in (string[])["pause", "resume", "abort", "rollback", "promote"])
        {
            rollouts.MapPost($"/{{id}}/{action}", async Task<IResult> (string id, RolloutActionRequest? body, ClaimsPrincipal user, RolloutEngine engine, IFleetStore store, TimeProvider time, CancellationToken ct) =>
            {
                var reason = body?.Reason;
                if (action is "rollback" or "abort" or "promote" && string.IsNullOrWhiteSpace(reason))
                    return TypedResults.BadRequest(new ApiError("ReasonRequired", $"{action} needs a reason"));
                var (rollout, refused) = await ActAsync(engine, store, id, action, IdentityApi.Actor(user), reason, time, ct).ConfigureAwait(false);
                if (rollout is null && refused is null)
                    return TypedResults.NotFound(new ApiError("UnknownRollout", $"no rollout {LogText.Sanitize(id)}"));
                if (refused is not null)
                    return TypedResults.Conflict(new ApiError("InvalidRolloutState", refused));
                return TypedResults.Ok(View(rollout!, withDevices: false));
            }).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        }
        return app;
    }

    private static async Task<IResult> CreateAsync(RolloutRequest body, ClaimsPrincipal user, IFleetStore store, RolloutSigner signer, TimeProvider time, CancellationToken ct)
    {
        var (rollout, error, status) = await CreateRolloutAsync(body, IdentityApi.Actor(user), store, signer, time, ct).ConfigureAwait(false);
        return rollout is not null
            ? TypedResults.Created($"/api/rollouts/{rollout.Id}", View(rollout, withDevices: false))
            : status == 500 ? TypedResults.Problem(statusCode: 500, title: "SigningFailed", detail: error!.Reason)
            : TypedResults.Json(error, FleetApiJsonContext.Default.ApiError, statusCode: status);
    }

    /// <summary>An operator's action on a rollout, audited with its state before and after (the API and the console both come here).</summary>
    public static async Task<(Rollout? Rollout, string? Refused)> ActAsync(RolloutEngine engine, IFleetStore store, string id, string action, string actor, string? reason, TimeProvider time, CancellationToken ct)
    {
        var before = await store.GetRolloutAsync(id, ct).ConfigureAwait(false);
        var (rollout, refused) = await engine.ActAsync(id, action, actor, reason, ct).ConfigureAwait(false);
        if (rollout is null || refused is not null)
            return (rollout, refused);
        await store.AppendAuditAsync(new Identity.AuditEntry
        {
            At = time.GetUtcNow(),
            Actor = actor,
            Action = $"rollout.{action}",
            Target = id,
            Before = $$"""{"state":"{{before?.State}}","phase":{{before?.Phase}}}""",
            After = $$"""{"state":"{{rollout.State}}","phase":{{rollout.Phase}},"reason":{{JsonSerializer.Serialize(reason ?? "", FleetApiJsonContext.Default.String)}}}""",
        }, ct).ConfigureAwait(false);
        return (rollout, null);
    }

    /// <summary>
    /// Checks, signs, stores and audits a new rollout (the API and the console both come here): the rollout, or
    /// the error with its HTTP status.
    /// </summary>
    /// <remarks>
    /// A <paramref name="draft"/> (a retrained version's proposed rollout) may be of a validated version and is not
    /// signed: <see cref="ApproveDraftAsync"/> approves the version, signs the release and starts it.
    /// </remarks>
    public static async Task<(Rollout? Rollout, ApiError? Error, int Status)> CreateRolloutAsync(RolloutRequest body, string actor, IFleetStore store, RolloutSigner signer, TimeProvider time, CancellationToken ct,
        bool draft = false)
    {
        var id = body.Id ?? $"{body.ModelId}-v{body.Version}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3))}";
        if (!EdgeFleet.Shared.Wire.DeviceId.IsValid(id))
            return (null, new ApiError("InvalidRolloutId", "rollout ids are 1-64 of a-z, 0-9, '-', '_', '.'"), 400);
        if (await store.GetModelVersionAsync(body.ModelId, body.Version, ct).ConfigureAwait(false) is not { } version)
            return (null, new ApiError("UnknownModelVersion", $"no model version {LogText.Sanitize(body.ModelId)} v{body.Version}"), 404);
        if (version.State != ApprovalStates.Approved && !(draft && version.State == ApprovalStates.Validated))
            return (null, new ApiError("NotApproved", $"{version.ModelId} v{version.Version} is {version.State}; only approved versions can be rolled out"), 409);
        if (!signer.Configured && !draft)
            return (null, new ApiError("NoSigningKeys", "the fleet has no signing keys: set Fleet:Signing:KeyDirectory to a directory made by `edgefleet keys init`"), 409);
        if (body.Target.Group is { } group && await store.GetGroupAsync(group, ct).ConfigureAwait(false) is null)
            return (null, new ApiError("UnknownGroup", $"no group {LogText.Sanitize(group)}"), 404);
        if (body.Target.Selector is { } selector && !TagSelector.TryParse(selector, out _, out var selectorError))
            return (null, new ApiError("InvalidSelector", selectorError ?? "unreadable selector"), 400);
        var now = time.GetUtcNow();
        var planned = new Rollout
        {
            Id = id,
            ModelId = body.ModelId,
            Version = body.Version,
            Target = body.Target,
            Phases = body.Phases,
            Gates = body.Gates ?? new RolloutGates(),
            OnGateFailure = body.OnGateFailure ?? "pause",
            Urgent = body.Urgent,
            State = draft ? RolloutStates.Draft : RolloutStates.Running,
            PhaseStartedAt = now,
            CreatedAt = now,
            CreatedBy = actor,
            Manifest = Unsigned,
            KeySet = Unsigned,
        };
        if (RolloutPlan.Check(planned) is { } problem)
            return (null, new ApiError("InvalidRollout", problem), 400);
        if (draft)
            return await StoreNewAsync(planned, actor, store, time, ct).ConfigureAwait(false);
        // The manifest names every hardware profile among the fleet's devices: one artifact serves them all.
        var profiles = await SignableProfilesAsync(store, ct).ConfigureAwait(false);
        if (profiles.Count == 0)
            return (null, new ApiError("NoDevices", "no device with a known hardware profile is registered"), 409);
        SignedRelease release;
        try
        {
            release = signer.Sign(version, version.Version, profiles, id, await DeltaBasesAsync(store, version.ModelId, ct).ConfigureAwait(false), planned.Urgent);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or ArgumentException or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            return (null, new ApiError("SigningFailed", e.Message), 500);
        }
        return await StoreNewAsync(planned with { Manifest = release.Manifest, KeySet = release.KeySet, Roots = release.Roots }, actor, store, time, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// The hardware profiles a release is signed for: those of registered devices, well-formed only. A record stored
    /// before profiles were checked at every entrance cannot make the signing of every later rollout fail; its
    /// device is simply not eligible until it reports a valid profile.
    /// </summary>
    /// <summary>The files devices run for this model now, most common first (up to 4): the bases a release offers deltas from.</summary>
    private static async Task<List<string>> DeltaBasesAsync(IFleetStore store, string modelId, CancellationToken ct) =>
        [.. (await store.ListDevicesAsync(ct).ConfigureAwait(false))
            .Select(d => d.ActiveModel).Where(m => m?.Name == modelId && m.Sha256 is not null).GroupBy(m => m!.Sha256!, StringComparer.Ordinal)
            .OrderByDescending(g => g.Count()).Take(4).Select(g => g.Key)];

    private static async Task<List<string>> SignableProfilesAsync(IFleetStore store, CancellationToken ct) =>
        SignableProfiles(await store.ListDevicesAsync(ct).ConfigureAwait(false));

    public static List<string> SignableProfiles(IEnumerable<Devices.DeviceRecord> devices) =>
        [.. devices.Select(d => d.HardwareProfile).Where(EdgeFleet.Shared.Wire.ProfileName.IsValid)
            .OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>What a draft holds in place of its signed documents.</summary>
    private static readonly JsonElement Unsigned = JsonDocument.Parse("null").RootElement.Clone();

    private static async Task<(Rollout? Rollout, ApiError? Error, int Status)> StoreNewAsync(Rollout rollout, string actor, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (!await store.CreateRolloutAsync(rollout, ct).ConfigureAwait(false))
            return (null, new ApiError("RolloutExists", $"rollout {rollout.Id} exists"), 409);
        await store.AppendAuditAsync(new Identity.AuditEntry
        {
            At = time.GetUtcNow(),
            Actor = actor,
            Action = rollout.State == RolloutStates.Draft ? "rollout.draft" : "rollout.create",
            Target = rollout.Id,
            After = $$"""{"modelId":{{JsonSerializer.Serialize(rollout.ModelId, FleetApiJsonContext.Default.String)}},"version":{{rollout.Version}},"phases":{{rollout.Phases.Count}},"state":"{{rollout.State}}"}""",
        }, ct).ConfigureAwait(false);
        return (rollout, null, 201);
    }

    /// <summary>
    /// An operator approves a draft rollout (the API and the console both come here): its version becomes approved
    /// if it is validated, the release is signed for the fleet's profiles, and the rollout starts; audited.
    /// </summary>
    public static async Task<(Rollout? Rollout, ApiError? Error, int Status)> ApproveDraftAsync(string id, string? reason, ClaimsPrincipal user, IFleetStore store, RolloutSigner signer,
        TimeProvider time, CancellationToken ct)
    {
        if (await store.GetRolloutAsync(id, ct).ConfigureAwait(false) is not { } rollout)
            return (null, new ApiError("UnknownRollout", $"no rollout {LogText.Sanitize(id)}"), 404);
        if (rollout.State != RolloutStates.Draft)
            return (null, new ApiError("InvalidRolloutState", $"a {rollout.State} rollout cannot be approved: only drafts are"), 409);
        if (!signer.Configured)
            return (null, new ApiError("NoSigningKeys", "the fleet has no signing keys: set Fleet:Signing:KeyDirectory to a directory made by `edgefleet keys init`"), 409);
        if (await store.GetModelVersionAsync(rollout.ModelId, rollout.Version, ct).ConfigureAwait(false) is not { } version)
            return (null, new ApiError("UnknownModelVersion", $"no model version {LogText.Sanitize(rollout.ModelId)} v{rollout.Version}"), 404);
        if (version.State == ApprovalStates.Validated)
        {
            var (approved, error, status) = await ModelsApi.MoveStateAsync(rollout.ModelId, rollout.Version, ApprovalStates.Approved, reason ?? $"approved with draft rollout {id}", user, store, time, ct).ConfigureAwait(false);
            if (approved is null)
                return (null, error, status);
            version = approved;
        }
        if (version.State != ApprovalStates.Approved)
            return (null, new ApiError("NotApproved", $"{version.ModelId} v{version.Version} is {version.State}; only approved versions can be rolled out"), 409);
        var profiles = await SignableProfilesAsync(store, ct).ConfigureAwait(false);
        if (profiles.Count == 0)
            return (null, new ApiError("NoDevices", "no device with a known hardware profile is registered"), 409);
        SignedRelease release;
        try
        {
            release = signer.Sign(version, version.Version, profiles, id, await DeltaBasesAsync(store, version.ModelId, ct).ConfigureAwait(false), rollout.Urgent);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or ArgumentException or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            return (null, new ApiError("SigningFailed", e.Message), 500);
        }
        var actor = IdentityApi.Actor(user);
        var now = time.GetUtcNow();
        var started = await store.UpdateRolloutAsync(id, r => r.State == RolloutStates.Draft
            ? r.With(new RolloutEvent(now, actor, "approve", 0, reason)) with
            {
                State = RolloutStates.Running,
                Manifest = release.Manifest,
                KeySet = release.KeySet,
                Roots = release.Roots,
                PhaseStartedAt = now,
                Revision = r.Revision + 1,
            }
            : null, ct).ConfigureAwait(false);
        if (started is not { } s)
            return (null, new ApiError("InvalidRolloutState", "the draft changed meanwhile (approved or aborted by someone else)"), 409);
        await IdentityApi.AuditAsync(store, user, "rollout.approve", id, $$"""{"state":"{{RolloutStates.Draft}}"}""",
            $$"""{"state":"{{s.After.State}}","reason":{{JsonSerializer.Serialize(reason ?? "", FleetApiJsonContext.Default.String)}}}""", time, ct).ConfigureAwait(false);
        return (s.After, null, 200);
    }

    /// <summary>The view: per-phase sizes from the target's size at the engine's last step, device outcomes by phase.</summary>
    public static RolloutView View(Rollout r, bool withDevices)
    {
        var eligible = Math.Max(r.Eligible, r.Devices.Count);
        // What each phase adds: its cumulative size less that of the phase of the same kind before it.
        var before = new Dictionary<bool, int> { [true] = 0, [false] = 0 };
        var adds = r.Phases.Select(p =>
        {
            var cumulative = p.Size(eligible);
            var add = Math.Max(0, cumulative - before[p.Shadow]);
            before[p.Shadow] = Math.Max(before[p.Shadow], cumulative);
            return (Add: add, Cumulative: cumulative);
        }).ToList();
        var phases = r.Phases.Select((p, i) =>
        {
            if (p.Shadow)
            {
                var shadowed = r.Devices.Where(d => d.ShadowPhase == i).ToList();
                return new PhaseView(i + 1, p.Percent, p.Count, adds[i].Add, shadowed.Count,
                    shadowed.Count(d => !d.Shadow || d.Status == RolloutDeviceStatus.Installed), shadowed.Count(d => d.Shadow && d.Status == RolloutDeviceStatus.Failed),
                    shadowed.Count(d => d.Shadow && d.Status == RolloutDeviceStatus.Pending), p.SoakSeconds, p.MinReporting)
                { Shadow = true, Cumulative = adds[i].Cumulative };
            }
            var mine = r.Devices.Where(d => d.Phase == i && !d.Shadow).ToList();
            return new PhaseView(i + 1, p.Percent, p.Count, adds[i].Add, mine.Count,
                mine.Count(d => d.Status == RolloutDeviceStatus.Installed), mine.Count(d => d.Status == RolloutDeviceStatus.Failed),
                mine.Count(d => d.Status == RolloutDeviceStatus.Pending), p.SoakSeconds, p.MinReporting)
            { Cumulative = adds[i].Cumulative };
        }).ToList();
        return new RolloutView
        {
            Id = r.Id,
            ModelId = r.ModelId,
            Version = r.Version,
            State = r.State,
            Phase = r.Phase + 1,
            PhaseCount = r.Phases.Count,
            PhaseStartedAt = r.PhaseStartedAt,
            Target = r.Target,
            Gates = r.Gates,
            OnGateFailure = r.OnGateFailure,
            Eligible = eligible,
            Tally = new RolloutTally(r.Devices.Count, r.Devices.Count(d => d.Status == RolloutDeviceStatus.Installed),
                r.Devices.Count(d => d.Status == RolloutDeviceStatus.Failed), r.Devices.Count(d => d.Status == RolloutDeviceStatus.Pending)),
            Phases = phases,
            Events = r.Events,
            Reverts = r.Reverts.ToDictionary(kv => kv.Key, kv => kv.Value.Version),
            Devices = withDevices ? r.Devices : null,
            Delivery = new RolloutDelivery(r.Devices.Count(d => d.Transport == EdgeFleet.Shared.Wire.OtaTransport.Mqtt),
                r.Devices.Count(d => d.Step == EdgeFleet.Shared.Wire.OtaState.WaitingForBudget), r.Devices.Sum(d => d.BytesSaved ?? 0)),
            Urgent = r.Urgent,
            CreatedAt = r.CreatedAt,
            CreatedBy = r.CreatedBy,
        };
    }
}
