using EdgeFleet.Agent.Telemetry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Health;

/// <summary>
/// Tells systemd (<c>Type=notify</c>) how the agent is doing: <c>READY=1</c> once every service has started,
/// <c>STATUS=</c> lines with what it serves and what waits in the buffer, <c>WATCHDOG=1</c> at half the
/// unit's <c>WatchdogSec</c> while the process is healthy, and <c>STOPPING=1</c> on shutdown. A wedged agent
/// stops pinging and systemd restarts it.
/// </summary>
public sealed partial class SystemdService(
    SystemdNotifier notifier, AgentRuntime runtime, TelemetryBuffer buffer, IHostApplicationLifetime lifetime, ILogger<SystemdService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!notifier.Enabled)
            return;
        await WhenStartedAsync(stoppingToken).ConfigureAwait(false);
        notifier.Notify($"READY=1\nSTATUS={Status()}\nMAINPID={Environment.ProcessId}");
        var watchdog = SystemdNotifier.WatchdogInterval();
        Log.Ready(log, watchdog?.TotalSeconds ?? 0);
        var period = watchdog is { } w ? w / 2 : TimeSpan.FromSeconds(10);
        using var timer = new PeriodicTimer(period, runtime.Time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            // Pinging from a timer proves the scheduler runs; the buffer's committer must be alive as well.
            var state = $"STATUS={Status()}";
            if (watchdog is not null && buffer.Healthy)
                state += "\nWATCHDOG=1";
            notifier.Notify(state);
        }
    }

    public override Task StopAsync(CancellationToken cancellationToken)
    {
        notifier.Notify("STOPPING=1");
        return base.StopAsync(cancellationToken);
    }

    private Task WhenStartedAsync(CancellationToken ct)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        return started.Task.WaitAsync(ct);
    }

    private string Status()
    {
        var model = runtime.ActiveModel is { } m ? $"{m.Name} {m.Version}" : "no model";
        return $"serving {model}; {buffer.Count} telemetry records waiting";
    }

    private static partial class Log
    {
        [LoggerMessage(7001, LogLevel.Information, "Told systemd the agent is ready (watchdog {WatchdogSeconds} s)")]
        public static partial void Ready(ILogger logger, double watchdogSeconds);
    }
}
