using System.Text.Json.Serialization;

namespace EdgeFleet.Agent.Configuration;

/// <summary>
/// The agent's configuration file (<c>/etc/edgefleet/agent.json</c> by default). Defaults live here and
/// in <c>packaging/agent.sample.json</c>; <see cref="AgentConfigLoader"/> validates on start-up.
/// </summary>
public sealed record AgentConfig
{
    /// <summary>Device id; when absent one is generated on first start and kept in the state directory.</summary>
    public string? DeviceId { get; init; }

    public string StateDirectory { get; init; } = "/var/lib/edgefleet";

    public string HardwareProfile { get; init; } = "x86-64-generic";

    public BrokerConfig Broker { get; init; } = new();

    public ModelConfig? Model { get; init; }

    public InputConfig Input { get; init; } = new();

    public TelemetryConfig Telemetry { get; init; } = new();
}

public sealed record BrokerConfig
{
    public string Host { get; init; } = "localhost";

    public int Port { get; init; } = 1883;

    public string? Username { get; init; }

    public string? Password { get; init; }

    public double MinReconnectSeconds { get; init; } = 0.5;

    public double MaxReconnectSeconds { get; init; } = 30;
}

public sealed record ModelConfig
{
    public required string Name { get; init; }

    public required string Version { get; init; }

    public required string Path { get; init; }

    /// <summary>Execution threads for ONNX Runtime; 0 lets it choose.</summary>
    public int IntraOpThreads { get; init; } = 1;
}

[JsonConverter(typeof(JsonStringEnumConverter<InputKind>))]
public enum InputKind
{
    /// <summary>The simulated vibration sensor of the demo.</summary>
    DemoVibration,

    /// <summary>One JSON array of samples per line, read from a file or FIFO that another process writes.</summary>
    JsonLines,
}

public sealed record InputConfig
{
    public InputKind Kind { get; init; } = InputKind.DemoVibration;

    /// <summary>For <see cref="InputKind.DemoVibration"/>: normal, imbalance or bearing-wear.</summary>
    public string Condition { get; init; } = "normal";

    /// <summary>For <see cref="InputKind.JsonLines"/>: the file or FIFO to read.</summary>
    public string? Path { get; init; }

    /// <summary>Windows per second the demo sensor produces.</summary>
    public double RateHz { get; init; } = 4;

    public int Seed { get; init; } = 1;
}

public sealed record TelemetryConfig
{
    public int MaxBatchRecords { get; init; } = 200;

    public double MaxBatchAgeSeconds { get; init; } = 1;

    public double AckTimeoutSeconds { get; init; } = 10;

    public double HealthIntervalSeconds { get; init; } = 10;
}

[JsonSourceGenerationOptions(
    System.Text.Json.JsonSerializerDefaults.Web,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    RespectNullableAnnotations = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    WriteIndented = true)]
[JsonSerializable(typeof(AgentConfig))]
internal sealed partial class AgentConfigJsonContext : JsonSerializerContext;
