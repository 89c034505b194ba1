using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Hosting;

namespace EdgeFleet.Agent.Health;

/// <summary>Appends a health record (uptime, resident memory, telemetry backlog) at a fixed interval.</summary>
public sealed class HealthService(AgentConfig config, AgentRuntime runtime, TelemetryBuffer buffer) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(config.Telemetry.HealthIntervalSeconds), runtime.Time);
        do
        {
            using var process = Process.GetCurrentProcess();
            var now = runtime.Time.GetUtcNow();
            buffer.Append(now, TelemetryKind.Health, health: new HealthSample
            {
                UptimeSeconds = (long)(now - runtime.StartedAt).TotalSeconds,
                RssBytes = process.WorkingSet64,
                BufferedRecords = buffer.Count,
            });
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }
}
