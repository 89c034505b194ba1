using EdgeFleet.Fleet.Identity;

namespace EdgeFleet.Fleet.Tests;

public class AttemptLimiterTests
{
    private sealed class Clock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static readonly DateTimeOffset T0 = new(2026, 12, 2, 8, 0, 0, TimeSpan.Zero);

    [Fact]
    public void An_address_is_refused_after_the_limit_of_failures_until_its_window_ends()
    {
        var clock = new Clock(T0);
        var limiter = new AttemptLimiter(new SecurityOptions { MaxFailedAttemptsPerMinute = 3 }, clock);
        Assert.False(limiter.CountFailure("enroll", "10.0.0.1"));
        Assert.False(limiter.CountFailure("enroll", "10.0.0.1"));
        Assert.False(limiter.IsThrottled("enroll", "10.0.0.1", out _));
        Assert.True(limiter.CountFailure("enroll", "10.0.0.1")); // the third: reported once, to audit
        Assert.True(limiter.IsThrottled("enroll", "10.0.0.1", out var retryAfter));
        Assert.Equal(TimeSpan.FromMinutes(1), retryAfter);
        Assert.False(limiter.CountFailure("enroll", "10.0.0.1"));

        // Other addresses and other scopes are not affected.
        Assert.False(limiter.IsThrottled("enroll", "10.0.0.2", out _));
        Assert.False(limiter.IsThrottled("login", "10.0.0.1", out _));

        clock.Now = T0.AddSeconds(59);
        Assert.True(limiter.IsThrottled("enroll", "10.0.0.1", out retryAfter));
        Assert.Equal(TimeSpan.FromSeconds(1), retryAfter);
        clock.Now = T0.AddMinutes(1);
        Assert.False(limiter.IsThrottled("enroll", "10.0.0.1", out _));
        Assert.False(limiter.CountFailure("enroll", "10.0.0.1")); // a new window starts at one
    }
}
