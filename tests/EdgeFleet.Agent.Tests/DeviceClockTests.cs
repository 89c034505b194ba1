using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Agent.Timekeeping;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

/// <summary>
/// The device clock against the clocks field devices boot with: 1970 (no RTC battery), hours ahead, and a
/// system clock that steps while the agent runs.
/// </summary>
public class DeviceClockTests
{
    private static readonly DateTimeOffset Epoch = DateTimeOffset.UnixEpoch;
    private static readonly DateTimeOffset Build = new(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Real = new(2026, 12, 2, 12, 0, 0, TimeSpan.Zero);

    private static void Near(DateTimeOffset expected, DateTimeOffset actual, double seconds = 0.5) =>
        Assert.True((expected - actual).Duration() <= TimeSpan.FromSeconds(seconds), $"expected {expected:O}, got {actual:O}");

    [Fact]
    public void A_device_booting_at_1970_runs_from_its_last_trusted_time_and_never_earlier()
    {
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, DeviceClock.FileName), Real.AddHours(-3).ToString("O") + "\n");
        var system = new ManualClock(Epoch);
        var clock = new DeviceClock(system, dir.Path, Build);

        Assert.Equal(ClockState.Estimated, clock.State);
        Near(Real.AddHours(-3), clock.GetUtcNow());
        system.Advance(TimeSpan.FromMinutes(10));
        Near(Real.AddHours(-3).AddMinutes(10), clock.GetUtcNow());

        // Without a saved time, the agent's build day is the floor: 1970 is never believed.
        var fresh = new DeviceClock(new ManualClock(Epoch), stateDirectory: null, Build);
        Assert.Equal(ClockState.Estimated, fresh.State);
        Near(Build, fresh.GetUtcNow());
    }

    [Fact]
    public void The_fleets_time_corrects_a_wrong_clock_and_a_later_step_of_the_system_clock_does_not_move_it()
    {
        var system = new ManualClock(Epoch);
        var clock = new DeviceClock(system, stateDirectory: null, Build);
        Assert.True(clock.LearnFleetTime(Real, TimeSpan.FromMilliseconds(200)));
        Assert.Equal(ClockState.Corrected, clock.State);
        Near(Real.AddMilliseconds(100), clock.GetUtcNow());

        // NTP arrives and steps the system clock by 56 years: the clock does not jump with it...
        system.Advance(TimeSpan.FromSeconds(30));
        system.Step(Real.AddSeconds(30) - system.GetUtcNow());
        Near(Real.AddSeconds(30), clock.GetUtcNow());
        // ...and since the system clock now agrees with the fleet, it is the source again.
        Assert.Equal(ClockState.Synced, clock.State);
        Assert.Equal(system.GetUtcNow(), clock.GetUtcNow());

        // A step away again (a user sets the time 2 hours back) is ignored: the fleet's time goes on.
        system.Step(TimeSpan.FromHours(-2));
        system.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(ClockState.Corrected, clock.State);
        Near(Real.AddSeconds(35.1), clock.GetUtcNow());
    }

    [Fact]
    public void A_clock_hours_ahead_is_brought_back_but_never_below_what_signed_documents_prove()
    {
        var system = new ManualClock(Real.AddHours(5));
        var clock = new DeviceClock(system, stateDirectory: null, Build);
        Assert.Equal(ClockState.Unverified, clock.State); // nothing says it is wrong yet
        clock.LearnFleetTime(Real, TimeSpan.Zero);
        Assert.Equal(ClockState.Corrected, clock.State);
        Near(Real, clock.GetUtcNow());
        Assert.InRange(clock.Correction.TotalHours, -5.001, -4.999);

        // A manifest issued at Real + 1 h was verified: whoever claims an earlier time (a replayed answer,
        // a broker in the middle) cannot take the clock below it, so an expired manifest stays expired.
        clock.LearnFloor(Real.AddHours(1));
        Near(Real.AddHours(1), clock.GetUtcNow());
        clock.LearnFleetTime(Epoch, TimeSpan.Zero);
        Near(Real.AddHours(1), clock.GetUtcNow());
        Assert.Equal(ClockState.Estimated, clock.State);
    }

    [Fact]
    public void A_fleet_time_measured_over_a_very_slow_round_trip_is_not_used()
    {
        var clock = new DeviceClock(new ManualClock(Epoch), stateDirectory: null, Build);
        Assert.False(clock.LearnFleetTime(Real, TimeSpan.FromMinutes(5)));
        Assert.Equal(ClockState.Estimated, clock.State);
    }

    [Fact]
    public void Only_a_time_the_fleet_confirmed_is_saved_for_the_next_start()
    {
        using var dir = new TempDir();
        var file = Path.Combine(dir.Path, DeviceClock.FileName);
        var ahead = new DeviceClock(new ManualClock(Real.AddHours(5)), dir.Path, Build);
        ahead.Checkpoint(force: true);
        Assert.False(File.Exists(file)); // unverified: saving it would hold every later start 5 hours ahead

        var system = new ManualClock(Real.AddHours(5));
        var clock = new DeviceClock(system, dir.Path, Build);
        clock.LearnFleetTime(Real, TimeSpan.Zero);
        clock.Checkpoint();
        Assert.True(File.Exists(file));
        var saved = File.ReadAllText(file);
        system.Advance(TimeSpan.FromMinutes(30));
        clock.Checkpoint();
        Assert.Equal(saved, File.ReadAllText(file)); // at most hourly: flash is not written for nothing
        system.Advance(TimeSpan.FromMinutes(31));
        clock.Checkpoint();
        Assert.NotEqual(saved, File.ReadAllText(file));

        // The next start at 1970 begins at the saved time.
        var next = new DeviceClock(new ManualClock(Epoch), dir.Path, Build);
        Near(Real.AddMinutes(61), next.GetUtcNow(), 1);

        // A damaged file is no floor, not a crash.
        File.WriteAllText(file, "not a time");
        Near(Build, new DeviceClock(new ManualClock(Epoch), dir.Path, Build).GetUtcNow());
    }

    [Fact]
    public async Task Records_stamped_while_the_clock_is_estimated_are_flagged()
    {
        using var dir = new TempDir();
        var system = new ManualClock(Epoch);
        var clock = new DeviceClock(system, stateDirectory: null, Build);
        using var buffer = new TelemetryBuffer(dir.File("t.db"), new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0 }, clock);
        await buffer.AppendAsync(new TelemetryRecord { Ts = clock.GetUtcNow(), Kind = TelemetryKind.Event, Message = "boot" });
        clock.LearnFleetTime(Real, TimeSpan.Zero);
        await buffer.AppendAsync(new TelemetryRecord { Ts = clock.GetUtcNow(), Kind = TelemetryKind.Event, Message = "synced" });
        var batch = buffer.TakeBatch(10, 1 << 20, TelemetryPriority.Low)!;
        var records = batch.Records.Select(r => System.Text.Json.JsonSerializer.Deserialize(r.Body.Span, WireJsonContext.Default.TelemetryRecord)!).ToList();
        Assert.Equal([true, false], records.Select(r => r.TsEstimated));
        // The estimate runs on from the floor on the monotonic clock: opening the buffer on a busy machine takes a moment.
        Near(Build, records[0].Ts, 5);
        Near(Real, records[1].Ts, 5);
    }

    [Fact]
    public void A_window_ends_when_the_clock_steps_back_before_its_start_instead_of_waiting_hours()
    {
        var model = new ModelRef { Name = "m", Version = "1" };
        var latency = new LatencyWindows(TimeSpan.FromMinutes(1));
        latency.Record(model, 1000, Real.AddSeconds(10));
        Assert.Empty(latency.Close(Real.AddSeconds(30)));
        var closed = latency.Close(Real.AddHours(-2)); // NTP stepped the clock back two hours
        Assert.Equal(Real, Assert.Single(closed).From);
        latency.Record(model, 1000, Real.AddHours(-2));
        Assert.Empty(latency.Close(Real.AddHours(-2).AddSeconds(30)));
    }

    [Fact]
    public void An_open_breaker_waits_on_the_monotonic_clock_whatever_the_wall_clock_does()
    {
        var system = new ManualClock(Real);
        var breaker = new CircuitBreaker(1, TimeSpan.FromSeconds(30), system);
        Assert.True(breaker.Failure());
        system.Step(TimeSpan.FromHours(-3)); // stepping back does not hold it open for 3 hours
        system.Advance(TimeSpan.FromSeconds(31));
        Assert.True(breaker.AllowRequest());
        Assert.True(breaker.Failure());
        system.Step(TimeSpan.FromHours(3)); // stepping forward does not cut the pause short
        Assert.False(breaker.AllowRequest());
    }
}
