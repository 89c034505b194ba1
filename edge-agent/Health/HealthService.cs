using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
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

    private async Task TickAsync(CancellationToken ct)
    {
        buffer.Expire();
        using var process = Process.GetCurrentProcess();
        var now = runtime.Time.GetUtcNow();
        // Posted: a health record commits with the others of its window; the loop does not wait for it.
        await buffer.PostAsync(new TelemetryRecord
        {
            Ts = now,
            Kind = TelemetryKind.Health,
            Health = new HealthSample
            {
                UptimeSeconds = (long)(now - runtime.StartedAt).TotalSeconds,
                RssBytes = process.WorkingSet64,
                BufferedRecords = buffer.Count,
                BufferedBytes = buffer.Bytes,
                WrittenBytes = ProcessIo.WrittenBytes(),
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
    }
}
