using Npgsql;

namespace EdgeFleet.Fleet.Scale;

/// <summary>
/// Which fleet-service instance runs the schedulers (rollouts, retraining): the one holding a PostgreSQL
/// session advisory lock. The lock lives as long as the holder's database session, so when the leader dies
/// (even by kill -9) PostgreSQL releases it and another instance, trying every <see cref="Interval"/>, takes
/// over within seconds. With LiteDB there is one instance, and it leads.
/// </summary>
public sealed partial class LeaderElection(FleetOptions options, ILogger<LeaderElection> log) : BackgroundService
{
    /// <summary>Advisory lock key for the scheduler leader ("efleader" as ASCII).</summary>
    public const long LockKey = 0x6566_6c65_6164_6572;

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private volatile bool _leader = !options.Storage.IsPostgreSql;

    /// <summary>This process's name in logs and /api/health.</summary>
    public string Instance { get; } = $"{Environment.MachineName.ToLowerInvariant()}-{Environment.ProcessId}";

    public bool IsLeader => _leader;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Storage.IsPostgreSql)
            return;
        // Keepalives make a half-open connection to a vanished leader fail within seconds on the database side too.
        var builder = new NpgsqlConnectionStringBuilder(options.Storage.ConnectionString) { Pooling = false, KeepAlive = 5, TcpKeepAlive = true, ApplicationName = "edgefleet-leader" };
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var conn = new NpgsqlConnection(builder.ConnectionString);
                await conn.OpenAsync(stoppingToken).ConfigureAwait(false);
                while (!stoppingToken.IsCancellationRequested)
                {
                    await using (var cmd = new NpgsqlCommand(_leader ? "select true" : "select pg_try_advisory_lock(@k)", conn))
                    {
                        cmd.Parameters.AddWithValue("k", LockKey);
                        var held = (bool)(await cmd.ExecuteScalarAsync(stoppingToken).ConfigureAwait(false))!;
                        if (held && !_leader)
                            Log.Elected(log, Instance);
                        _leader = held;
                    }
                    await Task.Delay(Interval, stoppingToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException or InvalidOperationException)
            {
                // The session (and with it the lock, if held) is gone: step down at once, then try again.
                if (_leader)
                    Log.SteppedDown(log, Instance, e.Message);
                _leader = false;
                await Task.Delay(Interval, stoppingToken).ConfigureAwait(false);
            }
        }
        _leader = false;
    }

    private static partial class Log
    {
        [LoggerMessage(7101, LogLevel.Information, "Instance {Instance} is now the scheduler leader")]
        public static partial void Elected(ILogger logger, string instance);

        [LoggerMessage(7102, LogLevel.Warning, "Instance {Instance} lost the scheduler leadership: {Reason}")]
        public static partial void SteppedDown(ILogger logger, string instance, string reason);
    }
}
