using System.Globalization;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>
/// A feature's figures in one segment and window: its merged counts, and (when judged) its divergence from the
/// baseline (PSI over the <c>Bins</c> judged, see <see cref="DriftRule"/>; KS and Jensen–Shannon over the card's bins),
/// the homogeneity test's p-value and its divergence from the rest of the fleet; its NaN/∞ and out-of-range values,
/// and the data-quality verdict.
/// </summary>
public sealed record DriftCell(string Feature, string Segment, long Count, double Mean, long[] Counts, double? Psi, double? Ks, double? JensenShannon,
    double? PsiVsRest, string Level, double? PValue, long Invalid, long OutOfRange, string Quality, int Bins);

/// <summary>One window: how many devices sent sketches, the cells, and devices left out (with why).</summary>
public sealed record DriftWindowView(DateTimeOffset From, double Seconds, int Devices, List<DriftCell> Cells, List<string> Skipped);

/// <summary>A feature's baseline as the report shows it (bins, the training data's counts, its thresholds and the values a window needs).</summary>
public sealed record DriftFeatureView(string Name, string? Source, double[] Edges, long[] Counts, double WarnPsi, double AlertPsi, long MinCount);

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
public sealed record DriftAlertView(string Feature, string Segment, int Windows, double LastPsi, DateTimeOffset Since, string Kind, string Severity,
    List<DriftContributor> Devices);

/// <summary><c>GET /api/drift</c>: per window, per feature and segment, PSI, KS and Jensen–Shannon against the model card's baseline.</summary>
public sealed record DriftReport(string Model, string Version, string? SegmentBy, double WarnPsi, double AlertPsi, int AlertWindows, long MinCount,
    List<DriftFeatureView> Features, List<DriftWindowView> Windows, List<DriftAlertView> Alerts)
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
    public static async Task<(DriftReport? Report, ApiError? Error)> BuildAsync(IFleetStore store, string model, string version, DateTimeOffset from, DateTimeOffset to,
        string? by, int alertWindows, CancellationToken ct, long minCount = DefaultMinCount)
    {
        if (by is not (null or "profile" or "device") && !(by.StartsWith("tag:", StringComparison.Ordinal) && by.Length > 4))
            return (null, new ApiError("InvalidSegment", "by is profile, device or tag:KEY"));
        if (!long.TryParse(version, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || await store.GetModelVersionAsync(model, number, ct).ConfigureAwait(false) is not { } registered)
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
        foreach (var group in (await store.GetSketchesAsync(model, version, from, to, ct).ConfigureAwait(false)).GroupBy(s => s.Window.From).OrderBy(g => g.Key))
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
                    return Cell(d, field?.Expected(aggregatorBaselines[index], index, members) ?? aggregatorBaselines[index], thresholds[d.Feature], minCount);
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
                alerts.Add(new DriftAlertView(key.Feature, key.Segment, run.Count, last.Psi ?? 0, run[^1].From, kind, severity, contributors));
            }
        }
        return (new DriftReport(model, version, by, DefaultWarn, DefaultAlert, alertWindows, minCount,
            [.. baselines.Select(b => new DriftFeatureView(b.Name, b.EffectiveSource, b.Edges, b.Counts, thresholds[b.Name].WarnPsi, thresholds[b.Name].AlertPsi,
                DriftRule.MinCount(minCount)))], windows, alerts), null);
    }

    private static DriftCell Cell(FeatureDrift d, FeatureBaseline baseline, DriftThresholds thresholds, long minCount)
    {
        var verdict = DriftRule.Judge(baseline.Counts, d.Merged, thresholds, minCount, baseline.OutOfRange);
        // Unjudged cells show no divergence: with so few values it would be sampling noise.
        double? Shown(double v) => verdict.Judged ? Round(v) : null;
        return new DriftCell(d.Feature, d.Segment, d.Merged.Count, d.Merged.Mean, [.. d.Merged.Counts], verdict.Psi is { } psi ? Round(psi) : null,
            Shown(d.Ks), Shown(d.JensenShannon), verdict.Judged && !double.IsNaN(d.PsiVsRest) ? Round(d.PsiVsRest) : null, verdict.Level,
            verdict.PValue is { } p ? double.Parse(p.ToString("G4", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) : null,
            d.Merged.Invalid, d.Merged.Below + d.Merged.Above, verdict.Quality, verdict.Bins);
    }

    /// <summary>
    /// The run at the newest end of a feature's series in one segment: the windows, newest first, that are
    /// drifting (<paramref name="drifting"/>) or calm (not), of <paramref name="kind"/>. Windows too small to judge
    /// neither extend nor end it (the newest is often still filling); a window in which nothing of this segment
    /// arrived, or a gap in time, ends it once it has begun, and so does a judged window of the other state.
    /// </summary>
    public static List<(DateTimeOffset From, DriftCell Cell)> Streak(IReadOnlyList<DriftWindowView> windows, string feature, string segment, string kind,
        bool drifting)
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
            bool? state = cell is null ? null
                : kind == DriftKinds.Quality ? (cell.Count + cell.Invalid == 0 ? null : cell.Quality != "ok" ? true : cell.Level == "few" ? null : false)
                : cell.Level is not ("ok" or "warn" or "alert") ? null : cell.Level is "warn" or "alert";
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

    /// <summary>
    /// The devices behind a segment's drift, at most three: each device's newest window against its own windows
    /// before the run began, judged by the drift rule (a device that changed drifts from its own past; in a fleet
    /// of unlike machines, a device that was always unlike the others does not). Ranked by that PSI. When no device
    /// has windows from before the run (it began before the lookback), by PSI against the rest of the segment, for
    /// the devices over the warning level.
    /// </summary>
    private static List<DriftContributor> Contributors(int feature, DriftThresholds thresholds, List<DeviceWindow> latest, List<DeviceWindow> before,
        long minCount)
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
        var judged = latest.Where(w => w.Features[feature].Count >= floor && history.TryGetValue(w.DeviceId, out var h) && h.Count >= floor).ToList();
        if (judged.Count > 0)
        {
            return [.. judged.Select(w => (w, Verdict: DriftRule.Judge(history[w.DeviceId].Counts, w.Features[feature], thresholds, minCount)))
                .Where(x => x.Verdict.Drifting).OrderByDescending(x => x.Verdict.Psi).Take(3)
                .Select(x => new DriftContributor(x.w.DeviceId, Round(x.Verdict.Psi!.Value), x.w.Features[feature].Count))];
        }
        if (latest.Count == 1)
            return [new DriftContributor(latest[0].DeviceId, 0, latest[0].Features[feature].Count)];
        var all = new FeatureSketch(latest[0].Features[feature].Edges);
        foreach (var w in latest)
            all.Merge(w.Features[feature]);
        return [.. latest.Where(w => w.Features[feature].Count >= floor)
            .Select(w => (w, Psi: Divergence.Psi([.. all.Counts.Select((c, i) => c - w.Features[feature].Counts[i])], w.Features[feature].Counts)))
            .Where(x => x.Psi >= thresholds.WarnPsi).OrderByDescending(x => x.Psi).Take(3)
            .Select(x => new DriftContributor(x.w.DeviceId, Round(x.Psi), x.w.Features[feature].Count))];
    }

    private static double Round(double v) => double.IsFinite(v) ? Math.Round(v, 6) : v;
}

/// <summary><c>/api/drift</c> (viewer).</summary>
public static class DriftApi
{
    public static IEndpointRouteBuilder MapDriftApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/drift", async Task<IResult> (string? model, string? version, DateTimeOffset? from, DateTimeOffset? to, string? by, int? alertWindows, long? minCount,
            IFleetStore store, FleetOptions options, TimeProvider time, CancellationToken ct) =>
        {
            if (string.IsNullOrWhiteSpace(model) || string.IsNullOrWhiteSpace(version))
                return TypedResults.BadRequest(new ApiError("ModelRequired", "give model and version"));
            var end = to ?? time.GetUtcNow();
            var (report, error) = await DriftReport.BuildAsync(store, model, version, from ?? end.AddDays(-1), end, by, Math.Clamp(alertWindows ?? options.Drift.AlertWindows, 1, 1000), ct,
                Math.Max(1, minCount ?? DriftReport.DefaultMinCount)).ConfigureAwait(false);
            return report is not null ? TypedResults.Ok(report)
                : error!.Error is "UnknownVersion" ? TypedResults.NotFound(error) : TypedResults.BadRequest(error);
        }).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        app.MapGet("/api/drift/alerts", async (string? state, int? limit, IFleetStore store, CancellationToken ct) =>
            TypedResults.Ok(await store.ListDriftAlertsAsync(state != "all", Math.Clamp(limit ?? 500, 1, 10_000), ct).ConfigureAwait(false)))
            .RequireAuthorization(ApiAuthentication.ViewerPolicy);
        app.MapPost("/api/drift/alerts/{id}/ack", async Task<IResult> (string id, System.Security.Claims.ClaimsPrincipal user, DriftMonitor monitor, IFleetStore store, CancellationToken ct) =>
        {
            if (await monitor.AcknowledgeAsync(id, IdentityApi.Actor(user), ct).ConfigureAwait(false) is { } alert)
                return TypedResults.Ok(alert);
            return (await store.ListDriftAlertsAsync(false, int.MaxValue, ct).ConfigureAwait(false)).Any(a => a.Id == id)
                ? TypedResults.Conflict(new ApiError("InvalidAlertState", "only an open alert can be acknowledged"))
                : TypedResults.NotFound(new ApiError("UnknownAlert", $"no alert {LogText.Sanitize(id)}"));
        }).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        return app;
    }
}

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
        var sketches = await store.GetSketchesAsync(model, reference.BaseVersion.ToString(CultureInfo.InvariantCulture), reference.From, reference.To, ct)
            .ConfigureAwait(false);
        foreach (var s in sketches.Where(s => devices.Contains(s.DeviceId)))
        {
            var mine = byDevice.TryGetValue(s.DeviceId, out var m) ? m : byDevice[s.DeviceId] = new(StringComparer.Ordinal);
            foreach (var b in card.FeatureBaselines.Where(b => b.Field))
            {
                if (s.Window.Features.FirstOrDefault(f => f.Name == b.Name) is not { } data || FeatureSketch.FromData(data, b.Edges, out _) is not { } sketch)
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
            if (_byDevice.TryGetValue(w.DeviceId, out var mine) && mine.TryGetValue(card.Name, out var own) && own.Count >= DriftRule.MinCount())
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
