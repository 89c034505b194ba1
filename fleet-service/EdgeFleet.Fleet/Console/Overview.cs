using System.Text.Json;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Console;

/// <summary>An active rollout's progress as the overview shows it.</summary>
public sealed record RolloutProgress(string Id, string ModelId, long Version, string State, int Phase, int PhaseCount, int Installed, int Failed, int Eligible);

/// <summary>The overview's figures: devices online and offline, versions in the field, rollouts still moving.</summary>
public sealed record OverviewFigures(int Total, int Online, int Offline, int Revoked, IReadOnlyList<(string Model, string Version, int Devices)> Versions, IReadOnlyList<RolloutProgress> Rollouts)
{
    /// <summary>Drift alerts not resolved yet (open or acknowledged), newest first.</summary>
    public IReadOnlyList<Drift.DriftAlert> Alerts { get; init; } = [];

    /// <summary>When the store was read for these figures: a page rendered later already shows something newer.</summary>
    public DateTimeOffset At { get; init; }

    public static async Task<OverviewFigures> ReadAsync(IFleetStore store, FleetOptions options, TimeProvider time, CancellationToken ct)
    {
        var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
        var now = time.GetUtcNow();
        var offlineAfter = TimeSpan.FromSeconds(options.OfflineAfterSeconds);
        int online = 0, revoked = 0;
        var versions = new Dictionary<(string, string), int>();
        foreach (var d in devices)
        {
            if (d.RevokedAt is not null)
            {
                revoked++;
                continue;
            }
            if (now - d.LastSeen < offlineAfter)
                online++;
            if (d.ActiveModel is { } m)
                versions[(m.Name, m.Version)] = versions.GetValueOrDefault((m.Name, m.Version)) + 1;
        }
        var rollouts = (await store.ListRolloutsAsync(ct).ConfigureAwait(false))
            .Where(r => !RolloutStates.IsFinal(r.State))
            .Select(r =>
            {
                var view = RolloutsApi.View(r, withDevices: false);
                return new RolloutProgress(r.Id, r.ModelId, r.Version, r.State, view.Phase, view.PhaseCount, view.Tally.Installed, view.Tally.Failed, view.Eligible);
            }).ToList();
        return new OverviewFigures(devices.Count - revoked, online, devices.Count - revoked - online, revoked,
            [.. versions.OrderByDescending(kv => kv.Value).Select(kv => (kv.Key.Item1, kv.Key.Item2, kv.Value))], rollouts)
        {
            Alerts = await store.ListDriftAlertsAsync(activeOnly: true, 50, ct).ConfigureAwait(false),
            At = now,
        };
    }

    /// <summary>The live part as JSON for the overview's event stream.</summary>
    public byte[] LiveJson()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("total", Total);
            json.WriteNumber("online", Online);
            json.WriteNumber("offline", Offline);
            json.WriteNumber("alerts", Alerts.Count);
            json.WriteNumber("at", At.ToUnixTimeMilliseconds());
            json.WriteStartArray("rollouts");
            foreach (var r in Rollouts)
            {
                json.WriteStartObject();
                json.WriteString("id", r.Id);
                json.WriteString("state", r.State);
                json.WriteNumber("phase", r.Phase);
                json.WriteNumber("installed", r.Installed);
                json.WriteNumber("failed", r.Failed);
                json.WriteNumber("eligible", r.Eligible);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }
}

/// <summary>
/// The overview's figures shared by every open console page's event stream: read from the store at most once a
/// second, however many operators watch (each stream would otherwise read every device every two seconds).
/// </summary>
public sealed class OverviewFeed(IFleetStore store, FleetOptions options, TimeProvider time) : IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private (OverviewFigures Figures, DateTimeOffset At)? _last;

    public async Task<OverviewFigures> CurrentAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var now = time.GetUtcNow();
            if (_last is not { } last || now - last.At >= TimeSpan.FromSeconds(1))
                _last = last = (await OverviewFigures.ReadAsync(store, options, time, ct).ConfigureAwait(false), now);
            return last.Figures;
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();
}

/// <summary><c>/console/events</c>: server-sent events with the overview's live figures every two seconds.</summary>
public static class ConsoleEvents
{
    public static IEndpointRouteBuilder MapConsoleEvents(this IEndpointRouteBuilder app)
    {
        app.MapGet("/console/events", async (HttpContext http, OverviewFeed feed, TimeProvider time) =>
        {
            var ct = http.RequestAborted;
            http.Response.ContentType = "text/event-stream";
            http.Response.Headers.CacheControl = "no-store";
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(2), time);
            try
            {
                do
                {
                    var figures = await feed.CurrentAsync(ct).ConfigureAwait(false);
                    await http.Response.WriteAsync("event: overview\ndata: ", ct).ConfigureAwait(false);
                    await http.Response.Body.WriteAsync(figures.LiveJson(), ct).ConfigureAwait(false);
                    await http.Response.WriteAsync("\n\n", ct).ConfigureAwait(false);
                    await http.Response.Body.FlushAsync(ct).ConfigureAwait(false);
                }
                while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // The page went away.
            }
        }).RequireAuthorization(ConsoleAuth.ViewerPolicy);
        return app;
    }
}

/// <summary>A <c>Server-Timing: app;dur=MS</c> header on console pages: the server's time up to the response's first byte.</summary>
public static class ServerTiming
{
    public static IApplicationBuilder UseServerTiming(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        if (context.Request.Path.StartsWithSegments("/console", StringComparison.Ordinal) && !context.Request.Path.StartsWithSegments("/console/events", StringComparison.Ordinal))
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            context.Response.OnStarting(() =>
            {
                context.Response.Headers["Server-Timing"] = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"app;dur={System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:F1}");
                return Task.CompletedTask;
            });
        }
        await next(context).ConfigureAwait(false);
    });
}
