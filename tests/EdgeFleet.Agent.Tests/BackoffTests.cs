using EdgeFleet.Agent.Sync;

namespace EdgeFleet.Agent.Tests;

public class BackoffTests
{
    [Fact]
    public void Delays_stay_within_min_and_a_ceiling_that_doubles_up_to_max()
    {
        for (var attempt = 0; attempt < 40; attempt++)
        {
            var ceiling = Math.Min(30, 0.5 * Math.Pow(2, attempt));
            for (var i = 0; i < 50; i++)
                Assert.InRange(Backoff.Next(attempt, 0.5, 30).TotalSeconds, 0.5, ceiling);
        }
    }

    [Fact]
    public void Delays_are_jittered_so_a_fleet_does_not_reconnect_in_lockstep()
    {
        var delays = Enumerable.Range(0, 50).Select(_ => Backoff.Next(6, 0.5, 30)).Distinct().Count();
        Assert.True(delays > 40, $"only {delays} distinct delays in 50");
    }
}
