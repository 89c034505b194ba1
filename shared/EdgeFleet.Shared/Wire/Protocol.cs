namespace EdgeFleet.Shared.Wire;

/// <summary>Version and size limits of the device ↔ fleet protocol (v1).</summary>
public static class Protocol
{
    /// <summary>The protocol version every message carries in its <c>v</c> field.</summary>
    public const int Version = 1;

    /// <summary>Largest payload either side accepts on any topic; bigger ones are refused unread.</summary>
    public const int MaxPayloadBytes = 256 * 1024;

    /// <summary>Most records one telemetry batch may carry.</summary>
    public const int MaxRecordsPerBatch = 1000;

    /// <summary>
    /// The highest telemetry sequence number (2^53: exact in every JSON reader, and 285 years of a million records a
    /// second). Bounding it keeps every count and gap the fleet derives from sequence numbers far from overflow.
    /// </summary>
    public const long MaxSequence = 1L << 53;

    /// <summary>Most bytes a batch's records may expand to once decompressed.</summary>
    public const int MaxBatchJsonBytes = 4 * 1024 * 1024;

    /// <summary>
    /// MQTT 5 user property of the embedded broker's CONNACK (accepted or refused): the fleet's clock, ISO 8601 UTC. A device
    /// whose clock is far off learns the time here, so its next token is valid (docs/operations.md, "Clocks").
    /// </summary>
    public const string FleetTimeProperty = "ef-time";
}
