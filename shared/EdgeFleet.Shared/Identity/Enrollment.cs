namespace EdgeFleet.Shared.Identity;

/// <summary>
/// <c>POST /api/enroll</c>: a device trades a one-time enrollment token for registration of its public key.
/// </summary>
public sealed record EnrollRequest
{
    /// <summary>The one-time enrollment token an operator issued (<c>edgefleet enroll-token create</c>).</summary>
    public required string Token { get; init; }

    /// <summary>The id the device asks for (its configured or generated id).</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device's raw Ed25519 public key, base64.</summary>
    public required string PublicKey { get; init; }

    public string? HardwareProfile { get; set; }

    public string? AgentVersion { get; set; }
}

/// <summary>What an enrolled device needs to connect.</summary>
public sealed record EnrollResponse
{
    public required string DeviceId { get; init; }

    /// <summary>The MQTT broker devices connect to, as the fleet announces it.</summary>
    public required string BrokerHost { get; init; }

    public required int BrokerPort { get; init; }

    /// <summary>Whether the broker expects TLS (MQTT over TLS, usually port 8883).</summary>
    public bool BrokerTls { get; set; }

    /// <summary>
    /// <c>token</c>: the device authenticates with <see cref="DeviceToken"/>s (embedded broker).
    /// <c>password</c>: an external broker that cannot check signatures (Mosquitto) takes
    /// <see cref="BrokerPassword"/>, issued once here and kept by the device.
    /// </summary>
    public required string BrokerAuth { get; init; }

    public string? BrokerPassword { get; set; }

    /// <summary>Tags the enrollment token put on the device (site, region, customer).</summary>
    public Dictionary<string, string> Tags { get; set; } = [];
}

/// <summary>Reasons an enrollment is refused; the API returns them as <c>error</c>.</summary>
public static class EnrollErrors
{
    public const string InvalidToken = "invalid-token";
    public const string TokenExpired = "token-expired";
    public const string TokenUsed = "token-used";
    public const string DeviceIdTaken = "device-id-taken";
    public const string DeviceRevoked = "device-revoked";
    public const string Malformed = "malformed";

    /// <summary>The id is in the fleet's own namespace (<see cref="Wire.DeviceId.ReservedPrefix"/>) or is its broker account.</summary>
    public const string ReservedDeviceId = "reserved-device-id";

    /// <summary>Too many failed enrollments from this address in the last minute; retry after the response's Retry-After.</summary>
    public const string Throttled = "throttled";

    /// <summary>The fleet could not create the device's broker account; retrying the same enrollment is safe.</summary>
    public const string BrokerUnavailable = "broker-unavailable";
}
