using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Devices with wrong clocks against a fleet with a right one: an agent process whose wall clock (libfaketime)
/// reads 1970 (no RTC battery), one five hours ahead, and one whose clock is stepped back and forth by hours
/// while it runs. Each connects, and what it sends carries the fleet's time once it has heard it.
/// </summary>
[Collection("processes")]
public sealed class ClockTests(DemoModel model, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<DemoModel>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>How far from the fleet's clock a timestamp may be and still count as right (the test's own runtime is bounded by Patience).</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Devices_booting_at_1970_or_hours_ahead_or_stepping_connect_and_stamp_telemetry_with_the_fleets_time()
    {
        Assert.True(FakeClock.Library is not null, "libfaketime is not installed (scripts/test.sh installs it)");
        var dir = Directory.CreateTempSubdirectory("edgefleet-clock-").FullName;
        using var fleet = new Fleet(dir);
        var started = DateTimeOffset.UtcNow;
        var clocks = new Dictionary<string, FakeClock>
        {
            ["rtc-less"] = new(dir, "@1970-01-01 00:00:00"),
            ["ahead"] = new(dir, "+5h"),
            ["stepping"] = new(dir, "+0"),
        };
        var agents = clocks.Select(kv => new Agent(dir, kv.Key, fleet, model.Path, "normal", configure: c =>
        {
            c["telemetry"] = new JsonObject
            {
                ["maxBatchAgeSeconds"] = 0.2, ["healthIntervalSeconds"] = 1, ["commitWindowSeconds"] = 0.5, ["latencyWindowSeconds"] = 2,
            };
        }, environment: kv.Value.Environment)).ToList();
        string Explain() => $"fleet:\n{fleet.Output}\n" + string.Join("", agents.Select(a => $"--- {a.DeviceId}:\n{a.Output}\n"));
        try
        {
            foreach (var agent in agents)
                await Wait.ForAsync(async () => await fleet.Device(agent.DeviceId) is { } d && d["device"]!["telemetryRecords"]!.GetValue<long>() >= 30 ? d : null, Patience, Explain);

            // NTP (or a user) steps the third device's clock three hours back, then two hours ahead.
            clocks["stepping"].Set("-3h");
            await Task.Delay(TimeSpan.FromSeconds(8));
            clocks["stepping"].Set("+2h");
            await Task.Delay(TimeSpan.FromSeconds(8));
            var until = DateTimeOffset.UtcNow;
            // What was stamped by now has arrived a few seconds later.
            await Task.Delay(TimeSpan.FromSeconds(3));

            foreach (var agent in agents)
            {
                var records = (await fleet.Telemetry(agent.DeviceId)).OrderBy(r => r.Seq).ToList();
                bool Right(TelemetryRecord r) => r.Ts >= started - Slack && r.Ts <= DateTimeOffset.UtcNow + Slack;
                var wrong = records.Where(r => !Right(r)).ToList();
                var firstRight = records.First(Right).Seq;
                output.WriteLine($"{agent.DeviceId}: {records.Count} records, {wrong.Count} stamped before the fleet's time was heard " +
                    $"({wrong.Count(r => r.TsEstimated)} flagged as estimated)");
                // Only records stamped before the agent heard the fleet's time can be off: once heard, every one is right.
                // A record takes its sequence number when it is queued, a moment after it is stamped, so a loop's record
                // stamped just before the correction may queue just after another loop's first right one: at most one
                // such record per producing loop (inference, health, OTA status), never two of one kind.
                var late = wrong.Where(r => r.Seq > firstRight).ToList();
                Assert.True(late.Count <= 3 && late.DistinctBy(r => r.Kind).Count() == late.Count,
                    $"{agent.DeviceId}: records {string.Join(", ", late.Select(r => $"{r.Seq} ({r.Kind}, {r.Ts:O})"))} " +
                    $"stamped after the clock was corrected (the first right one is {firstRight})");
                Assert.True(records.Count(Right) >= 30, $"{agent.DeviceId}: {records.Count(Right)} records with the fleet's time");
                var health = records.Where(r => r.Health is not null && r.Ts <= until).Select(r => r.Health!).ToList();
                switch (agent.DeviceId)
                {
                    case "rtc-less":
                        // Below its floor (the build day): estimated, and said so on each record.
                        Assert.All(wrong, r => Assert.True(r.TsEstimated, $"record {r.Seq} at {r.Ts:O} is not flagged"));
                        Assert.Equal(ClockState.Corrected, health[^1].Clock);
                        Assert.InRange(health[^1].ClockCorrectionSeconds!.Value, 56 * 365.0 * 86_400, 58 * 365.0 * 86_400);
                        Assert.Contains("connecting again at once", agent.Output, StringComparison.Ordinal);
                        break;
                    case "ahead":
                        // Its first token was refused as not yet valid; the refusal carried the fleet's time.
                        Assert.Equal(ClockState.Corrected, health[^1].Clock);
                        Assert.InRange(health[^1].ClockCorrectionSeconds!.Value, -5 * 3600.0 - 60, -5 * 3600.0 + 60);
                        Assert.Contains("connecting again at once", agent.Output, StringComparison.Ordinal);
                        break;
                    default:
                        // Right from the start, and the steps moved nothing: no record is off, and the latency windows
                        // (2 s) kept closing through both steps.
                        Assert.Empty(wrong);
                        Assert.Contains(ClockState.Synced, health.Select(h => h.Clock)); // before the steps: the system clock agreed
                        Assert.Equal(ClockState.Corrected, health[^1].Clock);
                        Assert.InRange(health[^1].ClockCorrectionSeconds!.Value, -2 * 3600.0 - 60, -2 * 3600.0 + 60);
                        var windows = records.Where(r => r.Latency is not null && r.Latency.From >= until.AddSeconds(-16)).ToList();
                        Assert.True(windows.Count >= 5, $"{windows.Count} latency windows while the clock stepped:\n{Explain()}");
                        break;
                }
                var device = (await fleet.Device(agent.DeviceId))!["device"]!;
                Assert.Equal(0, device["conflictingRecords"]!.GetValue<long>());
            }
        }
        finally
        {
            foreach (var agent in agents)
                agent.Dispose();
        }
        Directory.Delete(dir, recursive: true);
    }
}
