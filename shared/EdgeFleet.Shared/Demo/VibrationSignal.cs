namespace EdgeFleet.Shared.Demo;

/// <summary>
/// A synthetic accelerometer on a rotating machine, for the demo and for training the demo model.
/// Normal: shaft rotation (1x) plus a little 2x and noise. Imbalance: a strong 1x component.
/// Bearing wear: periodic impacts at the bearing's defect frequency ringing a structural resonance.
/// Deterministic for a given seed.
/// </summary>
public sealed class VibrationSignal
{
    public const int SampleRateHz = 1000;
    public const int WindowLength = 256;

    private const double ResonanceHz = 310;
    private readonly Random _random;
    private double _time;

    public VibrationSignal(MachineCondition condition, int seed)
    {
        Condition = condition;
        _random = new Random(seed);
    }

    public MachineCondition Condition { get; set; }

    /// <summary>The sensor's sensitivity relative to the one the model was trained on (1: the same).</summary>
    public double Gain { get; set; } = 1;

    /// <summary>Fills <paramref name="window"/> with the next window of samples (in g).</summary>
    public void NextWindow(Span<float> window)
    {
        var shaftHz = 20 + (10 * _random.NextDouble());
        var load = 0.8 + (0.4 * _random.NextDouble());
        var (oneX, noise) = Condition switch
        {
            MachineCondition.Imbalance => (0.9 + (0.6 * _random.NextDouble()), 0.05),
            MachineCondition.BearingWear => (0.12 + (0.08 * _random.NextDouble()), 0.09),
            _ => (0.12 + (0.08 * _random.NextDouble()), 0.05),
        };
        var defectHz = shaftHz * 3.57;
        var phase = _random.NextDouble() * 2 * Math.PI;
        for (var i = 0; i < window.Length; i++)
        {
            var t = _time + ((double)i / SampleRateHz);
            var value = load * ((oneX * Math.Sin((2 * Math.PI * shaftHz * t) + phase))
                + (0.04 * Math.Sin(4 * Math.PI * shaftHz * t)));
            if (Condition == MachineCondition.BearingWear)
            {
                // Time since the last impact, each exciting a decaying ring at the resonance.
                var sinceImpact = t % (1.0 / defectHz);
                value += 0.6 * Math.Exp(-sinceImpact * 180) * Math.Sin(2 * Math.PI * ResonanceHz * sinceImpact);
            }
            value += noise * Gaussian();
            window[i] = (float)(value * Gain);
        }
        _time += (double)window.Length / SampleRateHz;
    }

    private double Gaussian()
    {
        var u1 = 1.0 - _random.NextDouble();
        var u2 = _random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
