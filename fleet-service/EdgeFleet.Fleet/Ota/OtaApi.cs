using System.Security.Claims;
using System.Text.Json;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Ota;

public sealed record ArtifactView(string Sha256, long Length, string Url);

public sealed record DesiredView(string Device, string ModelId, long Version, bool Published);

/// <summary>The body of <c>PUT /api/devices/{id}/desired</c>: the signed documents, as the CLI writes them.</summary>
public sealed record DesiredRequest
{
    public required JsonElement Manifest { get; init; }

    public required JsonElement KeySet { get; init; }

    public IReadOnlyList<JsonElement> Roots { get; set; } = [];
}

/// <summary>
/// Artifact upload and download (with HTTP range requests, so devices resume), and the desired model of a
/// device. The fleet checks the manifest's form; the device checks its signatures against its own pinned root.
/// </summary>
public static class OtaApi
{
    public const long MaxArtifactBytes = 2L << 30;

    public static IEndpointRouteBuilder MapOtaApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/artifacts", async Task<IResult> (HttpRequest request, ClaimsPrincipal user, ArtifactStore store, IFleetStore fleet, TimeProvider time, CancellationToken ct) =>
        {
            try
            {
                var (sha, length) = await store.PutAsync(request.Body, MaxArtifactBytes, ct).ConfigureAwait(false);
                await IdentityApi.AuditAsync(fleet, user, "artifact.upload", sha, null, $$"""{"length":{{length}}}""", time, ct).ConfigureAwait(false);
                return TypedResults.Ok(new ArtifactView(sha, length, $"/api/artifacts/{sha}"));
            }
            catch (InvalidDataException e)
            {
                return TypedResults.BadRequest(new ApiError("BadArtifact", e.Message));
            }
        }).WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxArtifactBytes)).RequireAuthorization(ApiAuthentication.OperatorPolicy);

        app.MapGet("/api/artifacts/{sha256}", IResult (string sha256, ArtifactStore store) =>
            store.Find(sha256) is { } path
                ? TypedResults.PhysicalFile(path, "application/octet-stream", enableRangeProcessing: true)
                : TypedResults.NotFound(new ApiError("UnknownArtifact", $"no artifact with sha256 {LogText.Sanitize(sha256)}")))
            .RequireAuthorization(ApiAuthentication.ArtifactReaderPolicy);

        app.MapPut("/api/devices/{id}/desired", async Task<IResult> (string id, DesiredRequest body, ClaimsPrincipal user, IFleetStore store, FleetMqttClient client, TimeProvider time, CancellationToken ct) =>
        {
            if (!DeviceId.IsValid(id))
                return TypedResults.BadRequest(new ApiError("InvalidDeviceId", "device ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
            var manifest = SignedDocuments.Parse(Utf8(body.Manifest), OtaJsonContext.Default.ModelManifest, ModelManifest.TypeName);
            if (!manifest.Ok)
                return TypedResults.BadRequest(new ApiError(OtaErrors.Name(manifest.Failure!.Code), manifest.Failure.Reason));
            if (ManifestRules.Check(manifest.Document!.Body) is { } problem)
                return TypedResults.BadRequest(new ApiError(OtaErrors.Name(OtaError.Malformed), problem));
            var desired = new DesiredState { DeviceId = id, Manifest = body.Manifest, KeySet = body.KeySet, Roots = body.Roots };
            var payload = WireReader.Write(desired, WireJsonContext.Default.DesiredState);
            if (WireReader.Read(payload, WireJsonContext.Default.DesiredState, id) is { Ok: false } invalid)
                return TypedResults.BadRequest(new ApiError(invalid.Error.ToString(), invalid.Reason));
            await SetDesiredAsync(store, client, id, payload, ct).ConfigureAwait(false);
            var m = manifest.Document.Body;
            await IdentityApi.AuditAsync(store, user, "device.desired.set", id, null,
                $$"""{"modelId":{{JsonSerializer.Serialize(m.ModelId, FleetApiJsonContext.Default.String)}},"version":{{m.Version}}}""", time, ct).ConfigureAwait(false);
            return TypedResults.Ok(new DesiredView(id, m.ModelId, m.Version, client.Connected));
        }).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        return app;
    }

    /// <summary>Keeps a device's desired state and publishes it retained (when the broker is there; else at reconnect and at the device's hello).</summary>
    public static async Task SetDesiredAsync(IFleetStore store, FleetMqttClient client, string deviceId, byte[] payload, CancellationToken ct)
    {
        await store.SetDesiredAsync(deviceId, payload, ct).ConfigureAwait(false);
        if (client.Connected)
            await client.PublishDesiredAsync(deviceId, payload, ct).ConfigureAwait(false);
    }

    private static byte[] Utf8(JsonElement element) => System.Text.Encoding.UTF8.GetBytes(element.GetRawText());
}
