namespace EdgeFleet.Agent.Telemetry;

public enum TelemetryBufferError
{
    /// <summary>The file system holds less than the configured reserve; nothing is written until space returns.</summary>
    DiskFull,

    /// <summary>One record larger than the whole buffer may hold.</summary>
    TooLarge,

    /// <summary>The buffer file could not be written or reopened (I/O error).</summary>
    Unavailable,
}

/// <summary>A record was not accepted: it is not in the buffer and will not be sent.</summary>
public sealed class TelemetryBufferException(TelemetryBufferError code, string message, Exception? inner = null) : Exception(message, inner)
{
    public TelemetryBufferError Code { get; } = code;
}
