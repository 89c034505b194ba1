using System.Globalization;
using System.Reflection;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.Wire;
using EdgeFleet.Shared.IO;

namespace EdgeFleet.Agent.Timekeeping;

/// <summary>
/// The agent's wall clock. Field devices boot with their clock at 1970 (no RTC battery), hours off (a wrong
/// time zone written as UTC) or stepping when NTP arrives late, and many sites reach only the broker, not an
/// NTP server. This clock is the system clock kept honest by what the agent knows:
/// <list type="bullet">
/// <item>the <b>fleet's time</b>, from every CONNACK of the embedded broker and every telemetry acknowledgement:
/// while the system clock disagrees with it by more than the measurement's slack, the agent keeps the fleet's
/// time running on the monotonic clock instead (<see cref="ClockState.Corrected"/>), so a step of the system
/// clock cannot move it;</item>
/// <item>a <b>floor</b>: time cannot be earlier than the agent's own build, the issue time of any signed document
/// it verified, or the last trusted time it saved (<c>clock</c> in the state directory, at most hourly and at
/// stop, as systemd-timesyncd does). Below the floor the clock runs from the floor on the monotonic clock
/// (<see cref="ClockState.Estimated"/>) and telemetry stamped then is flagged.</item>
/// </list>
/// Durations (timeouts, retry delays, commit windows) use <see cref="TimeProvider.GetTimestamp"/>, which this
/// clock passes through from the system's monotonic clock.
/// </summary>
public sealed class DeviceClock : TimeProvider
{
    public const string FileName = "clock";

    /// <summary>How far the system clock may be from the fleet's (beyond the measurement's own uncertainty) and still be used.</summary>
    public static readonly TimeSpan Tolerance = TimeSpan.FromSeconds(2);

    /// <summary>A fleet time measured with more uncertainty than this (a very slow round trip) is not used.</summary>
    public static readonly TimeSpan MaxUncertainty = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan SaveEvery = TimeSpan.FromHours(1);

    private readonly TimeProvider _system;
    private readonly string? _path;
    private Mark _floor;
    private Mark? _fleet;
    private DateTimeOffset _saved;

    /// <summary>A time known at a monotonic timestamp; <see cref="Slack"/> is how uncertain it was.</summary>
    private sealed record Mark(DateTimeOffset Time, long At, TimeSpan Slack);

    /// <param name="system">The system clock (wall and monotonic).</param>
    /// <param name="stateDirectory">Where the last trusted time is kept; null keeps it in memory only.</param>
    /// <param name="buildFloor">The earliest possible time: the agent's build day unless a test says otherwise.</param>
    public DeviceClock(TimeProvider system, string? stateDirectory, DateTimeOffset? buildFloor = null)
    {
        _system = system;
        _path = stateDirectory is null ? null : Path.Combine(stateDirectory, FileName);
        var floor = buildFloor ?? BuildDay;
        if (_path is not null && Read(_path) is { } saved && saved > floor)
            floor = saved;
        _floor = new Mark(floor, system.GetTimestamp(), TimeSpan.Zero);
        _saved = floor;
    }

    /// <summary>The day this agent was built (assembly metadata <c>EdgeFleetBuildDay</c>): no real clock reads earlier.</summary>
    public static DateTimeOffset BuildDay { get; } = typeof(DeviceClock).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Where(a => a.Key == "EdgeFleetBuildDay")
        .Select(a => DateTimeOffset.TryParse(a.Value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var day)
            ? day : (DateTimeOffset?)null)
        .FirstOrDefault() ?? new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Where the clock takes its time from now.</summary>
    public ClockState State => Read().State;

    /// <summary>
    /// The clock's time minus the system clock's (zero unless <see cref="ClockState.Corrected"/> or <see cref="ClockState.Estimated"/>).
    /// </summary>
    public TimeSpan Correction
    {
        get
        {
            var (now, _) = Read();
            return now - _system.GetUtcNow();
        }
    }

    public override DateTimeOffset GetUtcNow() => Read().Now;

    public override long GetTimestamp() => _system.GetTimestamp();

    public override long TimestampFrequency => _system.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => _system.LocalTimeZone;

    private (DateTimeOffset Now, ClockState State) Read()
    {
        var system = _system.GetUtcNow();
        var at = _system.GetTimestamp();
        var lower = Project(Volatile.Read(ref _floor), at);
        DateTimeOffset now;
        ClockState state;
        if (Volatile.Read(ref _fleet) is { } fleet)
        {
            var estimate = Project(fleet, at);
            (now, state) = (system - estimate).Duration() <= Tolerance + fleet.Slack
                ? (system, ClockState.Synced) : (estimate, ClockState.Corrected);
        }
        else
        {
            (now, state) = system >= lower ? (system, ClockState.Unverified) : (lower, ClockState.Estimated);
        }
        // Nothing the fleet says (a replayed CONNACK, a broker in the middle) takes the clock below what signed documents prove.
        return now >= lower ? (now, state) : (lower, ClockState.Estimated);
    }

    private DateTimeOffset Project(Mark mark, long at) => mark.Time + _system.GetElapsedTime(mark.At, at);

    /// <summary>
    /// The fleet said its time was <paramref name="fleetTime"/> in a message that reached us <paramref name="roundTrip"/>
    /// after we asked (the fleet's time is taken as the midpoint). Returns whether the clock's source changed.
    /// </summary>
    public bool LearnFleetTime(DateTimeOffset fleetTime, TimeSpan roundTrip)
    {
        if (roundTrip < TimeSpan.Zero || roundTrip / 2 > MaxUncertainty)
            return false;
        var before = State;
        var at = _system.GetTimestamp();
        Volatile.Write(ref _fleet, new Mark(fleetTime + roundTrip / 2, at, roundTrip / 2));
        return State != before;
    }

    /// <summary>A signed document (key set, manifest) was issued at <paramref name="issuedAt"/>: time is at least that now.</summary>
    public void LearnFloor(DateTimeOffset issuedAt)
    {
        var at = _system.GetTimestamp();
        while (true)
        {
            var current = Volatile.Read(ref _floor);
            if (Project(current, at) >= issuedAt)
                return;
            if (Interlocked.CompareExchange(ref _floor, new Mark(issuedAt, at, TimeSpan.Zero), current) == current)
                return;
        }
    }

    /// <summary>
    /// Saves the time as the next start's floor when the fleet has confirmed it and the last save is an hour old
    /// (or <paramref name="force"/>, at stop). A time the fleet has not confirmed is never saved: a clock hours
    /// ahead would otherwise hold every later start ahead.
    /// </summary>
    public void Checkpoint(bool force = false)
    {
        var (now, state) = Read();
        if (_path is null || state is not (ClockState.Synced or ClockState.Corrected) || (!force && now - _saved < SaveEvery)
            || now <= _saved)
            return;
        AtomicFile.Write(_path, global::System.Text.Encoding.ASCII.GetBytes(now.ToString("O", CultureInfo.InvariantCulture) + "\n"));
        _saved = now;
    }

    private static DateTimeOffset? Read(string path)
    {
        try
        {
            var text = File.ReadAllText(path).Trim();
            return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var saved) ? saved : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // no saved time yet: the build day is the floor
        }
    }
}
