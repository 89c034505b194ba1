using EdgeFleet.Fleet.Drift;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Tests;

/// <summary>Drift sketches in the store suite: one per (device, model, version, window); read by version and window range.</summary>
public abstract partial class FleetStoreContract
{
    private static StoredSketch Sketch(string device, string version, DateTimeOffset from, long count) => new(device, new SketchWindow
    {
        Model = "m",
        Version = version,
        From = from,
        Seconds = 60,
        Features = [new SketchData { Name = "rms", Counts = [count, 0], Count = count, Mean = 0.5, SumSquares = 1, Min = 0.1, Max = 0.9 }],
    });

    [Fact]
    public async Task Sketches_are_kept_once_per_device_and_window_and_read_by_version_and_time()
    {
        await _store.UpsertSketchesAsync([Sketch("d1", "1", T0, 5), Sketch("d2", "1", T0, 7), Sketch("d1", "1", T0.AddMinutes(1), 9), Sketch("d1", "2", T0, 11)], default);
        // Sent again (a batch whose ack was lost): replaced, not added.
        await _store.UpsertSketchesAsync([Sketch("d1", "1", T0, 6)], default);
        await _store.UpsertSketchesAsync([], default);

        var all = await _store.GetSketchesAsync("m", "1", T0, T0.AddHours(1), default);
        Assert.Equal([("d1", T0, 6L), ("d2", T0, 7L), ("d1", T0.AddMinutes(1), 9L)], all.Select(s => (s.DeviceId, s.Window.From, s.Window.Features[0].Count)));
        Assert.Equal(0.9, all[0].Window.Features[0].Max);
        Assert.Equal(["d1", "d2"], (await _store.GetSketchesAsync("m", "1", T0, T0.AddMinutes(1), default)).Select(s => s.DeviceId));
        Assert.Single(await _store.GetSketchesAsync("m", "2", T0, T0.AddHours(1), default));
        Assert.Empty(await _store.GetSketchesAsync("other", "1", T0, T0.AddHours(1), default));
    }
}
