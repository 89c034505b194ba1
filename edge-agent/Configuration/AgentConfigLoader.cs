using System.Text.Json;
using EdgeFleet.Shared.Demo;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Configuration;

/// <summary>Reads and validates the configuration file; every problem is a one-line reason.</summary>
public static class AgentConfigLoader
{
    public const string DefaultPath = "/etc/edgefleet/agent.json";

    public static AgentConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new ConfigException($"configuration file {path} does not exist");
        AgentConfig? config;
        try
        {
            using var stream = File.OpenRead(path);
            config = JsonSerializer.Deserialize(stream, AgentConfigJsonContext.Default.AgentConfig);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{path}: {e.Message.ReplaceLineEndings(" ")}");
        }
        if (config is null)
            throw new ConfigException($"{path}: the file holds null");
        var baseDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        config = Resolve(config, baseDir);
        Validate(config);
        return config;
    }

    /// <summary>Relative paths in the file are relative to the file's folder.</summary>
    private static AgentConfig Resolve(AgentConfig c, string baseDir) => c with
    {
        StateDirectory = Path.GetFullPath(c.StateDirectory, baseDir),
        Model = c.Model is null ? null : c.Model with { Path = Path.GetFullPath(c.Model.Path, baseDir) },
        Input = c.Input.Path is null ? c.Input : c.Input with { Path = Path.GetFullPath(c.Input.Path, baseDir) },
        FleetCaFile = c.FleetCaFile is null ? null : Path.GetFullPath(c.FleetCaFile, baseDir),
        LocalApi = c.LocalApi.Socket is null ? c.LocalApi : c.LocalApi with { Socket = Path.GetFullPath(c.LocalApi.Socket, baseDir) },
        Broker = c.Broker with
        {
            ClientCertificateFile = c.Broker.ClientCertificateFile is null ? null : Path.GetFullPath(c.Broker.ClientCertificateFile, baseDir),
            ClientKeyFile = c.Broker.ClientKeyFile is null ? null : Path.GetFullPath(c.Broker.ClientKeyFile, baseDir),
        },
    };

    public static void Validate(AgentConfig c)
    {
        if (c.DeviceId is not null && !DeviceId.IsValid(c.DeviceId))
            throw new ConfigException($"deviceId '{c.DeviceId}' is invalid: use 1-64 of a-z, 0-9, '-', '_', '.'");
        if (ProfileName.Problem(c.HardwareProfile) is { } profile)
            throw new ConfigException($"{profile}; got '{c.HardwareProfile}'");
        if (c.Broker.Port is { } port && port is < 1 or > 65535)
            throw new ConfigException($"broker.port {c.Broker.Port} is out of range");
        if ((c.Broker.ClientCertificateFile is null) != (c.Broker.ClientKeyFile is null))
            throw new ConfigException("broker.clientCertificateFile and broker.clientKeyFile go together");
        foreach (var (name, file) in new[] { ("fleetCaFile", c.FleetCaFile), ("broker.clientCertificateFile", c.Broker.ClientCertificateFile), ("broker.clientKeyFile", c.Broker.ClientKeyFile) })
        {
            if (file is not null && !File.Exists(file))
                throw new ConfigException($"{name} {file} does not exist");
        }
        if (c.Broker.MinReconnectSeconds <= 0 || c.Broker.MaxReconnectSeconds < c.Broker.MinReconnectSeconds)
            throw new ConfigException("broker reconnect delays must satisfy 0 < min <= max");
        if (c.Input.Kind == InputKind.DemoVibration && !MachineConditions.TryParse(c.Input.Condition, out _))
            throw new ConfigException($"input.condition '{c.Input.Condition}' is not one of {string.Join(", ", MachineConditions.Labels)}");
        if (c.Input.Kind == InputKind.JsonLines && string.IsNullOrEmpty(c.Input.Path))
            throw new ConfigException("input.path is required for the jsonLines input");
        if (c.Input.DriftAfterSeconds is < 0 || c.Input.DriftGain is <= 0 or > 100)
            throw new ConfigException("input.driftAfterSeconds must not be negative and input.driftGain must be within (0, 100]");
        if (c.Input.RateHz is <= 0 or > 1000)
            throw new ConfigException("input.rateHz must be within (0, 1000]");
        if (c.Telemetry.MaxBatchRecords is < 1 or > Protocol.MaxRecordsPerBatch)
            throw new ConfigException($"telemetry.maxBatchRecords must be within 1..{Protocol.MaxRecordsPerBatch}");
        if (c.Telemetry.MaxBatchAgeSeconds <= 0 || c.Telemetry.AckTimeoutSeconds <= 0 || c.Telemetry.HealthIntervalSeconds <= 0 || c.Telemetry.LatencyWindowSeconds <= 0)
            throw new ConfigException("telemetry intervals must be positive");
        if (c.Telemetry.CommitWindowSeconds is < 0 or > 300 || double.IsNaN(c.Telemetry.CommitWindowSeconds))
            throw new ConfigException("telemetry.commitWindowSeconds must be within [0, 300]");
        if (c.Telemetry.HardExampleBelow is < 0 or > 1 || c.Telemetry.HardExampleBytesPerHour < 0)
            throw new ConfigException("telemetry.hardExampleBelow must be within [0, 1] and hardExampleBytesPerHour not negative");
        if (c.Fallback.FailureThreshold < 1 || c.Fallback.OpenSeconds <= 0 || c.Fallback.LatencyBudgetMs < 0)
            throw new ConfigException("fallback.failureThreshold must be at least 1, openSeconds positive and latencyBudgetMs not negative");
        if (c.Ota.MaxChunkBytes is < Ota.ChunkTransfer.MinChunkBytes or > EdgeFleet.Shared.Wire.ChunkRequest.MaxLength)
            throw new ConfigException($"ota.maxChunkBytes must be within {Ota.ChunkTransfer.MinChunkBytes}-{EdgeFleet.Shared.Wire.ChunkRequest.MaxLength}");
        if (!Enum.IsDefined(c.Ota.Transport))
            throw new ConfigException("ota.transport must be auto, http or mqtt");
        if (c.Ota.DownloadStallSeconds is <= 0 or > 3600 || c.Ota.MinDownloadBytesPerSecond is <= 0 or > 1e9)
            throw new ConfigException("ota.downloadStallSeconds must be within (0, 3600] and ota.minDownloadBytesPerSecond positive");
        if (c.LocalApi.TcpPort is { } apiPort && apiPort is < 1 or > 65535)
            throw new ConfigException($"localApi.tcpPort {apiPort} is out of range");
        if (c.LocalApi.MaxRequestBytes < 1024)
            throw new ConfigException("localApi.maxRequestBytes must be at least 1024");
        if (!LocalApi.LocalApiService.TryParseMode(c.LocalApi.SocketMode, out _))
            throw new ConfigException($"localApi.socketMode '{c.LocalApi.SocketMode}' is not an octal permission such as 0660");
        if (c.LocalApi.Socket is { Length: > 100 } longPath)
            throw new ConfigException($"localApi.socket {longPath} is longer than a Unix socket path may be (100 characters here)");
        if (c.Model?.Drift?.Validate() is { } drift)
            throw new ConfigException("model." + drift);
        ValidateBuffer(c.Telemetry);
    }

    private static readonly string[] KindNames = ["inference", "health", "event", "alarm", "audit", "ota-status", "evictions", "latency", "hard-example", "shadow", "sketch"];

    private static void ValidateBuffer(TelemetryConfig t)
    {
        if (t.MaxBufferRecords < 10 || t.MaxBufferBytes < 64 * 1024)
            throw new ConfigException("telemetry.maxBufferRecords must be at least 10 and telemetry.maxBufferBytes at least 65536");
        if (t.MaxBatchBytes is < 4096 or > Protocol.MaxBatchJsonBytes)
            throw new ConfigException($"telemetry.maxBatchBytes must be within 4096..{Protocol.MaxBatchJsonBytes}");
        if (t.MinFreeDiskBytes < 0 || t.DailyByteBudget < 0 || t.BudgetReservePercent is < 0 or >= 100)
            throw new ConfigException("telemetry.minFreeDiskBytes and dailyByteBudget must not be negative, budgetReservePercent within [0, 100)");
        foreach (var (kind, hours) in t.TtlHours)
        {
            if (!KindNames.Contains(kind))
                throw new ConfigException($"telemetry.ttlHours names '{kind}', which is not one of {string.Join(", ", KindNames)}");
            if (hours < 0)
                throw new ConfigException($"telemetry.ttlHours.{kind} must not be negative");
        }
    }
}

public sealed class ConfigException(string message) : Exception(message);
