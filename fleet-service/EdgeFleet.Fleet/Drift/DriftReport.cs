using System.Globalization;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>A feature's figures in one segment and window: its merged counts and its divergence from the baseline and from the rest of the fleet.</summary>
public sealed record DriftCell(string Feature, string Segment, long Count, double Mean, long[] Counts, double Psi, double Ks, double JensenShannon, double? PsiVsRest, string Level);

/// <summary>One window: how many devices sent sketches, the cells, and devices left out (with why).</summary>
public sealed record DriftWindowView(DateTimeOffset From, double Seconds, int Devices, List<DriftCell> Cells, List<string> Skipped);

/// <summary>A feature's baseline as the report shows it (bins and the training data's counts).</summary>
public sealed record DriftFeatureView(string Name, string? Source, double[] Edges, long[] Counts);

/// <summary>
/// A feature and segment whose PSI stayed at or above the alert level for the last <c>Windows</c> windows in a
/// row (the "an alert needs N consecutive windows").
/// </summary>
public sealed record DriftAlertView(string Feature, string Segment, int Windows, double LastPsi, DateTimeOffset Since);

/// <summary><c>GET /api/drift</c>: per window, per feature and segment, PSI, KS and Jensen–Shannon against the model card's baseline.</summary>
public sealed record DriftReport(string Model, string Version, string? SegmentBy, double WarnPsi, double AlertPsi, int AlertWindows, long MinCount,
    List<DriftFeatureView> Features, List<DriftWindowView> Windows, List<DriftAlertView> Alerts)
{
    public const double DefaultWarn = 0.1;
    public const double DefaultAlert = 0.25;

    /// <summary>Fewer values than this in a cell: its divergence is shown but judged "few" (sampling noise alone gives PSI ≈ bins / values).</summary>
    public const long DefaultMinCount = 100;

    /// <summary>
    /// Reads the version's sketches in [<paramref name="from"/>, <paramref name="to"/>), merges them per window and
    /// segment (<paramref name="by"/>: <c>profile</c>, <c>tag:KEY</c>, or null for the fleet as one), and scores
    /// each against the card's baselines. Sketches whose bins do not match the baseline are left out and named.
    /// </summary>
    public static async Task<(DriftReport? Report, ApiError? Error)> BuildAsync(IFleetStore store, string model, string version, DateTimeOffset from, DateTimeOffset to,
        string? by, int alertWindows, CancellationToken ct, long minCount = DefaultMinCount)
    {
        if (by is not (null or "profile") && !(by.StartsWith("tag:", StringComparison.Ordinal) && by.Length > 4))
            return (null, new ApiError("InvalidSegment", "by is profile or tag:KEY"));
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
            _ => devices.GetValueOrDefault(deviceId)?.Tags.GetValueOrDefault(by[4..]) ?? "(none)",
        };
        var aggregatorBaselines = baselines.Select(b => new FeatureBaseline(b.Name, b.Edges, b.Counts)).ToList();
        var windows = new List<DriftWindowView>();
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
            var cells = DriftAggregator.Compute(aggregatorBaselines, deviceWindows)
                .Where(d => by is not null || d.Segment == DriftAggregator.AllSegments)
                .Select(d => new DriftCell(d.Feature, d.Segment, d.Merged.Count, d.Merged.Mean, [.. d.Merged.Counts], Round(d.Psi), Round(d.Ks), Round(d.JensenShannon),
                    double.IsNaN(d.PsiVsRest) ? null : Round(d.PsiVsRest), Level(d.Psi, d.Merged.Count, minCount)))
                .ToList();
            windows.Add(new DriftWindowView(group.Key, group.First().Window.Seconds, deviceWindows.Count, cells, skipped));
        }
        var alerts = new List<DriftAlertView>();
        // Segmented, alerts are per segment (the fleet as a whole is shown, not alerted on twice); else for the fleet.
        foreach (var series in windows.SelectMany(w => w.Cells.Where(c => by is null || c.Segment != DriftAggregator.AllSegments).Select(c => (w.From, c))).GroupBy(x => (x.c.Feature, x.c.Segment)))
        {
            // Judged windows only: the newest window is often still filling ("few"), which neither ends nor extends a run.
            var run = series.OrderBy(x => x.From).Reverse().Where(x => x.c.Level is not ("few" or "empty")).TakeWhile(x => x.c.Level == "alert").ToList();
            if (run.Count >= alertWindows)
                alerts.Add(new DriftAlertView(series.Key.Feature, series.Key.Segment, run.Count, run[0].c.Psi, run[^1].From));
        }
        return (new DriftReport(model, version, by, DefaultWarn, DefaultAlert, alertWindows, minCount,
            [.. baselines.Select(b => new DriftFeatureView(b.Name, b.EffectiveSource, b.Edges, b.Counts))], windows, alerts), null);
    }

    /// <summary>ok, warn (PSI ≥ 0.1) or alert (≥ 0.25); "empty" without values, "few" under <paramref name="minCount"/> values.</summary>
    private static string Level(double psi, long count, long minCount) =>
        count == 0 ? "empty" : count < minCount ? "few" : psi >= DefaultAlert ? "alert" : psi >= DefaultWarn ? "warn" : "ok";

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
