using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Agent.Identity;

/// <summary>What <c>edgefleet-agent enroll</c> leaves in the state directory, beside <c>device.key</c>.</summary>
public sealed record EnrollmentState
{
    public required string DeviceId { get; init; }

    public required string FleetUrl { get; init; }

    public required string BrokerHost { get; init; }

    public required int BrokerPort { get; init; }

    public bool BrokerTls { get; set; }

    /// <summary><c>token</c> or <c>password</c> (see <see cref="EnrollResponse.BrokerAuth"/>).</summary>
    public required string BrokerAuth { get; init; }

    public string? BrokerPassword { get; set; }

    public required DateTimeOffset EnrolledAt { get; init; }

    public Dictionary<string, string> Tags { get; set; } = [];
}

/// <summary>
/// The device's identity after enrollment: its Ed25519 key (<c>{state}/device.key</c>, mode 0600, never
/// leaves the device) and <c>{state}/enrollment.json</c>. It mints the short-lived tokens the device shows the
/// broker at every connect and the fleet's API when it downloads an artifact.
/// </summary>
public sealed class DeviceCredentials : IDisposable
{
    public const string KeyFileName = "device.key";
    public const string StateFileName = "enrollment.json";

    /// <summary>Shorter than the fleet's accepted maximum (60 minutes by default); a fresh one at every connect.</summary>
    public static readonly TimeSpan TokenLifetime = TimeSpan.FromMinutes(10);

    private readonly SigningKey? _key;

    private DeviceCredentials(EnrollmentState? state, SigningKey? key)
    {
        State = state;
        _key = key;
    }

    public static DeviceCredentials None { get; } = new(null, null);

    public EnrollmentState? State { get; }

    public bool Enrolled => State is not null && _key is not null;

    public static string KeyPath(string stateDirectory) => Path.Combine(stateDirectory, KeyFileName);

    public static string StatePath(string stateDirectory) => Path.Combine(stateDirectory, StateFileName);

    /// <summary>Loads the enrollment, or <see cref="None"/> for a device not enrolled; a damaged file is a <see cref="ConfigException"/>.</summary>
    public static DeviceCredentials Load(string stateDirectory)
    {
        var statePath = StatePath(stateDirectory);
        if (!File.Exists(statePath))
            return None;
        EnrollmentState state;
        try
        {
            state = JsonSerializer.Deserialize(File.ReadAllBytes(statePath), EnrollmentJsonContext.Default.EnrollmentState)
                ?? throw new ConfigException($"{statePath} is empty");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{statePath} is damaged ({e.Message.ReplaceLineEndings(" ")}); enroll again");
        }
        try
        {
            return new DeviceCredentials(state, KeyFile.Read(KeyPath(stateDirectory), passphrase: null));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new ConfigException($"device key: {e.Message}");
        }
    }

    /// <summary>The MQTT password for this connect: a fresh device token, or the broker password issued at enrollment.</summary>
    public string? BrokerPassword(DateTimeOffset now) => State?.BrokerAuth switch
    {
        "token" => NewToken(now),
        "password" => State.BrokerPassword,
        _ => null,
    };

    public string NewToken(DateTimeOffset now) => _key is null || State is null
        ? throw new InvalidOperationException("the device is not enrolled")
        : DeviceToken.Create(_key, State.DeviceId, now, TokenLifetime);

    /// <summary>
    /// The configuration as the enrolled device runs it: broker address and fleet URL from the enrollment
    /// unless the file sets them; a configured device id must be the enrolled one.
    /// </summary>
    public AgentConfig Apply(AgentConfig config)
    {
        if (State is null)
            return config;
        if (config.DeviceId is { } configured && configured != State.DeviceId)
            throw new ConfigException($"deviceId '{configured}' differs from the enrolled id '{State.DeviceId}'; remove it from the configuration or enroll again");
        return config with
        {
            DeviceId = State.DeviceId,
            Broker = config.Broker with
            {
                Host = config.Broker.Host ?? State.BrokerHost,
                Port = config.Broker.Port ?? State.BrokerPort,
                Tls = config.Broker.Tls ?? State.BrokerTls,
            },
            Ota = config.Ota with { FleetUrl = config.Ota.FleetUrl ?? State.FleetUrl },
        };
    }

    public void Dispose() => _key?.Dispose();
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, RespectNullableAnnotations = true)]
[JsonSerializable(typeof(EnrollmentState))]
internal sealed partial class EnrollmentJsonContext : JsonSerializerContext;
