using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Agent.Timekeeping;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Health;

/// <summary>
/// At a fixed interval: evicts telemetry past its time to live, appends a health record (uptime, resident
/// memory, telemetry backlog), and, when the buffer evicted anything since the last report, an evictions
/// record with the stream's totals, so the fleet sees what was dropped on purpose.
/// </summary>
public sealed partial class HealthService(AgentConfig config, AgentRuntime runtime, TelemetryBuffer buffer, ILogger<HealthService> log) : BackgroundService
{
    private long _reportedEvictions;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(config.Telemetry.HealthIntervalSeconds), runtime.Time);
        do
        {
            try
            {
                await TickAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (TelemetryBufferException e)
            {
                Log.NotRecorded(log, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            (runtime.Time as DeviceClock)?.Checkpoint(force: true); // the next start's floor, as systemd-timesyncd saves its clock
        }
        catch (IOException e)
        {
            Log.ClockNotSaved(log, e.Message);
        }
    }

    private async Task TickAsync(CancellationToken ct)
    {
        var clock = runtime.Time as DeviceClock;
        clock?.Checkpoint();
        buffer.Expire();
        using var process = Process.GetCurrentProcess();
        var sample = new HealthSample
        {
            UptimeSeconds = (long)runtime.Uptime.TotalSeconds,
            RssBytes = process.WorkingSet64,
            BufferedRecords = buffer.Count,
            BufferedBytes = buffer.Bytes,
            WrittenBytes = ProcessIo.WrittenBytes(),
        };
        // Stamped last, with the clock's state read at the same moment, so the record's time, its clock state and
        // its place in the stream agree (the reads above can wait on the buffer's lock).
        var now = runtime.Time.GetUtcNow();
        var state = clock?.State;
        // Posted: a health record commits with the others of its window; the loop does not wait for it.
        await buffer.PostAsync(new TelemetryRecord
        {
            Ts = now,
            Kind = TelemetryKind.Health,
            Health = sample with
            {
                Clock = state,
                ClockCorrectionSeconds = state is ClockState.Corrected or ClockState.Estimated
                    ? Math.Round(clock!.Correction.TotalSeconds, 3) : null,
            },
        }, cancellationToken: ct).ConfigureAwait(false);
        var evictions = buffer.Evictions;
        if (evictions.Records != _reportedEvictions)
        {
            await buffer.AppendAsync(new TelemetryRecord { Ts = now, Kind = TelemetryKind.Evictions, Evictions = evictions }, cancellationToken: ct).ConfigureAwait(false);
            _reportedEvictions = evictions.Records;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(6001, LogLevel.Warning, "Health record not buffered: {Reason}")]
        public static partial void NotRecorded(ILogger logger, string reason);

        [LoggerMessage(6002, LogLevel.Warning, "Could not save the device clock's last trusted time: {Reason}")]
        public static partial void ClockNotSaved(ILogger logger, string reason);
    }
}
