namespace EdgeFleet.Agent.Tests;

/// <summary>
/// A simulated clock: hours pass in a call, so time-to-live and budgets are tested without waiting.
/// <see cref="Advance"/> moves the wall clock and the monotonic clock together (time passes); <see cref="Step"/>
/// moves the wall clock alone (NTP stepping it, a user setting it), as a real system clock can.
/// </summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;
    private long _advancedTicks;

    public override DateTimeOffset GetUtcNow() => _now;

    /// <summary>The real monotonic clock plus whatever <see cref="Advance"/> added.</summary>
    public override long GetTimestamp() => base.GetTimestamp() + Interlocked.Read(ref _advancedTicks);

    public void Advance(TimeSpan by)
    {
        _now += by;
        Interlocked.Add(ref _advancedTicks, (long)(by.TotalSeconds * TimestampFrequency));
    }

    public void Step(TimeSpan by) => _now += by;
}
