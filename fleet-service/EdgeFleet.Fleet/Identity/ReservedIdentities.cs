using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// Devices whose ids collide with the fleet's own principals: enrolled under the reserved namespace before it was
/// reserved, or under the name of the fleet's account on an external broker. Such a device is refused by the
/// embedded broker and by the Mosquitto account calls; this check names it at start and in <c>/api/health</c>
/// so that an operator revokes it (and re-keys the broker account it may have touched).
/// </summary>
public sealed partial class ReservedIdentities(IFleetStore store, FleetOptions options, ILogger<ReservedIdentities> log) : IHostedService
{
    /// <summary>The ids of devices, not revoked, that collide with the fleet's principals.</summary>
    public static IReadOnlyList<string> Collisions(IEnumerable<DeviceRecord> devices, BrokerOptions broker) =>
        [.. devices.Where(d => d.RevokedAt is null && Collides(d.Id, broker)).Select(d => d.Id)];

    public static bool Collides(string deviceId, BrokerOptions broker) =>
        DeviceId.IsReserved(deviceId) || (broker.Username is { } account && string.Equals(account, deviceId, StringComparison.OrdinalIgnoreCase));

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var id in Collisions(await store.ListDevicesAsync(cancellationToken).ConfigureAwait(false), options.Broker))
            Log.Collision(log, LogText.Sanitize(id));
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static partial class Log
    {
        [LoggerMessage(6210, LogLevel.Critical, "Device '{DeviceId}' is enrolled under an id reserved for the fleet's own accounts and is refused; "
            + "revoke it (edgefleet devices revoke) and, on an external broker, set a new password for the fleet's account")]
        public static partial void Collision(ILogger logger, string deviceId);
    }
}
