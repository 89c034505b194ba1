namespace EdgeFleet.Fleet;

/// <summary>The fleet service's configuration, section <c>Fleet</c>. Defaults are written here and in appsettings.json.</summary>
public sealed record FleetOptions
{
    public const string Section = "Fleet";

    public BrokerOptions Broker { get; init; } = new();

    public StorageOptions Storage { get; init; } = new();

    public SecurityOptions Security { get; init; } = new();

    public Identity.TlsOptions Tls { get; init; } = new();

    /// <summary>A device that has sent nothing for this long is shown as offline.</summary>
    public double OfflineAfterSeconds { get; init; } = 90;

    public SigningOptions Signing { get; init; } = new();

    /// <summary>How often the rollout engine looks at every active rollout.</summary>
    public double RolloutTickSeconds { get; init; } = 1;

    public DriftOptions Drift { get; init; } = new();

    public RetrainingOptions Retraining { get; init; } = new();

    public string? Validate()
    {
        if (Broker.Port is < 0 or > 65535)
            return $"Fleet:Broker:Port {Broker.Port} is out of range";
        if (Broker.Mode == BrokerMode.External && (string.IsNullOrWhiteSpace(Broker.SharedGroup) || Broker.SharedGroup.Any(c => c is '/' or '+' or '#')))
            return "Fleet:Broker:SharedGroup must be a non-empty name without '/', '+' or '#'";
        if (Broker.Mode == BrokerMode.External && string.IsNullOrWhiteSpace(Broker.Host))
            return "Fleet:Broker:Host is required in External mode";
        if (Broker.DeviceAccounts == DeviceAccounts.MosquittoDynamicSecurity && (Broker.Mode != BrokerMode.External || string.IsNullOrEmpty(Broker.Username)))
            return "Fleet:Broker:DeviceAccounts MosquittoDynamicSecurity needs External mode and Fleet:Broker:Username (the dynamic-security admin)";
        if (Broker.Validate() is { } broker)
            return broker;
        if (!Storage.IsPostgreSql && !Storage.Provider.Equals(StorageOptions.LiteDb, StringComparison.OrdinalIgnoreCase))
            return $"Fleet:Storage:Provider '{Storage.Provider}' is not one of LiteDb, PostgreSql";
        if (Storage.IsPostgreSql && string.IsNullOrWhiteSpace(Storage.ConnectionString))
            return "Fleet:Storage:ConnectionString is required for PostgreSql";
        if (!Storage.IsPostgreSql && string.IsNullOrWhiteSpace(Storage.Path))
            return "Fleet:Storage:Path is required";
        if (string.IsNullOrWhiteSpace(Storage.ArtifactsPath))
            return "Fleet:Storage:ArtifactsPath is required";
        if (Security.Validate() is { } security)
            return security;
        if (Tls.Validate() is { } tls)
            return tls;
        if (Broker.TlsPort is < 1 or > 65535 || (Tls.Enabled && Broker.Mode == BrokerMode.Embedded && Broker.TlsPort == Broker.Port))
            return $"Fleet:Broker:TlsPort {Broker.TlsPort} is out of range or the plain port";
        if (Broker.PublicPort is < 0 or > 65535)
            return $"Fleet:Broker:PublicPort {Broker.PublicPort} is out of range";
        if (OfflineAfterSeconds <= 0)
            return "Fleet:OfflineAfterSeconds must be positive";
        if (!(RolloutTickSeconds > 0) || RolloutTickSeconds > 3600)
            return "Fleet:RolloutTickSeconds must be within (0, 3600]";
        if (Drift.Validate() is { } drift)
            return drift;
        if (Retraining.Validate() is { } retraining)
            return retraining;
        return null;
    }
}

public enum BrokerMode
{
    /// <summary>Run an MQTT broker inside the fleet service (the zero set-up default).</summary>
    Embedded,

    /// <summary>Connect to an operator's broker (Mosquitto, EMQX) as a client.</summary>
    External,
}

public sealed record BrokerOptions
{
    public BrokerMode Mode { get; init; } = BrokerMode.Embedded;

    /// <summary>External mode: the broker's host.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>Embedded mode: the port to listen on (see <see cref="BindAddress"/>). External mode: the broker's port.</summary>
    public int Port { get; init; } = 1883;

    /// <summary>
    /// Embedded mode: the address devices reach the broker on: the TLS listener when <c>Fleet:Tls</c> is set (then
    /// the plain port stays on loopback for the fleet itself), else the plain one. Unset: loopback only
    /// (127.0.0.1 and ::1) without TLS, every address with TLS. <c>*</c>: every IPv4 and IPv6 address; or one
    /// address such as <c>0.0.0.0</c> or <c>192.168.1.10</c>. Devices on the network without TLS need it set.
    /// </summary>
    public string? BindAddress { get; init; }

    /// <summary>Embedded mode: connections that may wait for their CONNECT at once; more are closed on accept.</summary>
    public int MaxPendingConnections { get; init; } = 512;

    /// <summary>Embedded mode: time from accept to a complete CONNECT (TLS handshake included).</summary>
    public double ConnectTimeoutSeconds { get; init; } = 10;

    /// <summary>Embedded mode: the largest CONNECT packet read (before the client has authenticated).</summary>
    public int MaxConnectBytes { get; init; } = 8 * 1024;

    /// <summary>Embedded mode: the largest packet read from an authenticated client (telemetry payloads are at most 256 KiB).</summary>
    public int MaxPacketBytes { get; init; } = 1024 * 1024;

    /// <summary>The addresses the embedded broker's device listener binds: IPv4 and IPv6 (<see cref="System.Net.IPAddress.None"/>: not that family).</summary>
    public (System.Net.IPAddress V4, System.Net.IPAddress V6) DeviceListener(bool tls)
    {
        if (BindAddress is null)
            return tls ? (System.Net.IPAddress.Any, System.Net.IPAddress.IPv6Any) : (System.Net.IPAddress.Loopback, System.Net.IPAddress.IPv6Loopback);
        if (BindAddress == "*")
            return (System.Net.IPAddress.Any, System.Net.IPAddress.IPv6Any);
        var address = System.Net.IPAddress.Parse(BindAddress);
        return address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? (System.Net.IPAddress.None, address) : (address, System.Net.IPAddress.None);
    }

    public string? Validate()
    {
        if (BindAddress is not null && BindAddress != "*" && !System.Net.IPAddress.TryParse(BindAddress, out _))
            return $"Fleet:Broker:BindAddress '{BindAddress}' is not an IP address or '*'";
        if (MaxPendingConnections is < 1 or > 1_000_000)
            return "Fleet:Broker:MaxPendingConnections must be within [1, 1000000]";
        if (!(ConnectTimeoutSeconds > 0) || ConnectTimeoutSeconds > 600)
            return "Fleet:Broker:ConnectTimeoutSeconds must be within (0, 600]";
        if (MaxConnectBytes is < 128 or > 1024 * 1024)
            return "Fleet:Broker:MaxConnectBytes must be within [128, 1048576]";
        if (MaxPacketBytes < EdgeFleet.Shared.Wire.Protocol.MaxPayloadBytes + 1024 || MaxPacketBytes > 256 * 1024 * 1024)
            return $"Fleet:Broker:MaxPacketBytes must be within [{EdgeFleet.Shared.Wire.Protocol.MaxPayloadBytes + 1024}, 268435456]";
        return null;
    }

    /// <summary>
    /// The broker address told to devices at enrollment. Default: the host name the device used to reach the
    /// fleet's HTTP API, and <see cref="Port"/>.
    /// </summary>
    public string? PublicHost { get; init; }

    /// <summary>Unset: <see cref="TlsPort"/> when the embedded broker has TLS, else <see cref="Port"/>.</summary>
    public int? PublicPort { get; init; }

    /// <summary>Whether devices are told to use TLS. Unset: when the embedded broker has TLS (an external broker's TLS listener: set it).</summary>
    public bool? PublicTls { get; init; }

    /// <summary>
    /// Embedded mode with <c>Fleet:Tls</c> set: the TLS listener devices use (all interfaces). The plain port
    /// then listens on loopback only, for the fleet service itself.
    /// </summary>
    public int TlsPort { get; init; } = 8883;

    /// <summary>External mode: the fleet service's own credentials on that broker.</summary>
    public string? Username { get; init; }

    public string? Password { get; init; }

    /// <summary>
    /// External mode: the shared-subscription group (<c>$share/{group}/ef/v1/+/…</c>) in which fleet instances
    /// split device messages. Instances of one fleet use the same group.
    /// </summary>
    public string SharedGroup { get; init; } = "edgefleet";

    /// <summary>
    /// External mode: who keeps device accounts on the broker. <c>None</c>: the operator does (devices are told
    /// to present device tokens). <c>MosquittoDynamicSecurity</c>: the fleet creates one account and ACL role
    /// per device through Mosquitto's dynamic-security plugin, as its admin (<see cref="Username"/>).
    /// </summary>
    public DeviceAccounts DeviceAccounts { get; init; } = DeviceAccounts.None;
}

public enum DeviceAccounts
{
    None,
    MosquittoDynamicSecurity,
}

public sealed record StorageOptions
{
    public const string LiteDb = "LiteDb";
    public const string PostgreSql = "PostgreSql";

    /// <summary><c>LiteDb</c> (one file, the default) or <c>PostgreSql</c> (shared by several instances).</summary>
    public string Provider { get; init; } = LiteDb;

    /// <summary>
    /// PostgreSQL: an Npgsql connection string. Holds a password: set it through the environment
    /// (<c>Fleet__Storage__ConnectionString</c>) or the root-only /etc settings file, not the command line.
    /// </summary>
    public string? ConnectionString { get; init; }

    public bool IsPostgreSql => Provider.Equals(PostgreSql, StringComparison.OrdinalIgnoreCase);

    public string Path { get; init; } = "data/fleet.db";

    /// <summary>Where uploaded model files are kept, one file per SHA-256.</summary>
    public string ArtifactsPath { get; init; } = "data/artifacts";
}

public sealed record SecurityOptions
{
    /// <summary>
    /// Where the first admin API key is written (mode 0600) when the store has no API key yet. Relative paths
    /// are taken from the directory of the LiteDB file (or the working directory for PostgreSQL).
    /// </summary>
    public string AdminKeyPath { get; init; } = "admin.key";

    /// <summary>The longest device token lifetime accepted; a device's tokens are checked at every connect.</summary>
    public double DeviceTokenMaxLifetimeMinutes { get; init; } = 60;

    /// <summary>Allowance for device clocks that run ahead or behind.</summary>
    public double ClockSkewSeconds { get; init; } = 300;

    /// <summary>The longest an enrollment token may be valid.</summary>
    public double EnrollmentTokenMaxHours { get; init; } = 24 * 30;

    /// <summary>Failed enrollments or console logins one remote address may make in a minute before it is refused (429) for the rest of it.</summary>
    public int MaxFailedAttemptsPerMinute { get; init; } = 10;

    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(AdminKeyPath))
            return "Fleet:Security:AdminKeyPath is required";
        if (DeviceTokenMaxLifetimeMinutes is <= 0 or > 24 * 60)
            return "Fleet:Security:DeviceTokenMaxLifetimeMinutes must be in (0, 1440]";
        if (ClockSkewSeconds is < 0 or > 3600)
            return "Fleet:Security:ClockSkewSeconds must be in [0, 3600]";
        if (EnrollmentTokenMaxHours <= 0)
            return "Fleet:Security:EnrollmentTokenMaxHours must be positive";
        if (MaxFailedAttemptsPerMinute is < 1 or > 100_000)
            return "Fleet:Security:MaxFailedAttemptsPerMinute must be in [1, 100000]";
        return null;
    }
}

/// <summary>
/// Drift (section <c>Fleet:Drift</c>): the window devices sketch over (written into signed manifests), how often
/// the leader checks for sustained drift and how it segments the fleet, and where it sends alerts.
/// </summary>
public sealed record DriftOptions
{
    public double WindowSeconds { get; init; } = 3600;

    /// <summary>How often the leader recomputes drift and opens or resolves alerts.</summary>
    public double CheckSeconds { get; init; } = 60;

    /// <summary>null (the fleet as one), <c>profile</c>, <c>device</c>, or <c>tag:KEY</c>.</summary>
    public string? SegmentBy { get; init; }

    /// <summary>Consecutive alerting windows that open an alert.</summary>
    public int AlertWindows { get; init; } = 3;

    /// <summary>How far back the check reads sketches, in windows.</summary>
    public int LookbackWindows { get; init; } = 24;

    /// <summary>Consecutive judged windows below the warning level that resolve an alert (hysteresis: one calm window does not).</summary>
    public int ResolveWindows { get; init; } = 3;

    /// <summary>A version no device has sketched for this many windows is no longer served: its alerts are resolved.</summary>
    public int UnservedWindows { get; init; } = 3;

    /// <summary>Alerts opened and resolved are POSTed here as JSON, signed with HMAC-SHA256 (header <c>X-EdgeFleet-Signature: sha256=HEX</c>).</summary>
    public string? WebhookUrl { get; init; }

    /// <summary>A file holding the webhook's HMAC secret (first line).</summary>
    public string? WebhookSecretFile { get; init; }

    /// <summary>A program run for each alert change with the alert's JSON on standard input (no shell).</summary>
    public string? Command { get; init; }

    public string? Validate() =>
        !(WindowSeconds >= 1) || WindowSeconds > 7 * 86400 ? "Fleet:Drift:WindowSeconds must be within 1 s and 7 days"
        : !(CheckSeconds > 0) || CheckSeconds > 86400 ? "Fleet:Drift:CheckSeconds must be within (0, 86400]"
        : SegmentBy is not (null or "profile" or "device") && !(SegmentBy.StartsWith("tag:", StringComparison.Ordinal) && SegmentBy.Length > 4)
            ? "Fleet:Drift:SegmentBy is profile, device or tag:KEY"
        : AlertWindows is < 1 or > 1000 || LookbackWindows < AlertWindows || LookbackWindows > 10_000 ? "Fleet:Drift:AlertWindows must be 1-1000 and LookbackWindows at least that (at most 10000)"
        : ResolveWindows < 1 || ResolveWindows > LookbackWindows ? "Fleet:Drift:ResolveWindows must be at least 1 and at most LookbackWindows"
        : UnservedWindows < 1 || UnservedWindows >= LookbackWindows ? "Fleet:Drift:UnservedWindows must be at least 1 and under LookbackWindows"
        : WebhookUrl is { } url && !(Uri.TryCreate(url, UriKind.Absolute, out var u) && u.Scheme is "http" or "https") ? "Fleet:Drift:WebhookUrl must be an http(s) URL"
        : WebhookUrl is not null && WebhookSecretFile is null ? "Fleet:Drift:WebhookUrl needs Fleet:Drift:WebhookSecretFile (the HMAC secret)"
        : null;
}

/// <summary>
/// Retraining (section <c>Fleet:Retraining</c>): how often the leader looks at the policies and jobs, where jobs
/// keep their files, the executors policies may name, and the URL executors call back.
/// </summary>
public sealed record RetrainingOptions
{
    public double CheckSeconds { get; init; } = 30;

    /// <summary>One directory per job: its inputs, the executor's output and log.</summary>
    public string WorkPath { get; init; } = "data/retraining";

    /// <summary>The fleet's base URL as webhook executors reach it (for the job's callback and input links).</summary>
    public string? CallbackUrl { get; init; }

    public Dictionary<string, RetrainingExecutorOptions> Executors { get; init; } = [];

    public string? Validate()
    {
        if (!(CheckSeconds > 0) || CheckSeconds > 86400)
            return "Fleet:Retraining:CheckSeconds must be within (0, 86400]";
        if (CallbackUrl is { } callback && !(Uri.TryCreate(callback, UriKind.Absolute, out var c) && c.Scheme is "http" or "https"))
            return "Fleet:Retraining:CallbackUrl must be an http(s) URL";
        foreach (var (name, executor) in Executors)
        {
            if (!EdgeFleet.Shared.Wire.DeviceId.IsValid(name))
                return $"Fleet:Retraining:Executors:{name}: executor names are 1-64 of a-z, 0-9, '-', '_', '.'";
            if ((executor.Command is null) == (executor.Url is null))
                return $"Fleet:Retraining:Executors:{name} needs exactly one of Command and Url";
            if (executor.Url is { } url && !(Uri.TryCreate(url, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"))
                return $"Fleet:Retraining:Executors:{name}:Url must be an http(s) URL";
            if (executor.Url is not null && (executor.SecretFile is null || CallbackUrl is null))
                return $"Fleet:Retraining:Executors:{name}: a webhook executor needs SecretFile (its HMAC secret) and Fleet:Retraining:CallbackUrl";
        }
        return null;
    }
}

/// <summary>
/// A retraining executor: a program the leader runs (no shell; arguments as given, the job's files in the
/// environment) or a webhook it POSTs the job to (signed with HMAC-SHA256), which reports back by the job's token.
/// </summary>
public sealed record RetrainingExecutorOptions
{
    public string? Command { get; init; }

    public List<string> Arguments { get; init; } = [];

    public string? Url { get; init; }

    public string? SecretFile { get; init; }
}

/// <summary>
/// The fleet's signing keys for rollouts (section <c>Fleet:Signing</c>): a key directory made by
/// <c>edgefleet keys init</c>. Without one the fleet cannot create rollouts (it says so).
/// </summary>
public sealed record SigningOptions
{
    public string? KeyDirectory { get; init; }

    /// <summary>A file holding the signing keys' passphrase (else $EDGEFLEET_KEY_PASSPHRASE, else none).</summary>
    public string? PassphraseFile { get; init; }
}
