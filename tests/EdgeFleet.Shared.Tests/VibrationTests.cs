using EdgeFleet.Shared.Demo;

namespace EdgeFleet.Shared.Tests;

public class VibrationTests
{
    private static float[] Features(MachineCondition condition, int seed)
    {
        var window = new float[VibrationSignal.WindowLength];
        new VibrationSignal(condition, seed).NextWindow(window);
        var features = new float[VibrationFeatures.Count];
        VibrationFeatures.Compute(window, features);
        return features;
    }

    [Fact]
    public void Same_seed_same_signal() => Assert.Equal(Features(MachineCondition.BearingWear, 3), Features(MachineCondition.BearingWear, 3));

    [Fact]
    public void Conditions_differ_in_the_features_that_should_tell_them_apart()
    {
        var normal = Features(MachineCondition.Normal, 1);
        var imbalance = Features(MachineCondition.Imbalance, 1);
        var bearing = Features(MachineCondition.BearingWear, 1);
        Assert.True(imbalance[4] > 10 * normal[4], "imbalance raises low-band (1x) energy");
        Assert.True(bearing[6] > 5 * normal[6], "bearing wear raises high-band energy");
        Assert.True(bearing[3] > normal[3], "bearing impacts raise kurtosis");
    }

    [Fact]
    public void Band_energy_of_a_pure_tone_lands_in_its_band()
    {
        var window = new float[256];
        for (var i = 0; i < window.Length; i++)
            window[i] = (float)Math.Sin(2 * Math.PI * 125 * i / VibrationSignal.SampleRateHz);
        var f = new float[VibrationFeatures.Count];
        VibrationFeatures.Compute(window, f);
        Assert.InRange(f[0], 0.70f, 0.72f); // RMS of a unit sine
        Assert.True(f[5] > 100 * (f[4] + f[6]), "125 Hz is in the mid band");
    }

    [Fact]
    public void Rejects_windows_too_short_and_wrong_feature_buffers()
    {
        Assert.Throws<ArgumentException>(() => VibrationFeatures.Compute(new float[8], new float[VibrationFeatures.Count]));
        Assert.Throws<ArgumentException>(() => VibrationFeatures.Compute(new float[64], new float[3]));
    }
}
