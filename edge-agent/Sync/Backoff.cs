namespace EdgeFleet.Agent.Sync;

/// <summary>Exponential backoff with full jitter, so a fleet that lost its broker does not reconnect in lockstep.</summary>
public static class Backoff
{
    public static TimeSpan Next(int attempt, double minSeconds, double maxSeconds)
    {
        var ceiling = Math.Min(maxSeconds, minSeconds * Math.Pow(2, Math.Min(attempt, 30)));
        var seconds = minSeconds + (Random.Shared.NextDouble() * (ceiling - minSeconds));
        return TimeSpan.FromSeconds(seconds);
    }
}
