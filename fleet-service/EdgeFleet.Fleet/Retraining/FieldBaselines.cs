using System.Globalization;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Retraining;

/// <summary>
/// The drift baselines of a retrained version. A retraining answers a drift: the model was retrained so that the
/// field as it now is (pump-01's new sensor) gets the answers the old field got. So a retrained version whose
/// executor kept the base version's baselines is judged:
/// <list type="bullet">
/// <item>on its <b>inputs</b> against the field it was retrained for: the base version's sketches from the devices
/// its rollout will reach, merged from the start of the drift that queued the job (the earliest alert's first
/// drifting window; for a job not queued by drift, the job's window) to the job's queuing, on the base's bins;</item>
/// <item>on its <b>outputs</b> (confidence, class probabilities) against its own first
/// <see cref="ReferenceWindows"/> windows in the field: its answers on the field cannot be known before it runs
/// there (the fleet holds sketches of the field's inputs, not the inputs), and the base version's answers on its
/// old data are not what it was made to give. Until then they are not judged; its inputs are.</item>
/// </list>
/// Without it, the new version would be judged against data it was not made for, and the fleet would stay red
/// after a successful retraining. An executor that writes its own baselines into <c>card.json</c> is left alone, and
/// so is an input feature with too few field values (it keeps the base's baseline).
/// </summary>
public static class FieldBaselines
{
    /// <summary>Field values an input feature needs before its baseline is replaced.</summary>
    public const long MinValues = 200;

    /// <summary>The version's own first windows that make the reference of its output features.</summary>
    public const int ReferenceWindows = 3;

    public static async Task<(ModelCard Card, string? Note)> RebuildAsync(IFleetStore store, RetrainingJob job, ModelVersion baseVersion,
        ModelCard card, RolloutTarget? target, CancellationToken ct)
    {
        if (!SameBaselines(card.FeatureBaselines, baseVersion.Card.FeatureBaselines) || job.Snapshot is not { } snapshot)
            return (card, null);
        var from = snapshot.Alerts.Count > 0 ? snapshot.Alerts.Min(a => a.Since) : snapshot.From;
        var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
        var reach = (await RolloutEngine.EligibleAsync(store, target ?? new RolloutTarget(), null, devices, ct).ConfigureAwait(false))
            .Select(d => d.Id).ToHashSet(StringComparer.Ordinal);
        var baseLabel = baseVersion.Version.ToString(CultureInfo.InvariantCulture);
        var sketches = (await store.GetSketchesAsync(job.ModelId, baseLabel, from, snapshot.To, ct).ConfigureAwait(false))
            .Where(s => reach.Contains(s.DeviceId)).ToList();
        var rebuilt = new List<string>();
        var baselines = card.FeatureBaselines.Select(b =>
        {
            if (DriftSource.Parse(b.EffectiveSource) is not { } source)
                return b;
            if (source.InputIndex is null && source.ChannelMean is null && source.ChannelStd is null)
            {
                rebuilt.Add(b.Name + " (from its first windows)");
                return b with { Counts = new long[b.Counts.Length], OutOfRange = 0, ReferenceWindows = ReferenceWindows };
            }
            var merged = new FeatureSketch(b.Edges);
            foreach (var s in sketches)
            {
                if (s.Feature(b.Name, b.Edges) is { } sketch)
                    merged.Merge(sketch);
            }
            if (merged.Count < MinValues)
                return b;
            rebuilt.Add(b.Name);
            return b with { Counts = [.. merged.Counts], OutOfRange = merged.Below + merged.Above, Field = true };
        }).ToList();
        if (rebuilt.Count == 0)
            return (card, null);
        var note = string.Create(CultureInfo.InvariantCulture,
            $"baselines rebuilt for the field ({string.Join(", ", rebuilt)}): " +
            $"inputs from v{baseVersion.Version}'s sketches of {reach.Count} " +
            $"target device(s), {from:u} to {snapshot.To:u}; outputs from this version's first {ReferenceWindows} windows");
        return (card with
        {
            FeatureBaselines = baselines,
            FieldReference = new FieldReference(baseVersion.Version, from, snapshot.To, [.. reach.Order(StringComparer.Ordinal)]),
        }, note);
    }

    private static bool SameBaselines(List<FeatureBaseline> a, List<FeatureBaseline> b) =>
        a.Count == b.Count && a.Zip(b).All(p => p.First.Name == p.Second.Name && p.First.Edges.AsSpan().SequenceEqual(p.Second.Edges)
            && p.First.Counts.AsSpan().SequenceEqual(p.Second.Counts));
}
