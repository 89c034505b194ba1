using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// The broker's topic ACL for devices: a device (MQTT client id = device id) may publish only the
/// device-to-fleet topics under its own <c>ef/v1/{id}/</c>, and subscribe only under that prefix.
/// </summary>
public static class TopicAccess
{
    public static bool MayPublish(string deviceId, string topic) =>
        Topics.TryParse(topic, out var owner, out var kind)
        && string.Equals(owner, deviceId, StringComparison.Ordinal)
        && Topics.IsFromDevice(kind);

    public static bool MaySubscribe(string deviceId, string filter)
    {
        var prefix = Topics.DevicePrefix(deviceId);
        if (!filter.StartsWith(prefix, StringComparison.Ordinal) || filter.Length == prefix.Length)
            return false;
        var rest = filter.AsSpan(prefix.Length);
        // '#' only as the whole last level; '+' never (it could not escape the prefix, but keeps the rule simple).
        var hash = rest.IndexOf('#');
        return rest.IndexOf('+') < 0 && (hash < 0 || (hash == rest.Length - 1 && (hash == 0 || rest[hash - 1] == '/')));
    }
}
