using System.Text.Json.Serialization;

namespace EdgeFleet.Agent.Configuration;

/// <summary>
/// The agent's configuration file (<c>/etc/edgefleet/agent.json</c> by default). Defaults live here and
/// in <c>packaging/agent.sample.json</c>; <see cref="AgentConfigLoader"/> validates on start-up.
/// </summary>
public sealed record AgentConfig
{
    /// <summary>Device id; when absent one is generated on first start and kept in the state directory.</summary>
    public string? DeviceId { get; set; }

    public string StateDirectory { get; set; } = "/var/lib/edgefleet";

    /// <summary>The device class (a file in <see cref="ProfilesDirectory"/>), or "auto" to detect it at start.</summary>
    public string HardwareProfile { get; set; } = "x86-64-generic";

    public string ProfilesDirectory { get; set; } = Profiles.HardwareProfiles.DefaultDirectory;

    public BrokerConfig Broker { get; set; } = new();

    /// <summary>
    /// PEM file of the CA that issued the fleet's TLS certificates (broker and HTTPS API), for a fleet on a
    /// private PKI; unset: the system's trusted CAs.
    /// </summary>
    public string? FleetCaFile { get; set; }

    public ModelConfig? Model { get; set; }

    public InputConfig Input { get; set; } = new();

    public TelemetryConfig Telemetry { get; set; } = new();

    public OtaConfig Ota { get; set; } = new();

    public FallbackConfig Fallback { get; set; } = new();

    public LocalApiConfig LocalApi { get; set; } = new();

    /// <summary>Trace, Debug, Information, Warning, Error or Critical.</summary>
    [JsonConverter(typeof(JsonStringEnumConverter<Microsoft.Extensions.Logging.LogLevel>))]
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; set; } = Microsoft.Extensions.Logging.LogLevel.Information;
}

/// <summary>
/// What happens when the active model fails: the model it replaced stays loaded as the fallback, and a circuit
/// breaker sends requests there while the active model keeps failing.
/// </summary>
public sealed record FallbackConfig
{
    /// <summary>Keep the previous model loaded and serve from it when the active one fails (costs its memory).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Consecutive failures (errors, or runs over the latency budget) that open the breaker.</summary>
    public int FailureThreshold { get; set; } = 3;

    /// <summary>How long an open breaker sends requests to the fallback before trying the active model again.</summary>
    public double OpenSeconds { get; set; } = 30;

    /// <summary>A run slower than this counts as a failure (the result is still used); 0: no budget.</summary>
    public double LatencyBudgetMs { get; set; }
}

/// <summary>
/// The local inference API for applications on the device: HTTP/1.1 on a Unix domain socket (and optionally
/// on a loopback TCP port). Access is the socket file's: owner and group edgefleet, mode 0660.
/// </summary>
public sealed record LocalApiConfig
{
    public bool Enabled { get; set; } = true;

    /// <summary>Unset: <c>api.sock</c> in systemd's RuntimeDirectory (<c>/run/edgefleet</c>), else in the state directory.</summary>
    public string? Socket { get; set; }

    /// <summary>Also listen on this loopback TCP port (127.0.0.1 and ::1); unset: the socket only.</summary>
    public int? TcpPort { get; set; }

    /// <summary>The largest request body accepted (a binary tensor body included); larger ones get 413.</summary>
    public long MaxRequestBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>The socket file's permission bits, octal.</summary>
    public string SocketMode { get; set; } = "0660";
}

/// <summary>Signed model updates. Without a pinned root the agent refuses every update (and says so).</summary>
public sealed record OtaConfig
{
    /// <summary>The root of trust, pinned at install time (<c>edgefleet keys init</c> writes it).</summary>
    public string RootPath { get; set; } = "/etc/edgefleet/root.json";

    /// <summary>Base URL for artifact URLs that manifests give as paths, e.g. http://fleet.example:5080.</summary>
    public string? FleetUrl { get; set; }

    public int MaxDownloadAttempts { get; set; } = 5;

    /// <summary>A download attempt that receives nothing for this long is abandoned (its bytes are kept for the next).</summary>
    public double DownloadStallSeconds { get; set; } = 30;

    /// <summary>An attempt's time budget: 60 s plus the bytes left at this rate; past it the attempt is abandoned.</summary>
    public double MinDownloadBytesPerSecond { get; set; } = 1024;

    /// <summary>After activation, this many restarts within the probation window roll the model back.</summary>
    public int CrashLoopRestarts { get; set; } = 3;

    public double ProbationMinutes { get; set; } = 10;

    /// <summary>During probation, this many consecutive failed inferences roll the model back.</summary>
    public int InferenceFailureLimit { get; set; } = 5;

    /// <summary>
    /// Accept a signed manifest for a model other than the one served. Off: a validly signed manifest of another
    /// model (meant for other devices) is refused as <c>wrong-model</c>; turn on to move a device to a new model.
    /// </summary>
    public bool AllowModelChange { get; set; }

    /// <summary>
    /// How artifacts come: <c>auto</c> (HTTP, and through the broker when the artifact's HTTP host cannot be reached),
    /// <c>http</c> only, or <c>mqtt</c> only (sites whose devices reach only the broker).
    /// </summary>
    public ArtifactTransportMode Transport { get; set; } = ArtifactTransportMode.Auto;

    /// <summary>The largest chunk asked for through the broker (the transfer picks smaller ones on slow links).</summary>
    public int MaxChunkBytes { get; set; } = EdgeFleet.Shared.Wire.ChunkRequest.MaxLength;
}

[JsonConverter(typeof(JsonStringEnumConverter<ArtifactTransportMode>))]
public enum ArtifactTransportMode
{
    Auto,
    Http,
    Mqtt,
}

public sealed record BrokerConfig
{
    /// <summary>Unset: the broker the fleet named at enrollment, else localhost.</summary>
    public string? Host { get; set; }

    /// <summary>Unset: the port the fleet named at enrollment, else 1883.</summary>
    public int? Port { get; set; }

    [JsonIgnore]
    public string EffectiveHost => Host ?? "localhost";

    [JsonIgnore]
    public int EffectivePort => Port ?? 1883;

    /// <summary>MQTT over TLS. Unset: as the fleet said at enrollment, else plain MQTT.</summary>
    public bool? Tls { get; set; }

    /// <summary>
    /// Mutual TLS: a PEM client certificate (subject CN = the device id) and its key, issued by the CA the
    /// fleet's broker trusts for devices. With it the broker needs no device token.
    /// </summary>
    public string? ClientCertificateFile { get; set; }

    public string? ClientKeyFile { get; set; }

    /// <summary>Credentials for a broker without device tokens; an enrolled device uses its own instead.</summary>
    public string? Username { get; set; }

    public string? Password { get; set; }

    public double MinReconnectSeconds { get; set; } = 0.5;

    public double MaxReconnectSeconds { get; set; } = 30;
}

public sealed record ModelConfig
{
    public required string Name { get; set; }

    public required string Version { get; set; }

    public required string Path { get; set; }

    /// <summary>Execution threads for ONNX Runtime; 0 lets it choose; unset takes the hardware profile's.</summary>
    public int? IntraOpThreads { get; set; }

    /// <summary>Drift sketches for this (factory) model; models installed over the air bring theirs in the signed manifest.</summary>
    public EdgeFleet.Shared.Stats.DriftSpec? Drift { get; set; }
}

[JsonConverter(typeof(JsonStringEnumConverter<InputKind>))]
public enum InputKind
{
    /// <summary>The simulated vibration sensor of the demo.</summary>
    DemoVibration,

    /// <summary>One JSON array of samples per line, read from a file or FIFO that another process writes.</summary>
    JsonLines,

    /// <summary>No sensor input: applications send their own data through the local API, and any model loads.</summary>
    None,
}

public sealed record InputConfig
{
    public InputKind Kind { get; set; } = InputKind.DemoVibration;

    /// <summary>For <see cref="InputKind.DemoVibration"/>: normal, imbalance or bearing-wear.</summary>
    public string Condition { get; set; } = "normal";

    /// <summary>For <see cref="InputKind.JsonLines"/>: the file or FIFO to read.</summary>
    public string? Path { get; set; }

    /// <summary>Windows per second the demo sensor produces.</summary>
    public double RateHz { get; set; } = 4;

    public int Seed { get; set; } = 1;

    /// <summary>
    /// For the demo sensor: after this many seconds its sensitivity becomes <see cref="DriftGain"/> times what it was
    /// (a replaced or re-mounted accelerometer), so the demo shows drift. Unset: no drift.
    /// </summary>
    public double? DriftAfterSeconds { get; set; }

    public double DriftGain { get; set; } = 3;
}

public sealed record TelemetryConfig
{
    public int MaxBatchRecords { get; set; } = 200;

    /// <summary>Most bytes of record JSON in one batch, before compression.</summary>
    public long MaxBatchBytes { get; set; } = 512 * 1024;

    public double MaxBatchAgeSeconds { get; set; } = 1;

    public double AckTimeoutSeconds { get; set; } = 10;

    public double HealthIntervalSeconds { get; set; } = 10;

    /// <summary>Each model version's latency histogram is sent once per window of this length.</summary>
    public double LatencyWindowSeconds { get; set; } = 60;

    /// <summary>
    /// Results whose top-class confidence is below this are sent as hard examples, with their input (0: none).
    /// A model's own <c>edgefleet.hard_example_below</c> metadata takes precedence.
    /// </summary>
    public double HardExampleBelow { get; set; } = 0.6;

    /// <summary>Hard examples may take this many bytes of telemetry per hour; the rest are counted, not sent.</summary>
    public long HardExampleBytesPerHour { get; set; } = 1024 * 1024;

    /// <summary>The buffer's record limit; beyond it the lowest priority, oldest records are evicted.</summary>
    public long MaxBufferRecords { get; set; } = 200_000;

    /// <summary>The buffer's byte limit (record bodies and headers).</summary>
    public long MaxBufferBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// Low and normal priority records (inference results, health, drift and latency windows) wait in memory
    /// up to this long to be committed together, because every commit writes whole pages to flash; high and
    /// critical records (alarms, OTA outcomes, audit) commit at once and take the waiting ones with them.
    /// A power cut or kill -9 loses at most this much of the low and normal records; 0 commits every record
    /// as it comes.
    /// </summary>
    public double CommitWindowSeconds { get; set; } = 10;

    /// <summary>Below this much free space on the state directory's file system, appends are refused.</summary>
    public long MinFreeDiskBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>Time to live per kind (wire names), in hours; kinds not listed wait as long as they must.</summary>
    public Dictionary<string, double> TtlHours { get; set; } = new() { ["inference"] = 168, ["health"] = 168 };

    /// <summary>Bytes the agent may send per UTC day (cellular plans); 0 means no limit.</summary>
    public long DailyByteBudget { get; set; }

    /// <summary>The last part of the daily budget, in percent, kept for high and critical records.</summary>
    public double BudgetReservePercent { get; set; } = 10;
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
