namespace EdgeFleet.Agent.Inference;

public enum BreakerState
{
    /// <summary>The model serves every request.</summary>
    Closed,

    /// <summary>The model failed too often: requests go to the fallback until the open period ends.</summary>
    Open,

    /// <summary>The open period ended: the next request tries the model again; success closes, failure reopens.</summary>
    HalfOpen,
}

/// <summary>
/// The failure counting of one model: <see cref="FailureThreshold"/> consecutive failures (errors, or runs over
/// the latency budget) open the breaker for <see cref="OpenFor"/>; then one trial request decides whether it
/// closes again. Not thread-safe: <see cref="ModelHost"/> calls it under its lock.
/// </summary>
public sealed class CircuitBreaker(int failureThreshold, TimeSpan openFor, TimeProvider time)
{
    private int _failures;
    private long _openedAt;

    public int FailureThreshold { get; } = Math.Max(1, failureThreshold);

    public TimeSpan OpenFor { get; } = openFor;

    public BreakerState State { get; private set; }

    /// <summary>Whether the model should take this request (an open breaker half-opens when its time is up).</summary>
    public bool AllowRequest()
    {
        if (State == BreakerState.Open && time.GetElapsedTime(_openedAt) >= OpenFor) // monotonic: a clock step neither holds nor skips it
            State = BreakerState.HalfOpen;
        return State != BreakerState.Open;
    }

    /// <summary>Records a success; true when it closed a half-open breaker (the model recovered).</summary>
    public bool Success()
    {
        _failures = 0;
        if (State != BreakerState.HalfOpen)
            return false;
        State = BreakerState.Closed;
        return true;
    }

    /// <summary>Records a failure; true when it opened the breaker.</summary>
    public bool Failure()
    {
        _failures++;
        if (State != BreakerState.HalfOpen && _failures < FailureThreshold)
            return false;
        State = BreakerState.Open;
        _openedAt = time.GetTimestamp();
        _failures = 0;
        return true;
    }

    public void Reset()
    {
        State = BreakerState.Closed;
        _failures = 0;
    }
}
