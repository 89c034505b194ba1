using EdgeFleet.Shared.Demo;

namespace EdgeFleet.Agent.Inputs;

/// <summary>The demo's simulated accelerometer, producing windows at a fixed rate.</summary>
public sealed class DemoVibrationSource : IInputSource
{
    private readonly VibrationSignal _signal;
    private readonly PeriodicTimer _timer;
    private readonly float[] _window = new float[VibrationSignal.WindowLength];

    public DemoVibrationSource(MachineCondition condition, double rateHz, int seed)
    {
        _signal = new VibrationSignal(condition, seed);
        _timer = new PeriodicTimer(TimeSpan.FromSeconds(1 / rateHz));
    }

    public async ValueTask<ReadOnlyMemory<float>?> NextWindowAsync(CancellationToken cancellationToken)
    {
        if (!await _timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            return null;
        _signal.NextWindow(_window);
        return _window;
    }

    public void Dispose() => _timer.Dispose();
}
