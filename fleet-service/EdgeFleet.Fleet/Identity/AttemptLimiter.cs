using System.Collections.Concurrent;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// Failed attempts (enrollment tokens, console passwords) per remote address, in fixed one-minute windows: past
/// <see cref="SecurityOptions.MaxFailedAttemptsPerMinute"/> an address is refused until its window ends, whether its
/// next guess would be right or not. Only failures count, so a site enrolling a thousand devices from behind one
/// address is never slowed. State is per instance and in memory: a restart forgives.
/// </summary>
public sealed class AttemptLimiter(SecurityOptions options, TimeProvider time)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private const int MaxTracked = 100_000;
    private readonly ConcurrentDictionary<(string Scope, string Remote), Failures> _failures = new();

    private sealed record Failures(DateTimeOffset Since, int Count);

    /// <summary>Whether <paramref name="remote"/> is refused in <paramref name="scope"/> now, and until when.</summary>
    public bool IsThrottled(string scope, string remote, out TimeSpan retryAfter)
    {
        var now = time.GetUtcNow();
        if (_failures.TryGetValue((scope, remote), out var f) && now - f.Since < Window && f.Count >= options.MaxFailedAttemptsPerMinute)
        {
            retryAfter = f.Since + Window - now;
            return true;
        }
        retryAfter = TimeSpan.Zero;
        return false;
    }

    /// <summary>Counts a failure; true when this one reached the limit (the moment to audit, once per window).</summary>
    public bool CountFailure(string scope, string remote)
    {
        var now = time.GetUtcNow();
        if (_failures.Count > MaxTracked)
            Prune(now);
        var after = _failures.AddOrUpdate((scope, remote), _ => new Failures(now, 1),
            (_, f) => now - f.Since >= Window ? new Failures(now, 1) : f with { Count = f.Count + 1 });
        return after.Count == options.MaxFailedAttemptsPerMinute;
    }

    private void Prune(DateTimeOffset now)
    {
        foreach (var (key, f) in _failures)
        {
            if (now - f.Since >= Window)
                _failures.TryRemove(key, out _);
        }
    }
}
