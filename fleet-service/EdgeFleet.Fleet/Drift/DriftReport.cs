using System.Globalization;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>
/// A feature's figures in one segment and window: its merged counts, and (when judged) its divergence from the
/// baseline (PSI over the <c>Bins</c> judged, see <see cref="DriftRule"/>; KS and Jensen–Shannon over the card's bins),
/// the homogeneity test's p-value and its divergence from the rest of the fleet; its NaN/∞ and out-of-range values,
/// and the data-quality verdict.
/// </summary>
public sealed record DriftCell(string Feature, string Segment, long Count, double Mean, long[] Counts, double? Psi, double? Ks,
    double? JensenShannon, double? PsiVsRest, string Level, double? PValue, long Invalid, long OutOfRange, string Quality, int Bins);

/// <summary>One window: how many devices sent sketches, the cells, and devices left out (with why).</summary>
public sealed record DriftWindowView(DateTimeOffset From, double Seconds, int Devices, List<DriftCell> Cells, List<string> Skipped);

/// <summary>
/// A feature's baseline as the report shows it (bins, the training data's counts, its thresholds and the values a window needs).
/// </summary>
public sealed record DriftFeatureView(string Name, string? Source, double[] Edges, long[] Counts, double WarnPsi, double AlertPsi,
    long MinCount);

/// <summary>
/// A device behind a segment's drift: <see cref="Psi"/> of its newest window against its own windows before the drift
/// began (or, when it has none in the lookback, against the rest of the segment); <see cref="Count"/> its values.
/// </summary>
public sealed record DriftContributor(string DeviceId, double Psi, long Count);

public static class DriftKinds
{
    /// <summary>The distribution moved away from the baseline.</summary>
    public const string Drift = "drift";

    /// <summary>The values went bad: NaN/∞ or out of the baseline's range.</summary>
    public const string Quality = "quality";
}

/// <summary>
/// A feature and segment that drifted (or had a data-quality problem: <see cref="Kind"/>) in the last
/// <c>Windows</c> judged windows in a row; <see cref="Severity"/> is <c>alert</c> when the latest PSI reached the
/// alert level, else <c>warn</c> (for quality, the problem); <see cref="Devices"/> are the devices that contribute
/// most (at most three).
/// </summary>
public sealed record DriftAlertView(string Feature, string Segment, int Windows, double LastPsi, DateTimeOffset Since, string Kind,
    string Severity, List<DriftContributor> Devices);

/// <summary>
/// <c>GET /api/drift</c>: per window, per feature and segment, PSI, KS and Jensen–Shannon against the model card's baseline.
/// </summary>
public sealed record DriftReport(string Model, string Version, string? SegmentBy, double WarnPsi, double AlertPsi, int AlertWindows,
    long MinCount, List<DriftFeatureView> Features, List<DriftWindowView> Windows, List<DriftAlertView> Alerts)
{
    public const double DefaultWarn = DriftRule.DefaultWarnPsi;
    public const double DefaultAlert = DriftRule.DefaultAlertPsi;

    /// <summary>The floor of the values a cell needs to be judged (the bins raise it: <see cref="DriftRule.MinCount"/>).</summary>
    public const long DefaultMinCount = DriftRule.DefaultMinCountFloor;

    /// <summary>The per-window significance level of the decision (<see cref="DriftRule.Alpha"/>).</summary>
    public double Alpha => DriftRule.Alpha;

    /// <summary>
    /// Reads the version's sketches in [<paramref name="from"/>, <paramref name="to"/>), merges them per window and
    /// segment (<paramref name="by"/>: <c>profile</c>, <c>device</c>, <c>tag:KEY</c>, or null for the fleet as one), and
    /// judges each against the card's baselines (<see cref="DriftRule"/>). Sketches whose bins do not match the
    /// baseline are left out and named.
    /// </summary>
    public static async Task<(DriftReport? Report, ApiError? Error)> BuildAsync(IFleetStore store, string model, string version,
        DateTimeOffset from, DateTimeOffset to, string? by, int alertWindows, CancellationToken ct, long minCount = DefaultMinCount)
    {
        if (by is not (null or "profile" or "device") && !(by.StartsWith("tag:", StringComparison.Ordinal) && by.Length > 4))
            return (null, new ApiError("InvalidSegment", "by is profile, device or tag:KEY"));
        if (!long.TryParse(version, NumberStyles.None, CultureInfo.InvariantCulture, out var number)
            || await store.GetModelVersionAsync(model, number, ct).ConfigureAwait(false) is not { } registered)
            return (null, new ApiError("UnknownVersion", $"no version {LogText.Sanitize(version)} of model {LogText.Sanitize(model)}"));
        var baselines = registered.Card.FeatureBaselines;
        if (baselines.Count == 0)
            return (null, new ApiError("NoBaselines", $"{model} v{version}'s model card has no feature baselines to compare with"));
        var devices = (await store.ListDevicesAsync(ct).ConfigureAwait(false)).ToDictionary(d => d.Id, StringComparer.Ordinal);
        string SegmentOf(string deviceId) => by switch
        {
            null => "fleet",
            "profile" => devices.GetValueOrDefault(deviceId)?.HardwareProfile ?? "(unknown)",
            "device" => deviceId,
            _ => devices.GetValueOrDefault(deviceId)?.Tags.GetValueOrDefault(by[4..]) ?? "(none)",
        };
        var aggregatorBaselines = baselines.Select(b => new FeatureBaseline(b.Name, b.Edges, b.Counts, b.OutOfRange)).ToList();
        var thresholds = baselines.ToDictionary(b => b.Name, DriftThresholds.Of, StringComparer.Ordinal);
        var field = await FieldMix.LoadAsync(store, model, registered.Card, ct).ConfigureAwait(false);
        var windows = new List<DriftWindowView>();
        var sketched = new Dictionary<DateTimeOffset, List<DeviceWindow>>();
        var stored = await store.GetSketchesAsync(model, version, from, to, ct).ConfigureAwait(false);
        foreach (var group in stored.GroupBy(s => s.Window.From).OrderBy(g => g.Key))
        {
            var deviceWindows = new List<DeviceWindow>();
            var skipped = new List<string>();
            foreach (var sketch in group)
            {
                var features = new List<FeatureSketch>(baselines.Count);
                string? problem = null;
                foreach (var b in baselines)
                {
                    var data = sketch.Window.Features.FirstOrDefault(f => f.Name == b.Name);
                    if (data is null)
                    {
                        problem = $"no sketch of {b.Name}";
                        break;
                    }
                    if (FeatureSketch.FromData(data, b.Edges, out problem) is not { } s)
                        break;
                    features.Add(s);
                }
                if (problem is not null)
                    skipped.Add($"{sketch.DeviceId}: {problem}");
                else
                    deviceWindows.Add(new DeviceWindow(sketch.DeviceId, SegmentOf(sketch.DeviceId), features));
            }
            sketched[group.Key] = deviceWindows;
            var cells = DriftAggregator.Compute(aggregatorBaselines, deviceWindows)
                .Where(d => by is not null || d.Segment == DriftAggregator.AllSegments)
                .Select(d =>
                {
                    var index = aggregatorBaselines.FindIndex(b => b.Name == d.Feature);
                    var members = deviceWindows.Where(w => d.Segment == DriftAggregator.AllSegments || w.Segment == d.Segment);
                    var expected = field?.Expected(aggregatorBaselines[index], index, members) ?? aggregatorBaselines[index];
                    return Cell(d, expected, thresholds[d.Feature], minCount);
                })
                .ToList();
            windows.Add(new DriftWindowView(group.Key, group.First().Window.Seconds, deviceWindows.Count, cells, skipped));
        }
        var alerts = new List<DriftAlertView>();
        // Segmented, alerts are per segment (the fleet as a whole is shown, not alerted on twice); else for the fleet.
        foreach (var key in windows.SelectMany(w => w.Cells).Where(c => by is null || c.Segment != DriftAggregator.AllSegments)
            .Select(c => (c.Feature, c.Segment)).Distinct())
        {
            foreach (var kind in (string[])[DriftKinds.Drift, DriftKinds.Quality])
            {
                var run = Streak(windows, key.Feature, key.Segment, kind, drifting: true);
                if (run.Count < alertWindows)
                    continue;
                var last = run[0].Cell;
                var severity = kind == DriftKinds.Quality ? last.Quality : last.Level;
                var inSegment = (DeviceWindow w) => key.Segment == DriftAggregator.AllSegments || by is null || w.Segment == key.Segment;
                var before = sketched.Where(s => s.Key < run[^1].From).SelectMany(s => s.Value).Where(inSegment).ToList();
                var contributors = Contributors(aggregatorBaselines.FindIndex(b => b.Name == key.Feature), thresholds[key.Feature],
                    [.. sketched[run[0].From].Where(inSegment)], before, minCount);
                alerts.Add(new DriftAlertView(key.Feature, key.Segment, run.Count, last.Psi ?? 0, run[^1].From, kind, severity,
                    contributors));
            }
        }
        return (new DriftReport(model, version, by, DefaultWarn, DefaultAlert, alertWindows, minCount,
            [.. baselines.Select(b => new DriftFeatureView(b.Name, b.EffectiveSource, b.Edges, b.Counts, thresholds[b.Name].WarnPsi,
                thresholds[b.Name].AlertPsi, DriftRule.MinCount(minCount)))], windows, alerts), null);
    }

    private static DriftCell Cell(FeatureDrift d, FeatureBaseline baseline, DriftThresholds thresholds, long minCount)
    {
        var verdict = DriftRule.Judge(baseline.Counts, d.Merged, thresholds, minCount, baseline.OutOfRange);
        // Unjudged cells show no divergence: with so few values it would be sampling noise.
        double? Shown(double v) => verdict.Judged ? Round(v) : null;
        return new DriftCell(d.Feature, d.Segment, d.Merged.Count, d.Merged.Mean, [.. d.Merged.Counts],
            verdict.Psi is { } psi ? Round(psi) : null, Shown(d.Ks), Shown(d.JensenShannon),
            verdict.Judged && !double.IsNaN(d.PsiVsRest) ? Round(d.PsiVsRest) : null, verdict.Level,
            verdict.PValue is { } p ? double.Parse(p.ToString("G4", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) : null,
            d.Merged.Invalid, d.Merged.Below + d.Merged.Above, verdict.Quality, verdict.Bins);
    }

    /// <summary>
    /// The run at the newest end of a feature's series in one segment: the windows, newest first, that are
    /// drifting (<paramref name="drifting"/>) or calm (not), of <paramref name="kind"/>. Windows too small to judge
    /// neither extend nor end it (the newest is often still filling); a window in which nothing of this segment
    /// arrived, or a gap in time, ends it once it has begun, and so does a judged window of the other state.
    /// </summary>
    public static List<(DateTimeOffset From, DriftCell Cell)> Streak(IReadOnlyList<DriftWindowView> windows, string feature, string segment,
        string kind, bool drifting)
    {
        var run = new List<(DateTimeOffset, DriftCell)>();
        var begun = false;
        DriftWindowView? newer = null;
        for (var i = windows.Count - 1; i >= 0; i--)
        {
            var w = windows[i];
            if (begun && newer is not null && (newer.From - w.From).TotalSeconds > w.Seconds * 1.5)
                break; // whole windows in which nothing arrived
            newer = w;
            var cell = w.Cells.FirstOrDefault(c => c.Feature == feature && c.Segment == segment);
            var state = cell is null ? null : kind == DriftKinds.Quality ? QualityState(cell) : DriftState(cell);
            if (state is null)
            {
                if (begun && (cell is null || cell.Count + cell.Invalid == 0))
                    break;
                continue;
            }
            begun = true;
            if (state != drifting)
                break;
            run.Add((w.From, cell!));
        }
        return run;
    }

    /// <summary>Whether a judged cell drifts; null when it was not judged.</summary>
    private static bool? DriftState(DriftCell cell) =>
        cell.Level is not ("ok" or "warn" or "alert") ? null : cell.Level is "warn" or "alert";

    /// <summary>Whether a cell has a quality problem; null when nothing arrived, or too little to tell that it has none.</summary>
    private static bool? QualityState(DriftCell cell) =>
        cell.Count + cell.Invalid == 0 ? null : cell.Quality != "ok" ? true : cell.Level == "few" ? null : false;

    /// <summary>
    /// The devices behind a segment's drift, at most three: each device's newest window against its own windows
    /// before the run began, judged by the drift rule (a device that changed drifts from its own past; in a fleet
    /// of unlike machines, a device that was always unlike the others does not). Ranked by that PSI. When no device
    /// has windows from before the run (it began before the lookback), by PSI against the rest of the segment, for
    /// the devices over the warning level.
    /// </summary>
    private static List<DriftContributor> Contributors(int feature, DriftThresholds thresholds, List<DeviceWindow> latest,
        List<DeviceWindow> before, long minCount)
    {
        var history = new Dictionary<string, FeatureSketch>(StringComparer.Ordinal);
        foreach (var w in before)
        {
            var sketch = w.Features[feature];
            if (!history.TryGetValue(w.DeviceId, out var merged))
                history[w.DeviceId] = merged = new FeatureSketch(sketch.Edges);
            merged.Merge(sketch);
        }
        var floor = DriftRule.MinCount(minCount);
        var judged = latest
            .Where(w => w.Features[feature].Count >= floor && history.TryGetValue(w.DeviceId, out var h) && h.Count >= floor).ToList();
        if (judged.Count > 0)
        {
            return [.. judged
                .Select(w => (w, Verdict: DriftRule.Judge(history[w.DeviceId].Counts, w.Features[feature], thresholds, minCount)))
                .Where(x => x.Verdict.Drifting).OrderByDescending(x => x.Verdict.Psi).Take(3)
                .Select(x => new DriftContributor(x.w.DeviceId, Round(x.Verdict.Psi!.Value), x.w.Features[feature].Count))];
        }
        if (latest.Count == 1)
            return [new DriftContributor(latest[0].DeviceId, 0, latest[0].Features[feature].Count)];
        var all = new FeatureSketch(latest[0].Features[feature].Edges);
        foreach (var w in latest)
            all.Merge(w.Features[feature]);
        return [.. latest.Where(w => w.Features[feature].Count >= floor)
            .Select(w => (w, Psi: PsiAgainstRest(all, w.Features[feature])))
            .Where(x => x.Psi >= thresholds.WarnPsi).OrderByDescending(x => x.Psi).Take(3)
            .Select(x => new DriftContributor(x.w.DeviceId, Round(x.Psi), x.w.Features[feature].Count))];
    }

    /// <summary>PSI of one member's sketch against the merged sketch of the others (<paramref name="all"/> less it).</summary>
    private static double PsiAgainstRest(FeatureSketch all, FeatureSketch member) =>
        Divergence.Psi([.. all.Counts.Select((c, i) => c - member.Counts[i])], member.Counts);

    private static double Round(double v) => double.IsFinite(v) ? Math.Round(v, 6) : v;
}
