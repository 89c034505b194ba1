namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// Tells the parts of this instance that hold device sessions (the embedded broker, the authenticator's
/// cache) that a device was revoked, so it is disconnected now rather than at its next connect.
/// </summary>
public sealed class DeviceRevocation
{
    private readonly List<Func<string, CancellationToken, Task>> _handlers = [];

    public void Subscribe(Func<string, CancellationToken, Task> handler)
    {
        lock (_handlers)
            _handlers.Add(handler);
    }

    public async Task RevokedAsync(string deviceId, CancellationToken cancellationToken)
    {
        Func<string, CancellationToken, Task>[] handlers;
        lock (_handlers)
            handlers = [.. _handlers];
        foreach (var handler in handlers)
            await handler(deviceId, cancellationToken).ConfigureAwait(false);
    }
}
