namespace EdgeFleet.Agent.Tests;

/// <summary>A simulated clock: hours pass in a call, so time-to-live and budgets are tested without waiting.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}
