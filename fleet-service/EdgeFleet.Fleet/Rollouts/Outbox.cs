using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Rollouts;

/// <summary>
/// The desired states one rollout step or operator action decides, held until the rollout's revision-checked save
/// is accepted, then stored and published (save, then publish). A refused save sends nothing: the devices stay
/// where the stored rollout says they are, and the next step decides again from the rollout as it now is.
/// </summary>
public sealed class Outbox
{
    private readonly List<(string DeviceId, byte[] Payload)> _messages = [];

    public int Count => _messages.Count;

    public void Add(string deviceId, byte[] payload) => _messages.Add((deviceId, payload));

    public async Task SendAsync(IFleetStore store, FleetMqttClient mqtt, CancellationToken ct)
    {
        foreach (var (deviceId, payload) in _messages)
            await Ota.OtaApi.SetDesiredAsync(store, mqtt, deviceId, payload, ct).ConfigureAwait(false);
        _messages.Clear();
    }
}
