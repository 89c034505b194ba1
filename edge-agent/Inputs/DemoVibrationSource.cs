using EdgeFleet.Shared.Demo;

namespace EdgeFleet.Agent.Inputs;

/// <summary>The demo's simulated accelerometer, producing windows at a fixed rate; optionally its sensitivity changes after a while (drift).</summary>
public sealed class DemoVibrationSource : IInputSource
{
    private readonly VibrationSignal _signal;
    private readonly PeriodicTimer _timer;
    private readonly float[] _window = new float[VibrationSignal.WindowLength];
    private readonly (TimeSpan After, double Gain)? _drift;
    private readonly long _started = Environment.TickCount64;

    public DemoVibrationSource(MachineCondition condition, double rateHz, int seed, (TimeSpan After, double Gain)? drift = null)
    {
        _signal = new VibrationSignal(condition, seed);
        _timer = new PeriodicTimer(TimeSpan.FromSeconds(1 / rateHz));
        _drift = drift;
    }

    public async ValueTask<ReadOnlyMemory<float>?> NextWindowAsync(CancellationToken cancellationToken)
    {
        if (!await _timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            return null;
        if (_drift is { } d && Environment.TickCount64 - _started >= d.After.TotalMilliseconds)
            _signal.Gain = d.Gain;
        _signal.NextWindow(_window);
        return _window;
    }

    public void Dispose() => _timer.Dispose();
}
