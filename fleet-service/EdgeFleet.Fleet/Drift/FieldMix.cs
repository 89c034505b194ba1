using System.Globalization;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>
/// The per-device field of a retrained version's baselines (<see cref="Models.ModelCard.FieldReference"/>): each device's
/// base-version sketches over the reference time. A window is judged against the mix of its own devices' fields,
/// weighted by their values in it, so a partial population (a canary phase, a segment) is compared like with like;
/// a device without enough field values of its own counts with the card's baseline.
/// </summary>
public sealed class FieldMix
{
    private readonly Dictionary<string, Dictionary<string, FeatureSketch>> _byDevice;

    private FieldMix(Dictionary<string, Dictionary<string, FeatureSketch>> byDevice) => _byDevice = byDevice;

    public static async Task<FieldMix?> LoadAsync(IFleetStore store, string model, Models.ModelCard card, CancellationToken ct)
    {
        if (card.FieldReference is not { } reference || !card.FeatureBaselines.Any(b => b.Field))
            return null;
        var devices = reference.Devices.ToHashSet(StringComparer.Ordinal);
        var byDevice = new Dictionary<string, Dictionary<string, FeatureSketch>>(StringComparer.Ordinal);
        var baseVersion = reference.BaseVersion.ToString(CultureInfo.InvariantCulture);
        var sketches = await store.GetSketchesAsync(model, baseVersion, reference.From, reference.To, ct).ConfigureAwait(false);
        foreach (var s in sketches.Where(s => devices.Contains(s.DeviceId)))
        {
            var mine = byDevice.TryGetValue(s.DeviceId, out var m) ? m : byDevice[s.DeviceId] = new(StringComparer.Ordinal);
            foreach (var b in card.FeatureBaselines.Where(b => b.Field))
            {
                if (s.Feature(b.Name, b.Edges) is not { } sketch)
                    continue;
                if (!mine.TryGetValue(b.Name, out var merged))
                    mine[b.Name] = merged = new FeatureSketch(b.Edges);
                merged.Merge(sketch);
            }
        }
        return new FieldMix(byDevice);
    }

    /// <summary>
    /// The baseline a window of <paramref name="members"/> is judged against for feature <paramref name="index"/>:
    /// each device's own field shares (or the card's), weighted by its values in the window, scaled to the field values
    /// behind them; with the expected share outside the edges mixed alike. The card's baseline for a feature that is not
    /// the field's.
    /// </summary>
    public FeatureBaseline Expected(FeatureBaseline card, int index, IEnumerable<DeviceWindow> members)
    {
        var bins = card.Counts.Count;
        var mix = new double[bins];
        double values = 0, reference = 0, outside = 0;
        var cardTotal = (double)card.Counts.Sum();
        var any = false;
        foreach (var w in members)
        {
            var n = w.Features[index].Count;
            if (n == 0)
                continue;
            values += n;
            if (_byDevice.TryGetValue(w.DeviceId, out var mine) && mine.TryGetValue(card.Name, out var own)
                && own.Count >= DriftRule.MinCount())
            {
                any = true;
                for (var i = 0; i < bins; i++)
                    mix[i] += n * (double)own.Counts[i] / own.Count;
                outside += n * (double)(own.Below + own.Above) / own.Count;
                reference += own.Count;
            }
            else
            {
                for (var i = 0; i < bins; i++)
                    mix[i] += n * card.Counts[i] / cardTotal;
                outside += n * card.OutOfRange / cardTotal;
                reference += cardTotal;
            }
        }
        if (!any || values == 0)
            return card;
        return card with
        {
            Counts = [.. mix.Select(m => (long)Math.Round(m / values * reference))],
            OutOfRange = (long)Math.Round(outside / values * reference),
        };
    }
}
