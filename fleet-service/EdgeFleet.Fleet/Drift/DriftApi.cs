using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Drift;

/// <summary><c>/api/drift</c> (viewer).</summary>
public static class DriftApi
{
    public static IEndpointRouteBuilder MapDriftApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/drift", async Task<IResult> (string? model, string? version, DateTimeOffset? from, DateTimeOffset? to, string? by,
            int? alertWindows, long? minCount, IFleetStore store, FleetOptions options, TimeProvider time, CancellationToken ct) =>
        {
            if (string.IsNullOrWhiteSpace(model) || string.IsNullOrWhiteSpace(version))
                return TypedResults.BadRequest(new ApiError("ModelRequired", "give model and version"));
            var end = to ?? time.GetUtcNow();
            var windows = Math.Clamp(alertWindows ?? options.Drift.AlertWindows, 1, 1000);
            var (report, error) = await DriftReport.BuildAsync(store, model, version, from ?? end.AddDays(-1), end, by, windows, ct,
                Math.Max(1, minCount ?? DriftReport.DefaultMinCount)).ConfigureAwait(false);
            return report is not null ? TypedResults.Ok(report)
                : error!.Error is "UnknownVersion" ? TypedResults.NotFound(error) : TypedResults.BadRequest(error);
        }).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        app.MapGet("/api/drift/alerts", async (string? state, int? limit, IFleetStore store, CancellationToken ct) =>
            TypedResults.Ok(await store.ListDriftAlertsAsync(state != "all", Math.Clamp(limit ?? 500, 1, 10_000), ct)
                .ConfigureAwait(false)))
            .RequireAuthorization(ApiAuthentication.ViewerPolicy);
        app.MapPost("/api/drift/alerts/{id}/ack", async Task<IResult> (string id, System.Security.Claims.ClaimsPrincipal user,
            DriftMonitor monitor, IFleetStore store, CancellationToken ct) =>
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
