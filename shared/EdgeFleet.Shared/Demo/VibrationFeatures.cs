namespace EdgeFleet.Shared.Demo;

/// <summary>
/// The eight features the demo model reads from one vibration window. Training (fleet-side model tools)
/// and inference (the agent) must compute them identically, which is why they live here.
/// </summary>
public static class VibrationFeatures
{
    public const int Count = 8;

    public static readonly IReadOnlyList<string> Names =
        ["rms", "peak", "crest_factor", "kurtosis", "low_band_energy", "mid_band_energy", "high_band_energy", "zero_crossing_rate"];

    public static void Compute(ReadOnlySpan<float> window, Span<float> features)
    {
        if (window.Length < 16)
            throw new ArgumentException("a window needs at least 16 samples", nameof(window));
        if (features.Length != Count)
            throw new ArgumentException($"features must have {Count} elements", nameof(features));

        double mean = 0;
        foreach (var x in window)
            mean += x;
        mean /= window.Length;

        double m2 = 0, m4 = 0, peak = 0;
        var crossings = 0;
        for (var i = 0; i < window.Length; i++)
        {
            var d = window[i] - mean;
            m2 += d * d;
            m4 += d * d * d * d;
            peak = Math.Max(peak, Math.Abs(d));
            if (i > 0 && (window[i - 1] - mean) * d < 0)
                crossings++;
        }
        m2 /= window.Length;
        m4 /= window.Length;
        var rms = Math.Sqrt(m2);

        features[0] = (float)rms;
        features[1] = (float)peak;
        features[2] = (float)(rms > 1e-9 ? peak / rms : 0);
        features[3] = (float)(m2 > 1e-12 ? m4 / (m2 * m2) : 0);
        features[4] = (float)BandEnergy(window, mean, 5, 60);
        features[5] = (float)BandEnergy(window, mean, 60, 200);
        features[6] = (float)BandEnergy(window, mean, 200, 480);
        features[7] = (float)crossings / window.Length;
    }

    /// <summary>Mean power per sample in [lowHz, highHz), summed over DFT bins (Goertzel per bin).</summary>
    private static double BandEnergy(ReadOnlySpan<float> window, double mean, double lowHz, double highHz)
    {
        var n = window.Length;
        var binHz = (double)VibrationSignal.SampleRateHz / n;
        var first = (int)Math.Ceiling(lowHz / binHz);
        var last = Math.Min((int)Math.Floor(highHz / binHz), (n / 2) - 1);
        double energy = 0;
        for (var k = first; k <= last; k++)
        {
            var coeff = 2 * Math.Cos(2 * Math.PI * k / n);
            double s1 = 0, s2 = 0;
            foreach (var x in window)
            {
                var s0 = x - mean + (coeff * s1) - s2;
                s2 = s1;
                s1 = s0;
            }
            energy += (s1 * s1) + (s2 * s2) - (coeff * s1 * s2);
        }
        return 2 * energy / ((double)n * n);
    }
}
