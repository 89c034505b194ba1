using System.Globalization;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>
/// Drives every active rollout, on the leader instance only, once a tick: moves the devices the current phase
/// adds (their desired state becomes the signed release), reads each moved device's outcome, judges the
/// gates, and starts the next phase or pauses or rolls back. Everything it knows lives in the rollout's
/// record, so a restarted fleet (or a new leader) carries on where the last step left it. Operators act
/// through <see cref="ActAsync"/>; a revision number keeps an engine step from overwriting their action.
/// </summary>
public sealed partial class RolloutEngine(IFleetStore store, FleetMqttClient mqtt, RolloutSigner signer, Scale.LeaderElection leader,
    FleetOptions options, TimeProvider time, ILogger<RolloutEngine> log) : Scale.LeaderLoop
{
    public const string System = "rollout-engine";

    /// <summary>Engine steps and operator actions of this instance take turns (a rollback signs and registers: not to be done twice).</summary>
    private readonly SemaphoreSlim _turn = new(1, 1);

    protected override Scale.LeaderElection Leader => leader;

    protected override TimeProvider Clock => time;

    protected override TimeSpan Period => TimeSpan.FromSeconds(options.RolloutTickSeconds);

    protected override Task RunOnceAsync(CancellationToken ct) => TickAsync(ct);

    protected override void OnFailed(string reason) => Log.TickFailed(log, reason);

    /// <summary>One pass over every rollout that still has work.</summary>
    public async Task TickAsync(CancellationToken ct)
    {
        await _turn.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await StepAllAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    private async Task StepAllAsync(CancellationToken ct)
    {
        var rollouts = (await store.ListRolloutsAsync(ct).ConfigureAwait(false))
            .Where(r => r.State is RolloutStates.Running or RolloutStates.Paused || r.Devices.Any(d => d.Status is RolloutDeviceStatus.Reverting or RolloutDeviceStatus.Pending)).ToList();
        if (rollouts.Count == 0)
            return;
        var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
        var byId = devices.ToDictionary(d => d.Id, StringComparer.Ordinal);
        foreach (var rollout in rollouts)
            await StepAsync(rollout, devices, byId, ct).ConfigureAwait(false);
    }

    private async Task StepAsync(Rollout rollout, IReadOnlyList<DeviceRecord> devices, Dictionary<string, DeviceRecord> byId, CancellationToken ct)
    {
        // Save, then publish: the desired states this step decides go out only once its revision-checked save holds.
        var outbox = new Outbox();
        if (await StepCoreAsync(rollout, devices, byId, outbox, ct).ConfigureAwait(false))
            await outbox.SendAsync(store, mqtt, ct).ConfigureAwait(false);
        else if (outbox.Count > 0)
            Log.StepNotSaved(log, rollout.Id, outbox.Count);
    }

    /// <summary>One step of one rollout; false when its save was refused (the rollout changed meanwhile).</summary>
    private async Task<bool> StepCoreAsync(Rollout rollout, IReadOnlyList<DeviceRecord> devices, Dictionary<string, DeviceRecord> byId, Outbox outbox, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        if (rollout.State == RolloutStates.RolledBack)
        {
            return await SaveAsync(rollout, rollout with { Devices = [.. rollout.Devices.Select(d => RevertOutcome(rollout, d, byId.GetValueOrDefault(d.Id)))] }, ct).ConfigureAwait(false);
        }
        var eligible = await EligibleAsync(rollout, devices, ct).ConfigureAwait(false);
        var ordered = RolloutPlan.Order(rollout.Id, eligible);
        var step = RolloutPlan.Evaluate(rollout, ordered, byId, now);
        var next = rollout with { Devices = [.. step.Updated], Eligible = eligible.Count };
        if (rollout.State != RolloutStates.Running)
        {
            // Paused, or finished with devices that were offline: their outcomes still come in and are kept.
            return await SaveAsync(rollout, next, ct).ConfigureAwait(false);
        }
        var failure = step.GateFailure;
        QualityVerdict? quality = null;
        var phaseDone = step.PhaseDone;
        if (failure is null && phaseDone && rollout.Gates.Quality.Enabled)
        {
            quality = step.Shadow
                ? await JudgeShadowAsync(rollout, step.Updated, ct).ConfigureAwait(false)
                : await JudgeQualityAsync(rollout, step.Updated, ordered, ct).ConfigureAwait(false);
            failure = quality?.Failure;
            // A shadow phase exists to be judged: it waits for enough compared inputs rather than pass unjudged.
            phaseDone = !(step.Shadow && quality is { Judged: false });
        }
        if (failure is not null)
        {
            Log.GateFailed(log, rollout.Id, rollout.Phase + 1, failure);
            next = next.With(new RolloutEvent(now, System, "gate-failed", rollout.Phase, failure));
            next = rollout.OnGateFailure == "rollback"
                ? await RollBackAsync(next, System, failure, outbox, ct).ConfigureAwait(false)
                : next with { State = RolloutStates.Paused };
            return await SaveAsync(rollout, next, ct).ConfigureAwait(false);
        }
        foreach (var device in step.Promote)
            SetDesired(outbox, device.Id, rollout.Manifest, rollout.KeySet, rollout.Roots);
        if (step.Assign.Count > 0)
        {
            foreach (var device in step.Assign)
            {
                if (step.Shadow)
                    await SetShadowAsync(outbox, device.Id, rollout, ct).ConfigureAwait(false);
                else
                    SetDesired(outbox, device.Id, rollout.Manifest, rollout.KeySet, rollout.Roots);
            }
            next = next with
            {
                Devices =
                [
                    .. next.Devices,
                    .. step.Assign.Select(d => new RolloutDevice
                    {
                        Id = d.Id,
                        Phase = rollout.Phase,
                        AssignedAt = now,
                        Previous = d.ActiveModel,
                        Shadow = step.Shadow,
                        ShadowPhase = step.Shadow ? rollout.Phase : null,
                    }),
                ],
            };
        }
        if (phaseDone)
        {
            var summary = string.Create(CultureInfo.InvariantCulture, $"{step.Tally.Installed} installed, {step.Tally.Failed} failed, {step.Tally.Pending} pending")
                + (quality is { } q ? $"; {q.Summary}" : rollout.Gates.Quality.Enabled ? "; quality not judged: no device is left on the old version to compare with" : "");
            next = rollout.Phase + 1 < rollout.Phases.Count
                ? next.With(new RolloutEvent(now, System, "phase-started", rollout.Phase + 1, $"phase {rollout.Phase + 1} passed its gates ({summary})")) with { Phase = rollout.Phase + 1, PhaseStartedAt = now }
                : next.With(new RolloutEvent(now, System, "completed", rollout.Phase, summary)) with { State = RolloutStates.Completed };
            Log.PhaseDone(log, rollout.Id, rollout.Phase + 1, summary);
        }
        return await SaveAsync(rollout, next, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// The quality gates for a phase that is otherwise done: the installed devices' recent records of the new
    /// version against the not-yet-moved devices' records of other versions of the model; null when no device
    /// is left to compare with (the last phase).
    /// </summary>
    private async Task<QualityVerdict?> JudgeQualityAsync(Rollout rollout, IReadOnlyList<RolloutDevice> moved, IReadOnlyList<DeviceRecord> ordered, CancellationToken ct)
    {
        var gates = rollout.Gates.Quality;
        var movedIds = moved.Select(d => d.Id).ToHashSet(StringComparer.Ordinal);
        var control = ordered.Where(d => !movedIds.Contains(d.Id)).Take(gates.DevicesPerGroup).Select(d => d.Id).ToList();
        if (control.Count == 0)
            return null;
        var treatment = moved.Where(d => d.Status == RolloutDeviceStatus.Installed).Take(gates.DevicesPerGroup).Select(d => d.Id).ToList();
        var label = rollout.Version.ToString(CultureInfo.InvariantCulture);
        var treatedRecords = await RecentAsync(treatment, gates.RecordsPerDevice, ct).ConfigureAwait(false);
        var treated = QualityReading.From(treatedRecords.SelectMany(r => r), (m, v) => m == rollout.ModelId && v == label)
            with
        { FallbackRate = QualityReading.FallbackShare(treatedRecords, rollout.ModelId, label) };
        var untreated = QualityReading.From((await RecentAsync(control, gates.RecordsPerDevice, ct).ConfigureAwait(false)).SelectMany(r => r), (m, v) => m == rollout.ModelId && v != label);
        return QualityVerdict.Judge(treated, untreated, gates);
    }

    /// <summary>
    /// The quality gates of a shadow phase: on the devices running the new version in shadow, the shadow's results
    /// against the served model's on the same inputs (<see cref="ShadowWindow"/> records), paired per device.
    /// </summary>
    private async Task<QualityVerdict> JudgeShadowAsync(Rollout rollout, IReadOnlyList<RolloutDevice> moved, CancellationToken ct)
    {
        var gates = rollout.Gates.Quality;
        var shadowing = moved.Where(d => d.Shadow && d.Status == RolloutDeviceStatus.Installed).Take(gates.DevicesPerGroup).Select(d => d.Id).ToList();
        var records = await RecentAsync(shadowing, gates.RecordsPerDevice, ct).ConfigureAwait(false);
        return ShadowReading.From(records.SelectMany(r => r), rollout.ModelId, rollout.Version.ToString(CultureInfo.InvariantCulture)).Judge(gates);
    }

    private async Task<List<IReadOnlyList<TelemetryRecord>>> RecentAsync(IReadOnlyList<string> devices, int perDevice, CancellationToken ct)
    {
        var records = new List<IReadOnlyList<TelemetryRecord>>();
        foreach (var id in devices)
            records.Add(await store.GetRecentTelemetryAsync(id, perDevice, ct).ConfigureAwait(false));
        return records;
    }

    /// <summary>Devices the rollout may reach now: in its target, not revoked, on a hardware profile its manifest has an artifact for.</summary>
    private Task<List<DeviceRecord>> EligibleAsync(Rollout rollout, IReadOnlyList<DeviceRecord> devices, CancellationToken ct) =>
        EligibleAsync(store, rollout.Target, rollout.Manifest.GetProperty("signed").GetProperty("artifacts").EnumerateObject().Select(p => p.Name).ToHashSet(StringComparer.Ordinal), devices, ct);

    /// <summary>
    /// The devices of <paramref name="target"/> (group, selector and explicit devices: all that are given must
    /// hold), not revoked, on one of <paramref name="profiles"/> (null: any known profile). The console's preview uses it too.
    /// </summary>
    public static async Task<List<DeviceRecord>> EligibleAsync(IFleetStore store, RolloutTarget target, IReadOnlySet<string>? profiles, IReadOnlyList<DeviceRecord> devices, CancellationToken ct)
    {
        Func<DeviceRecord, bool> inGroup = _ => true;
        if (target.Group is { } name)
        {
            var group = await store.GetGroupAsync(name, ct).ConfigureAwait(false);
            inGroup = group is null ? _ => false : group.Membership();
        }
        TagSelector? selector = null;
        if (target.Selector is { } text && !TagSelector.TryParse(text, out selector, out _))
            return [];
        var explicitDevices = target.Devices.Count > 0 ? target.Devices.ToHashSet(StringComparer.Ordinal) : null;
        return [.. devices.Where(d => d.RevokedAt is null && d.HardwareProfile is { } p && (profiles is null || profiles.Contains(p)) && inGroup(d)
            && (selector is null || selector.Matches(d.Tags)) && (explicitDevices is null || explicitDevices.Contains(d.Id)))];
    }

    private static void SetDesired(Outbox outbox, string deviceId, System.Text.Json.JsonElement? manifest, System.Text.Json.JsonElement keySet,
        List<System.Text.Json.JsonElement> roots, System.Text.Json.JsonElement? shadow = null) =>
        outbox.Add(deviceId, WireReader.Write(new DesiredState { DeviceId = deviceId, Manifest = manifest, KeySet = keySet, Roots = roots, Shadow = shadow },
            WireJsonContext.Default.DesiredState));

    /// <summary>
    /// The device's desired served model as it stands (when it was signed under the rollout's key set: the one
    /// message carries one key set), with the rollout's version to run in shadow beside it, or with no shadow.
    /// </summary>
    private async Task SetShadowAsync(Outbox outbox, string deviceId, Rollout rollout, CancellationToken ct, bool stop = false)
    {
        System.Text.Json.JsonElement? served = null;
        if (await store.GetDesiredAsync(deviceId, ct).ConfigureAwait(false) is { } payload
            && WireReader.Read(payload, WireJsonContext.Default.DesiredState, deviceId) is { Ok: true } current
            && current.Message!.Manifest is { } manifest && current.Message.KeySet.GetRawText() == rollout.KeySet.GetRawText())
            served = manifest;
        SetDesired(outbox, deviceId, served, rollout.KeySet, rollout.Roots, stop ? null : rollout.Manifest);
    }

    /// <summary>
    /// Writes the step when it changed anything, unless the rollout changed meanwhile (another instance's
    /// operator action: the next tick starts from theirs). False when the save was refused.
    /// </summary>
    private async Task<bool> SaveAsync(Rollout before, Rollout after, CancellationToken ct)
    {
        if (Json(before) == Json(after))
            return true;
        return await store.UpdateRolloutAsync(before.Id, current => current.Revision == before.Revision ? after with { Revision = before.Revision + 1 } : null, ct)
            .ConfigureAwait(false) is not null;
    }

    private static string Json(Rollout r) => global::System.Text.Json.JsonSerializer.Serialize(r, Storage.FleetStoreJsonContext.Default.Rollout);

    /// <summary>
    /// Makes each moved device's previous model desired again. Devices refuse a version at or below one they
    /// installed, so each previous version is released again under a new registry version (a copy of it,
    /// approved, its history saying why), signed, and sent to the devices that came from it.
    /// </summary>
    private async Task<Rollout> RollBackAsync(Rollout rollout, string by, string reason, Outbox outbox, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var reverts = new Dictionary<string, RevertRelease>(rollout.Reverts, StringComparer.Ordinal);
        var devices = new List<RolloutDevice>();
        var profiles = rollout.Manifest.GetProperty("signed").GetProperty("artifacts").EnumerateObject().Select(p => p.Name).ToList();
        foreach (var device in rollout.Devices)
        {
            if (device.Shadow)
            {
                // It never served the new version: stopping the shadow is the whole rollback.
                await SetShadowAsync(outbox, device.Id, rollout, ct, stop: true).ConfigureAwait(false);
                devices.Add(device with { Status = RolloutDeviceStatus.Reverted, Reason = "shadow stopped" });
                continue;
            }
            if (device.Previous is not { } previous || (previous.Name == rollout.ModelId && previous.Version == rollout.Version.ToString(CultureInfo.InvariantCulture)))
            {
                devices.Add(device);
                continue;
            }
            var key = $"{previous.Name}@{previous.Version}";
            if (!reverts.TryGetValue(key, out var release))
            {
                if (!long.TryParse(previous.Version, CultureInfo.InvariantCulture, out var number)
                    || await store.GetModelVersionAsync(previous.Name, number, ct).ConfigureAwait(false) is not { } old)
                {
                    devices.Add(device with { Reason = $"cannot roll back: its previous model {previous.Name} v{previous.Version} is not in the registry" });
                    continue;
                }
                var again = await ReleaseAgainAsync(old, rollout.Id, by, reason, ct).ConfigureAwait(false);
                var signed = signer.Sign(again, again.Version, profiles, rollout.Id);
                release = new RevertRelease(again.Version, signed.Manifest);
                reverts[key] = release;
                rollout = rollout with { KeySet = signed.KeySet, Roots = signed.Roots };
            }
            SetDesired(outbox, device.Id, release.Manifest, rollout.KeySet, rollout.Roots);
            devices.Add(device with { Status = RolloutDeviceStatus.Reverting, Reason = $"back to {previous.Name} v{previous.Version} as v{release.Version}" });
        }
        Log.RolledBack(log, rollout.Id, by, reason);
        return rollout.With(new RolloutEvent(now, by, "rolled-back", rollout.Phase, reason)) with
        {
            State = RolloutStates.RolledBack,
            Reverts = reverts,
            Devices = devices,
        };
    }

    /// <summary>Registers <paramref name="old"/> again as the model's next version, approved.</summary>
    private async Task<ModelVersion> ReleaseAgainAsync(ModelVersion old, string rolloutId, string by, string reason, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var latest = (await store.ListModelVersionsAsync(old.ModelId, ct).ConfigureAwait(false)).Max(v => v.Version);
        while (true)
        {
            var again = old with
            {
                Version = latest + 1,
                State = ApprovalStates.Approved,
                CreatedAt = now,
                CreatedBy = by,
                History = [.. old.History, new StateChange(old.State, ApprovalStates.Approved, by, now, $"v{old.Version} released again as v{latest + 1} to roll back rollout {rolloutId}: {reason}")],
            };
            var (added, current) = await store.AddModelVersionAsync(again, ct).ConfigureAwait(false);
            if (added)
                return again;
            latest = current;
        }
    }

    private static RolloutDevice RevertOutcome(Rollout rollout, RolloutDevice device, DeviceRecord? record)
    {
        if (device.Status != RolloutDeviceStatus.Reverting || device.Previous is not { } previous
            || !rollout.Reverts.TryGetValue($"{previous.Name}@{previous.Version}", out var release) || record?.ActiveModel is not { } active)
            return device;
        if (active.Name == previous.Name && active.Version == release.Version.ToString(CultureInfo.InvariantCulture))
            return device with { Status = RolloutDeviceStatus.Reverted };
        return record.LastOta is { } ota && ota.ModelId == previous.Name && ota.Version == release.Version && ota.State is OtaState.Rejected or OtaState.RolledBack
            ? device with { Status = RolloutDeviceStatus.Failed, Reason = $"the rollback to v{release.Version} failed: {(ota.Error is { } e ? EdgeFleet.Shared.Ota.OtaErrors.Name(e) : "?")}" }
            : device;
    }

    /// <summary>An operator's action: pause, resume, abort, rollback or promote; null when the rollout does not exist, else the result or why it was refused.</summary>
    public async Task<(Rollout? Rollout, string? Refused)> ActAsync(string id, string action, string by, string? reason, CancellationToken ct)
    {
        await _turn.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return await ActInTurnAsync(id, action, by, reason, ct).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// Whether an operator's action applies to a rollout in this state (phase: 0-based): the one rule the engine
    /// enforces and the console uses to offer only the actions that can work.
    /// </summary>
    public static bool Allows(string state, int phase, int phaseCount, string action) => (action, state) switch
    {
        ("pause", RolloutStates.Running) => true,
        ("resume", RolloutStates.Paused) => true,
        ("abort", RolloutStates.Running or RolloutStates.Paused or RolloutStates.Draft) => true,
        ("promote", RolloutStates.Running or RolloutStates.Paused) => phase + 1 < phaseCount,
        ("rollback", not (RolloutStates.RolledBack or RolloutStates.Draft)) => true,
        ("approve", RolloutStates.Draft) => true,
        _ => false,
    };

    private async Task<(Rollout? Rollout, string? Refused)> ActInTurnAsync(string id, string action, string by, string? reason, CancellationToken ct)
    {
        for (var attempt = 0; attempt < 5; attempt++)
        {
            if (await store.GetRolloutAsync(id, ct).ConfigureAwait(false) is not { } rollout)
                return (null, null);
            var now = time.GetUtcNow();
            var e = new RolloutEvent(now, by, action, rollout.Phase, reason);
            var outbox = new Outbox();
            Rollout? next = !Allows(rollout.State, rollout.Phase, rollout.Phases.Count, action) ? null : action switch
            {
                "pause" => rollout.With(e) with { State = RolloutStates.Paused },
                "resume" => rollout.With(e) with { State = RolloutStates.Running },
                "abort" => await StopShadowsAsync(rollout.With(e) with { State = RolloutStates.Aborted }, outbox, ct).ConfigureAwait(false),
                "promote" => rollout.With(e) with { Phase = rollout.Phase + 1, PhaseStartedAt = now },
                "rollback" => await RollBackAsync(rollout, by, reason ?? "operator rollback", outbox, ct).ConfigureAwait(false),
                _ => null, // approve goes through RolloutsApi.ApproveDraftAsync (it signs the release)
            };
            if (next is null)
            {
                return (rollout, action == "promote" && rollout.Phase + 1 >= rollout.Phases.Count && !RolloutStates.IsFinal(rollout.State)
                    ? "the rollout is in its last phase: nothing to promote to"
                    : $"a {rollout.State} rollout cannot be {Past(action)}");
            }
            var saved = await store.UpdateRolloutAsync(id, current => current.Revision == rollout.Revision ? next with { Revision = rollout.Revision + 1 } : null, ct).ConfigureAwait(false);
            if (saved is { } s)
            {
                await outbox.SendAsync(store, mqtt, ct).ConfigureAwait(false);
                return (s.After, null);
            }
        }
        return (null, "the rollout kept changing; try again");
    }

    /// <summary>An aborted rollout leaves what devices serve as it is, but stops the shadows it started (they cost the devices time).</summary>
    private async Task<Rollout> StopShadowsAsync(Rollout rollout, Outbox outbox, CancellationToken ct)
    {
        var devices = new List<RolloutDevice>(rollout.Devices.Count);
        foreach (var device in rollout.Devices)
        {
            if (!device.Shadow)
            {
                devices.Add(device);
                continue;
            }
            await SetShadowAsync(outbox, device.Id, rollout, ct, stop: true).ConfigureAwait(false);
            devices.Add(device with { Status = RolloutDeviceStatus.Reverted, Reason = "shadow stopped" });
        }
        return rollout with { Devices = devices };
    }

    private static string Past(string action) => action switch
    {
        "pause" => "paused",
        "resume" => "resumed",
        "abort" => "aborted",
        "promote" => "promoted",
        _ => "rolled back",
    };

    private static partial class Log
    {
        [LoggerMessage(7001, LogLevel.Warning, "Rollout {Rollout} phase {Phase}: {Failure}")]
        public static partial void GateFailed(ILogger logger, string rollout, int phase, string failure);

        [LoggerMessage(7002, LogLevel.Information, "Rollout {Rollout} phase {Phase} done: {Summary}")]
        public static partial void PhaseDone(ILogger logger, string rollout, int phase, string summary);

        [LoggerMessage(7003, LogLevel.Warning, "Rollout {Rollout} rolled back by {By}: {Reason}")]
        public static partial void RolledBack(ILogger logger, string rollout, string by, string reason);

        [LoggerMessage(7005, LogLevel.Information, "Rollout {Rollout} changed during its step (an operator's action): its {Messages} desired states were not sent; the next tick starts from the change")]
        public static partial void StepNotSaved(ILogger logger, string rollout, int messages);

        [LoggerMessage(7004, LogLevel.Warning, "Rollout step failed: {Reason}")]
        public static partial void TickFailed(ILogger logger, string reason);
    }
}
