namespace EdgeFleet.Agent.Inputs;

/// <summary>Where sensor windows come from: the demo's simulated sensor, or a process writing JSON lines.</summary>
public interface IInputSource : IDisposable
{
    /// <summary>Waits for the next window of samples; null when the source has ended.</summary>
    ValueTask<ReadOnlyMemory<float>?> NextWindowAsync(CancellationToken cancellationToken);
}
