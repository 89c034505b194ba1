namespace EdgeFleet.Fleet.Scale;

/// <summary>
/// A periodic job that only the leader instance runs (rollout steps, drift checks, retraining): each tick, on the
/// leader, one pass; a pass that fails on the store or bad data is reported and the next tick tries again.
/// </summary>
public abstract class LeaderLoop : BackgroundService
{
    protected abstract TimeSpan Period { get; }

    protected abstract LeaderElection Leader { get; }

    protected abstract TimeProvider Clock { get; }

    /// <summary>One pass.</summary>
    protected abstract Task RunOnceAsync(CancellationToken ct);

    /// <summary>Reports a pass that failed (each service logs under its own event id).</summary>
    protected abstract void OnFailed(string reason);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period, Clock);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            if (!Leader.IsLeader)
                continue;
            try
            {
                await RunOnceAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or LiteDB.LiteException or Npgsql.NpgsqlException or InvalidOperationException or InvalidDataException)
            {
                OnFailed(e.Message);
            }
        }
    }
}
