using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;

namespace EdgeFleet.Fleet.Drift;

/// <summary>Where alert changes go: a signed webhook, a command, or (in tests) a list.</summary>
public interface IDriftNotifier
{
    /// <summary><paramref name="change"/> is <c>opened</c>, <c>acknowledged</c> or <c>resolved</c>.</summary>
    Task NotifyAsync(string change, DriftAlert alert, CancellationToken ct);
}

/// <summary>
/// Notifies by <c>Fleet:Drift:WebhookUrl</c> (a JSON POST whose body is signed with HMAC-SHA256 over the exact bytes,
/// header <c>X-EdgeFleet-Signature: sha256=HEX</c>, so the receiver can check it came from the fleet) and by
/// <c>Fleet:Drift:Command</c> (the same JSON on standard input; no shell). Failures are logged; the alert stands.
/// </summary>
public sealed partial class DriftNotifier(FleetOptions options, ILogger<DriftNotifier> log) : IDriftNotifier, IDisposable
{
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public static byte[] Body(string change, DriftAlert alert)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("event", "drift.alert." + change);
            json.WritePropertyName("alert");
            JsonSerializer.Serialize(json, alert, FleetStoreJsonContext.Default.DriftAlert);
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    public static string Signature(byte[] secret, byte[] body) => "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(secret, body));

    public async Task NotifyAsync(string change, DriftAlert alert, CancellationToken ct)
    {
        var body = Body(change, alert);
        var drift = options.Drift;
        if (drift.WebhookUrl is { } url)
        {
            try
            {
                var lines = await File.ReadAllLinesAsync(drift.WebhookSecretFile!, ct).ConfigureAwait(false);
                var secret = Encoding.UTF8.GetBytes(lines.FirstOrDefault() ?? "");
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                request.Headers.Add("X-EdgeFleet-Signature", Signature(secret, body));
                request.Headers.Add("X-EdgeFleet-Event", "drift.alert." + change);
                using var response = await _http.SendAsync(request, ct).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                    Log.WebhookFailed(log, url, $"HTTP {(int)response.StatusCode}");
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException or UnauthorizedAccessException)
            {
                Log.WebhookFailed(log, url, e.Message);
            }
        }
        if (drift.Command is { } command)
        {
            try
            {
                using var process = Process.Start(new ProcessStartInfo(command)
                {
                    RedirectStandardInput = true,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                })!;
                _ = process.StandardOutput.ReadToEndAsync(ct);
                _ = process.StandardError.ReadToEndAsync(ct);
                await process.StandardInput.BaseStream.WriteAsync(body, ct).ConfigureAwait(false);
                process.StandardInput.Close();
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(30));
                try
                {
                    await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
                    if (process.ExitCode != 0)
                        Log.CommandFailed(log, command, $"exit {process.ExitCode}");
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    process.Kill(entireProcessTree: true);
                    Log.CommandFailed(log, command, "still running after 30 s: killed");
                }
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or InvalidOperationException)
            {
                Log.CommandFailed(log, command, e.Message);
            }
        }
    }

    public void Dispose() => _http.Dispose();

    private static partial class Log
    {
        [LoggerMessage(9101, LogLevel.Warning, "Drift webhook {Url} failed: {Reason}")]
        public static partial void WebhookFailed(ILogger logger, string url, string reason);

        [LoggerMessage(9102, LogLevel.Warning, "Drift alert command {Command} failed: {Reason}")]
        public static partial void CommandFailed(ILogger logger, string command, string reason);
    }
}

/// <summary>
/// The leader's drift check, every <c>Fleet:Drift:CheckSeconds</c>: for each model version with baselines, the drift
/// report over the last windows (<see cref="DriftReport"/>, <see cref="DriftRule"/>). A feature and segment drifting
/// (or with a data-quality problem) for <c>AlertWindows</c> judged windows in a row opens an alert, or reopens the one
/// it had (one per model version, feature, segment and kind); an active alert counts each further drifting window
/// once, and is resolved after <c>ResolveWindows</c> judged windows in a row below the warning level (hysteresis), or
/// when no device has sketched its version for <c>UnservedWindows</c> windows (it was replaced). Openings,
/// reopenings and resolutions are notified and audited.
/// </summary>
public sealed partial class DriftMonitor(IFleetStore store, FleetOptions options, Scale.LeaderElection leader, IDriftNotifier notifier,
    TimeProvider time, ILogger<DriftMonitor> log) : Scale.LeaderLoop
{
    public const string System = "drift-monitor";

    protected override Scale.LeaderElection Leader => leader;

    protected override TimeProvider Clock => time;

    protected override TimeSpan Period => TimeSpan.FromSeconds(options.Drift.CheckSeconds);

    protected override Task RunOnceAsync(CancellationToken ct) => CheckAsync(ct);

    protected override void OnFailed(string reason) => Log.CheckFailed(log, reason);

    /// <summary>One check over every model version with baselines.</summary>
    public async Task CheckAsync(CancellationToken ct)
    {
        var drift = options.Drift;
        var now = time.GetUtcNow();
        var from = now - TimeSpan.FromSeconds(drift.WindowSeconds * drift.LookbackWindows);
        var all = await store.ListDriftAlertsAsync(activeOnly: false, int.MaxValue, ct).ConfigureAwait(false);
        foreach (var model in await store.ListModelsAsync(ct).ConfigureAwait(false))
        {
            foreach (var version in await store.ListModelVersionsAsync(model.Id, ct).ConfigureAwait(false))
            {
                if (version.Card.FeatureBaselines.Count == 0 || version.State is ApprovalStates.Rejected or ApprovalStates.Draft)
                    continue;
                var label = version.Version.ToString(CultureInfo.InvariantCulture);
                if (version.Card.FeatureBaselines.Any(b => b.Pending))
                    await ReferenceAsync(version, now, ct).ConfigureAwait(false);
                var mine = all.Where(a => a.Model == model.Id && a.Version == label).ToList();
                var (report, _) = await DriftReport.BuildAsync(store, model.Id, label, from, now, drift.SegmentBy, drift.AlertWindows, ct)
                    .ConfigureAwait(false);
                var lastServed = report?.Windows.Where(w => w.Devices > 0).Select(w => w.From + TimeSpan.FromSeconds(w.Seconds))
                    .DefaultIfEmpty().Max();
                if (report is null || lastServed is null || lastServed == default(DateTimeOffset)
                    || now - lastServed.Value > TimeSpan.FromSeconds(drift.WindowSeconds * drift.UnservedWindows))
                {
                    // No device sketched this version for UnservedWindows windows (it was replaced): its alerts end with it.
                    var reason = $"no device has served v{label} for {drift.UnservedWindows} windows";
                    foreach (var alert in mine.Where(a => a.Active))
                        await ResolveAsync(alert, reason, null, now, ct).ConfigureAwait(false);
                    continue;
                }
                await CheckVersionAsync(report, mine, now, ct).ConfigureAwait(false);
            }
        }
    }

    private async Task CheckVersionAsync(DriftReport report, List<DriftAlert> mine, DateTimeOffset now, CancellationToken ct)
    {
        var drift = options.Drift;
        var byKey = mine.GroupBy(a => (a.Feature, a.Segment, a.Kind))
            .ToDictionary(g => g.Key, g => g.OrderByDescending(a => a.OpenedAt).First());
        var unserved = TimeSpan.FromSeconds(drift.WindowSeconds * drift.UnservedWindows);
        foreach (var a in report.Alerts)
        {
            if (now - LastSeen(report, a.Feature, a.Segment) > unserved)
                continue; // a drift of devices that have since left this version: nothing to open

            var run = DriftReport.Streak(report.Windows, a.Feature, a.Segment, a.Kind, drifting: true);
            if (byKey.TryGetValue((a.Feature, a.Segment, a.Kind), out var existing) && existing.Active)
                continue; // counted below, with the other active ones
            var opened = existing is null
                ? new DriftAlert
                {
                    Id = $"drift-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}",
                    Model = report.Model,
                    Version = report.Version,
                    Feature = a.Feature,
                    Segment = a.Segment,
                    Kind = a.Kind,
                    State = DriftAlertStates.Open,
                    OpenedAt = now,
                    Since = a.Since,
                    Psi = a.LastPsi,
                    Windows = a.Windows,
                    LastWindow = run[0].From,
                    Severity = a.Severity,
                    Devices = a.Devices,
                }
                : null;
            if (opened is not null)
            {
                if (await store.CreateDriftAlertAsync(opened, ct).ConfigureAwait(false))
                    await ChangedAsync("opened", opened, ct).ConfigureAwait(false);
                continue;
            }
            // The same drift came back: the alert it had is reopened, not recreated, and keeps counting.
            var counted = run.Count(r => existing!.LastWindow is not { } last || r.From > last);
            var reopened = await store.UpdateDriftAlertAsync(existing!.Id, x => x.Active ? null : x with
            {
                State = DriftAlertStates.Open,
                ReopenedAt = now,
                Reopened = x.Reopened + 1,
                Since = a.Since,
                Psi = a.LastPsi,
                Windows = x.Windows + counted,
                LastWindow = run[0].From,
                Severity = a.Severity,
                Devices = a.Devices,
                AcknowledgedAt = null,
                AcknowledgedBy = null,
                ResolvedAt = null,
                Resolution = null,
            }, ct).ConfigureAwait(false);
            if (reopened is { } r2)
                await ChangedAsync("reopened", r2.After, ct).ConfigureAwait(false);
        }
        foreach (var alert in mine.Where(a => a.Active))
        {
            // The segment's devices moved to another version (a retrained one rolled out to that site only).
            if (now - LastSeen(report, alert.Feature, alert.Segment) > unserved)
            {
                var reason = $"no device in segment {alert.Segment} has served v{alert.Version} for {drift.UnservedWindows} windows";
                await ResolveAsync(alert, reason, null, now, ct)
                    .ConfigureAwait(false);
                continue;
            }
            var run = DriftReport.Streak(report.Windows, alert.Feature, alert.Segment, alert.Kind, drifting: true);
            if (run.Count > 0)
            {
                var fresh = run.Where(r => alert.LastWindow is not { } last || r.From > last).ToList();
                if (fresh.Count == 0)
                    continue;
                var view = report.Alerts.FirstOrDefault(x => (x.Feature, x.Segment, x.Kind) == (alert.Feature, alert.Segment, alert.Kind));
                await store.UpdateDriftAlertAsync(alert.Id, x => x.Active ? x with
                {
                    Windows = x.Windows + fresh.Count(r => x.LastWindow is not { } last || r.From > last),
                    LastWindow = run[0].From,
                    Psi = run[0].Cell.Psi ?? x.Psi,
                    Severity = alert.Kind == DriftKinds.Quality ? run[0].Cell.Quality : run[0].Cell.Level,
                    Devices = view?.Devices ?? x.Devices,
                } : null, ct).ConfigureAwait(false);
                continue;
            }
            var calm = DriftReport.Streak(report.Windows, alert.Feature, alert.Segment, alert.Kind, drifting: false);
            if (calm.Count >= drift.ResolveWindows)
                await ResolveAsync(alert, $"below the warning level for {calm.Count} windows", calm[0].Cell.Psi, now, ct)
                    .ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Fills the baselines a version takes from its own first windows in the field (<see cref="Models.FeatureBaseline.ReferenceWindows"/>)
    /// once that many windows are complete (a later one has begun) and hold at least the values a window needs to be
    /// judged; audited. The windows count from when the version's rollouts settled: while one is still widening, the
    /// devices running the version are not yet the ones it will run on.
    /// </summary>
    private async Task ReferenceAsync(ModelVersion version, DateTimeOffset now, CancellationToken ct)
    {
        var label = version.Version.ToString(CultureInfo.InvariantCulture);
        var rollouts = (await store.ListRolloutsAsync(ct).ConfigureAwait(false))
            .Where(r => r.ModelId == version.ModelId && r.Version == version.Version).ToList();
        if (rollouts.Any(r => !Rollouts.RolloutStates.IsFinal(r.State)))
            return;
        var settled = rollouts.SelectMany(r => r.Events).Select(e => e.At).Append(version.CreatedAt).Max();
        var windows = (await store.GetSketchesAsync(version.ModelId, label, settled, now, ct).ConfigureAwait(false))
            .GroupBy(s => s.Window.From).OrderBy(g => g.Key).ToList();
        // A window is complete once a later one has arrived (devices send a window's sketch when it ends), or a whole
        // window after its end.
        var complete = windows
            .Where((g, i) => i < windows.Count - 1 || now >= g.Key + TimeSpan.FromSeconds(2 * g.First().Window.Seconds)).ToList();
        var filled = new Dictionary<string, FeatureSketch>(StringComparer.Ordinal);
        foreach (var b in version.Card.FeatureBaselines.Where(b => b.Pending))
        {
            var merged = new FeatureSketch(b.Edges);
            var used = 0;
            foreach (var window in complete)
            {
                if (used >= b.ReferenceWindows && merged.Count >= DriftRule.MinCount())
                    break;
                foreach (var s in window)
                {
                    if (s.Feature(b.Name, b.Edges) is { } sketch)
                        merged.Merge(sketch);
                }
                used++;
            }
            if (used >= b.ReferenceWindows && merged.Count >= DriftRule.MinCount())
                filled[b.Name] = merged;
        }
        if (filled.Count == 0)
            return;
        var changed = await store.UpdateModelVersionAsync(version.ModelId, version.Version, v => v with
        {
            Card = v.Card with
            {
                FeatureBaselines = [.. v.Card.FeatureBaselines.Select(b => b.Pending && filled.TryGetValue(b.Name, out var m)
                    ? b with { Counts = [.. m.Counts], OutOfRange = m.Below + m.Above } : b)],
            },
        }, ct).ConfigureAwait(false);
        if (changed is null)
            return;
        var names = string.Join(", ", filled.Keys);
        Log.Referenced(log, version.ModelId, label, names);
        await store.AppendAuditAsync(new Identity.AuditEntry
        {
            At = now,
            Actor = System,
            Action = "model.baseline.reference",
            Target = $"{version.ModelId}@{label}",
            After = JsonSerializer.Serialize(filled.ToDictionary(kv => kv.Key, kv => kv.Value.Count),
                FleetStoreJsonContext.Default.DictionaryStringInt64),
        }, ct).ConfigureAwait(false);
    }

    /// <summary>The end of the newest window in which a feature of a segment had values.</summary>
    private static DateTimeOffset LastSeen(DriftReport report, string feature, string segment) =>
        report.Windows.Where(w => w.Cells.Any(c => c.Feature == feature && c.Segment == segment && c.Count + c.Invalid > 0))
            .Select(w => w.From + TimeSpan.FromSeconds(w.Seconds)).DefaultIfEmpty(DateTimeOffset.MinValue).Max();

    private async Task ResolveAsync(DriftAlert alert, string reason, double? psi, DateTimeOffset now, CancellationToken ct)
    {
        var updated = await store.UpdateDriftAlertAsync(alert.Id, a => a.Active
            ? a with { State = DriftAlertStates.Resolved, ResolvedAt = now, Resolution = reason, Psi = psi ?? a.Psi }
            : null, ct).ConfigureAwait(false);
        if (updated is { After.State: DriftAlertStates.Resolved } u)
            await ChangedAsync("resolved", u.After, ct).ConfigureAwait(false);
    }

    /// <summary>An operator acknowledges an alert: it stays active until the drift ends; audited and notified.</summary>
    public async Task<DriftAlert?> AcknowledgeAsync(string id, string by, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var changed = await store.UpdateDriftAlertAsync(id, a => a.State == DriftAlertStates.Open
            ? a with { State = DriftAlertStates.Acknowledged, AcknowledgedAt = now, AcknowledgedBy = by }
            : null, ct).ConfigureAwait(false);
        if (changed is not { } c)
            return null;
        await store.AppendAuditAsync(new Identity.AuditEntry
        {
            At = now,
            Actor = by,
            Action = "drift.alert.acknowledge",
            Target = id,
            Before = $$"""{"state":"{{c.Before.State}}"}""",
            After = $$"""{"state":"{{c.After.State}}"}""",
        }, ct).ConfigureAwait(false);
        await notifier.NotifyAsync("acknowledged", c.After, ct).ConfigureAwait(false);
        return c.After;
    }

    private async Task ChangedAsync(string change, DriftAlert alert, CancellationToken ct)
    {
        Log.AlertChanged(log, change, alert.Model, alert.Version, alert.Feature, alert.Segment, alert.Psi);
        await store.AppendAuditAsync(new Identity.AuditEntry
        {
            At = time.GetUtcNow(),
            Actor = System,
            Action = "drift.alert." + change,
            Target = alert.Id,
            After = Encoding.UTF8.GetString(DriftNotifier.Body(change, alert)),
        }, ct).ConfigureAwait(false);
        await notifier.NotifyAsync(change, alert, ct).ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(9001, LogLevel.Warning,
            "Drift alert {Change}: {Model} v{Version} feature {Feature} in segment {Segment}, PSI {Psi}")]
        public static partial void AlertChanged(ILogger logger, string change, string model, string version, string feature, string segment,
            double psi);

        [LoggerMessage(9003, LogLevel.Information,
            "Drift baselines of {Model} v{Version} taken from its first windows in the field: {Features}")]
        public static partial void Referenced(ILogger logger, string model, string version, string features);

        [LoggerMessage(9002, LogLevel.Warning, "Drift check failed: {Reason}")]
        public static partial void CheckFailed(ILogger logger, string reason);
    }
}
