using System.Security.Cryptography;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// How the fleet service's own MQTT client reaches the broker. In embedded mode it connects over loopback
/// with a secret generated for this process, which the embedded broker alone knows; in external mode it
/// uses the configured broker and credentials.
/// </summary>
/// <param name="SharedGroup">External mode: device topics are consumed through the MQTT v5 shared subscription
/// <c>$share/{group}/…</c>, so several fleet instances split the messages instead of each getting all.</param>
public sealed record BrokerConnection(string Host, int Port, string? Username, string? Password, string? SharedGroup = null)
{
    public const string ServiceUsername = "edgefleet-service";

    public static BrokerConnection For(BrokerOptions options) => options.Mode == BrokerMode.Embedded
        ? new BrokerConnection("127.0.0.1", options.Port, ServiceUsername, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)))
        : new BrokerConnection(options.Host, options.Port, options.Username, options.Password, options.SharedGroup);

    /// <summary>Keeps the secret out of logs and exception messages.</summary>
    public override string ToString() => $"{Host}:{Port} as {Username ?? "(anonymous)"}";
}
