using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent;

/// <summary>What this agent process is and runs right now; read by sync to build hello and reported state.</summary>
public sealed class AgentRuntime(string deviceId, string hardwareProfile, TimeProvider time)
{
    private readonly Lock _lock = new();
    private ModelRef? _active;
    private ModelRef? _previous;
    private ModelRef? _shadow;
    private OtaState _ota = OtaState.Idle;

    public static string Version { get; } =
        typeof(AgentRuntime).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public string DeviceId { get; } = deviceId;

    public string HardwareProfile { get; } = hardwareProfile;

    /// <summary>The profile's settings (execution providers, threads); CPU only until the host resolves the file.</summary>
    public Profiles.HardwareProfile Profile { get; set; } = Profiles.HardwareProfile.CpuOnly(hardwareProfile);

    public string BootId { get; } = Guid.NewGuid().ToString("N");

    public DateTimeOffset StartedAt { get; } = time.GetUtcNow();

    private readonly long _startedTimestamp = time.GetTimestamp();

    /// <summary>Time since start on the monotonic clock (the wall clock may be corrected by years meanwhile).</summary>
    public TimeSpan Uptime => Time.GetElapsedTime(_startedTimestamp);

    public TimeProvider Time { get; } = time;

    /// <summary>Raised when the active model changes, so the reported state is sent again.</summary>
    public event Action? StateChanged;

    public ModelRef? ActiveModel
    {
        get
        {
            lock (_lock)
                return _active;
        }
        set
        {
            lock (_lock)
                _active = value;
            StateChanged?.Invoke();
        }
    }

    /// <summary>The model running in shadow (a rollout's shadow phase), for the reported state.</summary>
    public ModelRef? ShadowModel
    {
        get
        {
            lock (_lock)
                return _shadow;
        }
        set
        {
            lock (_lock)
                _shadow = value;
            StateChanged?.Invoke();
        }
    }

    /// <summary>Records the OTA state and last known good model for the reported state.</summary>
    public void SetOta(OtaState state, ModelRef? previous)
    {
        lock (_lock)
        {
            _ota = state;
            _previous = previous;
        }
        StateChanged?.Invoke();
    }

    public HelloMessage Hello() => new()
    {
        DeviceId = DeviceId,
        AgentVersion = Version,
        HardwareProfile = HardwareProfile,
        BootId = BootId,
        StartedAt = StartedAt,
        Models = ActiveModel is { } m ? [m] : [],
    };

    public ReportedState Reported()
    {
        lock (_lock)
        {
            return new ReportedState
            {
                DeviceId = DeviceId,
                Active = _active,
                Previous = _previous,
                Shadow = _shadow,
                Ota = _ota,
                UpdatedAt = Time.GetUtcNow(),
            };
        }
    }
}
