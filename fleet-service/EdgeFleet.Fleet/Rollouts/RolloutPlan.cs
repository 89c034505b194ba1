using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>
/// What one engine step decided for a rollout: devices to move (in shadow when <see cref="Shadow"/>), shadow
/// devices to make serve the new version (<see cref="Promote"/>), every moved device's outcome, a failed gate,
/// whether the phase is done.
/// </summary>
public sealed record RolloutStep(IReadOnlyList<DeviceRecord> Assign, IReadOnlyList<RolloutDevice> Updated, string? GateFailure, bool PhaseDone, RolloutTally Tally)
{
    public bool Shadow { get; init; }

    public IReadOnlyList<RolloutDevice> Promote { get; init; } = [];
}

/// <summary>Outcomes among the devices moved so far.</summary>
public sealed record RolloutTally(int Assigned, int Installed, int Failed, int Pending)
{
    public int Reporting => Installed + Failed;

    public double FailureRate => Reporting == 0 ? 0 : (double)Failed / Reporting;
}

/// <summary>
/// The rollout's decisions as pure functions of its record, the devices and the clock, so the engine only
/// carries them out (and tests can check them without a fleet).
/// </summary>
public static class RolloutPlan
{
    /// <summary>A device's place in the rollout's order: the first 8 bytes of SHA-256(rollout id, device id).</summary>
    public static ulong Rank(string rolloutId, string deviceId) =>
        BinaryPrimitives.ReadUInt64BigEndian(SHA256.HashData(Encoding.UTF8.GetBytes(rolloutId + "\n" + deviceId)));

    /// <summary>Eligible devices in the rollout's stable order.</summary>
    public static List<DeviceRecord> Order(string rolloutId, IEnumerable<DeviceRecord> eligible) =>
        [.. eligible.OrderBy(d => Rank(rolloutId, d.Id)).ThenBy(d => d.Id, StringComparer.Ordinal)];

    /// <summary>How a moved device stands with the rollout's version, from what it last reported.</summary>
    public static (string Status, string? Reason) Outcome(string modelId, long version, DeviceRecord? device)
    {
        if (device is null)
            return (RolloutDeviceStatus.Pending, "the device is no longer registered");
        var label = version.ToString(CultureInfo.InvariantCulture);
        if (device.ActiveModel is { } active && active.Name == modelId && active.Version == label && device.Ota is OtaState.Committed or OtaState.Idle)
            return (RolloutDeviceStatus.Installed, null);
        if (device.LastOta is { } ota && ota.ModelId == modelId && ota.Version == version && ota.State is OtaState.Rejected or OtaState.RolledBack)
            return (RolloutDeviceStatus.Failed, $"{(ota.State == OtaState.Rejected ? "rejected" : "rolled back")}: {(ota.Error is { } e ? EdgeFleet.Shared.Ota.OtaErrors.Name(e) : "?")}{(ota.Reason is { } r ? $" ({r})" : "")}");
        return (RolloutDeviceStatus.Pending, null);
    }

    /// <summary>How a device moved in shadow stands: running the version in shadow, refused it, or not yet reported.</summary>
    public static (string Status, string? Reason) ShadowOutcome(string modelId, long version, DeviceRecord? device)
    {
        if (device is null)
            return (RolloutDeviceStatus.Pending, "the device is no longer registered");
        var label = version.ToString(CultureInfo.InvariantCulture);
        if (device.ShadowModel is { } shadow && shadow.Name == modelId && shadow.Version == label)
            return (RolloutDeviceStatus.Installed, null);
        if (device.LastOta is { Shadow: true } ota && ota.ModelId == modelId && ota.Version == version && ota.State is OtaState.Rejected)
            return (RolloutDeviceStatus.Failed, $"shadow rejected: {(ota.Error is { } e ? EdgeFleet.Shared.Ota.OtaErrors.Name(e) : "?")}{(ota.Reason is { } r ? $" ({r})" : "")}");
        return (RolloutDeviceStatus.Pending, null);
    }

    /// <summary>
    /// What each phase will move, before the rollout runs (the creation form's preview, a draft awaiting approval):
    /// the devices in rank order for <paramref name="rolloutId"/>, each phase taking up to its cumulative size.
    /// </summary>
    public static List<(int Size, IReadOnlyList<string> Adds)> Preview(string rolloutId, IReadOnlyList<DeviceRecord> eligible,
        IReadOnlyList<RolloutPhase> phases)
    {
        var ordered = Order(rolloutId, eligible);
        var previous = 0;
        return [.. phases.Select(p =>
        {
            var size = p.Size(ordered.Count);
            IReadOnlyList<string> adds = [.. ordered.Skip(previous).Take(Math.Max(0, size - previous)).Select(d => d.Id)];
            previous = Math.Max(previous, size);
            return (size, adds);
        })];
    }

    /// <summary>
    /// One step of a running rollout: the devices the current phase adds (in rank order up to its size), every
    /// moved device's outcome, whether a gate failed (judged once enough devices reported), and whether the
    /// phase is done (soaked, enough reports, gates passed).
    /// </summary>
    public static RolloutStep Evaluate(Rollout rollout, IReadOnlyList<DeviceRecord> ordered, IReadOnlyDictionary<string, DeviceRecord> all, DateTimeOffset now)
    {
        var phase = rollout.Phases[rollout.Phase];
        var moved = rollout.Devices.Select(d => d.Id).ToHashSet(StringComparer.Ordinal);
        var size = phase.Size(ordered.Count);
        var assign = new List<DeviceRecord>();
        for (var i = 0; i < ordered.Count && moved.Count + assign.Count < size; i++)
        {
            if (!moved.Contains(ordered[i].Id))
                assign.Add(ordered[i]);
        }
        var updated = rollout.Devices.Select(d =>
        {
            if (d.Status is RolloutDeviceStatus.Reverting or RolloutDeviceStatus.Reverted)
                return d;
            var (status, reason) = d.Shadow
                ? ShadowOutcome(rollout.ModelId, rollout.Version, all.GetValueOrDefault(d.Id))
                : Outcome(rollout.ModelId, rollout.Version, all.GetValueOrDefault(d.Id));
            // A failure is final for the rollout (the agent does not retry a version it rejected or rolled back).
            var next = d.Status == RolloutDeviceStatus.Failed ? d : d with { Status = status, Reason = reason };
            return all.GetValueOrDefault(d.Id)?.LastOta is { } ota && ota.ModelId == rollout.ModelId && ota.Version == rollout.Version && ota.Shadow == d.Shadow
                ? next with { Step = ota.State, Transport = ota.Transport ?? next.Transport, BytesSaved = ota.BytesSaved ?? next.BytesSaved }
                : next;
        }).ToList();
        // Past the shadow phases, devices that ran the new version in shadow serve it (from this phase on).
        var promote = new List<RolloutDevice>();
        if (!phase.Shadow)
        {
            for (var i = 0; i < updated.Count; i++)
            {
                if (updated[i] is { Shadow: true } d && d.Status is RolloutDeviceStatus.Installed or RolloutDeviceStatus.Pending)
                {
                    updated[i] = d with { Shadow = false, Phase = rollout.Phase, AssignedAt = now, Status = RolloutDeviceStatus.Pending, Reason = null };
                    promote.Add(updated[i]);
                }
            }
        }
        var tally = new RolloutTally(updated.Count + assign.Count,
            updated.Count(d => d.Status == RolloutDeviceStatus.Installed),
            updated.Count(d => d.Status == RolloutDeviceStatus.Failed),
            updated.Count(d => d.Status == RolloutDeviceStatus.Pending) + assign.Count);
        var needed = Math.Min(Math.Max(1, phase.MinReporting), Math.Max(1, tally.Assigned));
        string? failure = null;
        if (tally.Reporting >= needed && tally.FailureRate > rollout.Gates.MaxFailureRate)
        {
            failure = string.Create(CultureInfo.InvariantCulture,
                $"install gate: {tally.Failed} of {tally.Reporting} reporting devices failed to install v{rollout.Version} ({tally.FailureRate:P1} > {rollout.Gates.MaxFailureRate:P1})");
        }
        var done = failure is null && assign.Count == 0 && promote.Count == 0 && tally.Reporting >= needed
            && now - rollout.PhaseStartedAt >= TimeSpan.FromSeconds(phase.SoakSeconds);
        return new RolloutStep(assign, updated, failure, done, tally) { Shadow = phase.Shadow, Promote = promote };
    }

    /// <summary>Checks a new rollout's definition; null when it is usable, else why not.</summary>
    public static string? Check(Rollout r)
    {
        if (r.Phases.Count is 0 or > 20)
            return "a rollout needs 1 to 20 phases";
        for (var i = 0; i < r.Phases.Count; i++)
        {
            var p = r.Phases[i];
            if ((p.Percent is null) == (p.Count is null))
                return $"phase {i + 1}: give a percent or a count";
            if (p.Percent is { } pct && pct is <= 0 or > 100)
                return $"phase {i + 1}: percent must be within (0, 100]";
            if (p.Count is < 1)
                return $"phase {i + 1}: count must be at least 1";
            if (p.SoakSeconds < 0 || p.MinReporting < 0)
                return $"phase {i + 1}: soakSeconds and minReporting cannot be negative";
        }
        if (r.Phases[^1] is { Percent: not 100 } and { Count: null })
            return "the last phase must reach the whole target (percent 100)";
        if (r.Phases[^1].Shadow)
            return "the last phase cannot be a shadow phase: it must serve the new version";
        if (r.Phases.SkipWhile(p => p.Shadow).Any(p => p.Shadow))
            return "shadow phases come first, before the phases that serve the new version";
        if (r.Gates.MaxFailureRate is < 0 or > 1)
            return "gates.maxFailureRate must be within [0, 1]";
        if (r.Gates.Quality.MinShadowAgreement is < 0 or > 1)
            return "gates.quality.minShadowAgreement must be within [0, 1]";
        if (r.OnGateFailure is not ("pause" or "rollback"))
            return "onGateFailure is pause or rollback";
        if (r.Target.Group is null && r.Target.Selector is null && r.Target.Devices.Count == 0)
            return "the target needs a group, a selector or devices";
        if (r.Target.Devices.FirstOrDefault(d => !DeviceId.IsValid(d)) is { } bad)
            return $"target device '{bad}' is not a valid device id";
        return null;
    }
}
