using EdgeFleet.Agent.Inference;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

public class LatencyWindowsTests
{
    private static readonly ModelRef V1 = new() { Name = "vibration", Version = "1" };
    private static readonly ModelRef V2 = new() { Name = "vibration", Version = "2" };

    [Fact]
    public void A_window_closes_on_its_aligned_boundary_with_one_record_per_model_version()
    {
        var windows = new LatencyWindows(TimeSpan.FromMinutes(1));
        var t0 = new DateTimeOffset(2026, 11, 30, 12, 0, 20, TimeSpan.Zero);
        for (var i = 0; i < 100; i++)
            windows.Record(V1, 1000 + i, t0.AddSeconds(i * 0.3));
        windows.Record(V2, 5000, t0.AddSeconds(31));
        windows.RecordError(V2, t0.AddSeconds(32));
        Assert.Empty(windows.Close(t0.AddSeconds(39)));

        var closed = windows.Close(t0.AddSeconds(40));
        Assert.Equal(2, closed.Count);
        var v1 = closed.Single(w => w.Version == "1");
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero), v1.From);
        Assert.Equal(100, v1.Count);
        Assert.InRange(v1.P50Micros, 1040, 1060);
        Assert.Equal(1000, v1.MinMicros);
        Assert.Equal(1099, v1.MaxMicros);
        var v2 = closed.Single(w => w.Version == "2");
        Assert.Equal((1L, 1L), (v2.Count, v2.Errors));
        Assert.All(closed, w => Assert.Null(new TelemetryRecord { Ts = t0, Kind = TelemetryKind.Latency, Latency = w }.Validate(0)));
        Assert.Empty(windows.Close(t0.AddHours(1)));
    }
}
