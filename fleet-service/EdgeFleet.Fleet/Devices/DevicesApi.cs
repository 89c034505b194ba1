using System.Text.Json.Serialization;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Groups;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Devices;

/// <summary>A device as the API shows it: the registry record plus whether it is online now.</summary>
/// <summary>A device as the API and the console show it: its record, whether it is online, and the active drift alerts that name it.</summary>
public sealed record DeviceView(DeviceRecord Device, bool Online, IReadOnlyList<string>? Drift = null)
{
    public static DeviceView Of(DeviceRecord d, DateTimeOffset now, TimeSpan offlineAfter, ILookup<string, Drift.DriftAlert>? drift = null) =>
        new(d, now - d.LastSeen < offlineAfter, drift?[d.Id].Select(Describe).ToList() ?? []);

    /// <summary>The active drift alerts by the devices they name (the devices behind each drift).</summary>
    public static async Task<ILookup<string, Drift.DriftAlert>> DriftByDeviceAsync(IFleetStore store, CancellationToken ct) =>
        (await store.ListDriftAlertsAsync(activeOnly: true, 10_000, ct).ConfigureAwait(false))
            .SelectMany(a => a.Devices.Select(d => (d.DeviceId, Alert: a))).ToLookup(x => x.DeviceId, x => x.Alert, StringComparer.Ordinal);

    private static string Describe(Drift.DriftAlert a) => $"{a.Feature} ({a.Kind}: {a.Severity}, {a.Model} v{a.Version})";
}

public sealed record ApiError(string Error, string Reason);

public sealed record HealthView(string Status, string Instance, bool Leader, string BrokerMode, bool BrokerConnected, string Storage, int Devices,
    long MessagesAccepted, long TelemetryStored, long TelemetryDuplicates, long BrokerDenied, IReadOnlyDictionary<string, long> MessagesRejected,
    long? BrokerClients, int IdentityCollisions = 0, long? BrokerRefusedUnauthenticated = null, long ChunkBytesServed = 0, long ChunksRefused = 0);

/// <summary>
/// The fleet's JSON API: <c>/api/health</c>, <c>/api/devices</c> (filtered by <c>?group=</c> and <c>?selector=</c>),
/// <c>/api/devices/{id}</c>, and a device's stored
/// telemetry (<c>/telemetry</c>, oldest first) and recorded gaps (<c>/gaps</c>).
/// </summary>
public static class DevicesApi
{
    public static IEndpointRouteBuilder MapFleetApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/health", async (IFleetStore store, FleetMqttClient client, FleetMetrics metrics, FleetOptions options, Scale.LeaderElection leader, CancellationToken ct) =>
        {
            var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
            // Counted, not named: the endpoint is anonymous. The log names them (ReservedIdentities).
            var collisions = ReservedIdentities.Collisions(devices, options.Broker).Count;
            return TypedResults.Ok(new HealthView(
                client.Connected && collisions == 0 ? "ok" : "degraded",
                leader.Instance,
                leader.IsLeader,
                options.Broker.Mode.ToString(),
                client.Connected,
                options.Storage.Provider,
                devices.Count,
                metrics.Accepted,
                metrics.TelemetryStored,
                metrics.TelemetryDuplicates,
                metrics.Denied,
                metrics.Rejected.ToDictionary(kv => kv.Key.ToString(), kv => kv.Value),
                options.Broker.Mode == BrokerMode.Embedded ? metrics.BrokerClients : null,
                collisions,
                options.Broker.Mode == BrokerMode.Embedded ? metrics.RefusedUnauthenticated : null,
                metrics.ChunkBytesServed,
                metrics.ChunksRefused));
        }).AllowAnonymous();
        var api = app.MapGroup("/api/devices").RequireAuthorization(ApiAuthentication.ViewerPolicy);

        api.MapGet("", async Task<IResult> (string? group, string? selector, IFleetStore store, FleetOptions options, TimeProvider time, CancellationToken ct) =>
        {
            var (filter, error) = await GroupsApi.FilterAsync(group, selector, store, ct).ConfigureAwait(false);
            if (error is not null)
                return error;
            var now = time.GetUtcNow();
            var offline = TimeSpan.FromSeconds(options.OfflineAfterSeconds);
            var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
            var drift = await DeviceView.DriftByDeviceAsync(store, ct).ConfigureAwait(false);
            return TypedResults.Ok(devices.Where(filter).Select(d => DeviceView.Of(d, now, offline, drift)).ToList());
        });

        api.MapGet("/{id}", async Task<IResult> (string id, IFleetStore store, FleetOptions options, TimeProvider time, CancellationToken ct) =>
        {
            if (!DeviceId.IsValid(id))
                return TypedResults.BadRequest(new ApiError("InvalidDeviceId", "device ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
            var device = await store.GetDeviceAsync(id, ct).ConfigureAwait(false);
            return device is null
                ? TypedResults.NotFound(new ApiError("UnknownDevice", $"no device '{id}' has been seen"))
                : TypedResults.Ok(DeviceView.Of(device, time.GetUtcNow(), TimeSpan.FromSeconds(options.OfflineAfterSeconds),
                    await DeviceView.DriftByDeviceAsync(store, ct).ConfigureAwait(false)));
        });
        api.MapGet("/{id}/telemetry", async Task<IResult> (string id, int? limit, IFleetStore store, CancellationToken ct) =>
        {
            if (!DeviceId.IsValid(id))
                return TypedResults.BadRequest(new ApiError("InvalidDeviceId", "device ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
            var records = await store.GetTelemetryAsync(id, Math.Clamp(limit ?? 1000, 1, 1_000_000), ct).ConfigureAwait(false);
            return TypedResults.Ok(records.ToList());
        });

        api.MapGet("/{id}/gaps", async Task<IResult> (string id, int? limit, IFleetStore store, CancellationToken ct) =>
        {
            if (!DeviceId.IsValid(id))
                return TypedResults.BadRequest(new ApiError("InvalidDeviceId", "device ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
            var gaps = await store.GetGapsAsync(id, Math.Clamp(limit ?? 1000, 1, 100_000), ct).ConfigureAwait(false);
            return TypedResults.Ok(gaps.ToList());
        });
        return app;
    }
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(List<DeviceView>))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Models.ModelRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Models.StateChangeRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Models.ModelView))]
[JsonSerializable(typeof(List<EdgeFleet.Fleet.Models.ModelView>))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Models.ModelVersion))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Models.ModelCard))]
[JsonSerializable(typeof(IReadOnlyList<EdgeFleet.Fleet.Models.ModelArtifact>))]
[JsonSerializable(typeof(DeviceView))]
[JsonSerializable(typeof(ApiError))]
[JsonSerializable(typeof(List<TelemetryRecord>))]
[JsonSerializable(typeof(List<TelemetryGap>))]
[JsonSerializable(typeof(HealthView))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Drift.DriftReport))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Drift.DriftAlert))]
[JsonSerializable(typeof(IReadOnlyList<EdgeFleet.Fleet.Drift.DriftAlert>))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Console.UserRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Console.UserChangeRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Console.UserView))]
[JsonSerializable(typeof(List<EdgeFleet.Fleet.Console.UserView>))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(EnrollmentTokenRequest))]
[JsonSerializable(typeof(EnrollmentTokenView))]
[JsonSerializable(typeof(ApiKeyRequest))]
[JsonSerializable(typeof(ApiKeyView))]
[JsonSerializable(typeof(List<ApiKeyView>))]
[JsonSerializable(typeof(List<AuditEntry>))]
[JsonSerializable(typeof(TagPatchRequest))]
[JsonSerializable(typeof(GroupRequest))]
[JsonSerializable(typeof(GroupChangeRequest))]
[JsonSerializable(typeof(GroupView))]
[JsonSerializable(typeof(List<GroupView>))]
[JsonSerializable(typeof(EdgeFleet.Shared.Identity.EnrollResponse))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Ota.ArtifactView))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Ota.DesiredView))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Ota.DesiredRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Rollouts.RolloutRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Rollouts.RolloutActionRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Rollouts.RolloutView))]
[JsonSerializable(typeof(List<EdgeFleet.Fleet.Rollouts.RolloutView>))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.RetrainingPolicy))]
[JsonSerializable(typeof(List<EdgeFleet.Fleet.Retraining.RetrainingPolicy>))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.RetrainingJob))]
[JsonSerializable(typeof(List<EdgeFleet.Fleet.Retraining.RetrainingJob>))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.RetrainingInputs))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.JobRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.JobStatusRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.LabelRequest))]
[JsonSerializable(typeof(EdgeFleet.Fleet.Retraining.LabelResult))]
[JsonSerializable(typeof(List<EdgeFleet.Fleet.Retraining.InputExample>))]
public sealed partial class FleetApiJsonContext : JsonSerializerContext;
