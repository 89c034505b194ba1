using System.Collections.Concurrent;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Broker;

/// <summary>Counters of what the fleet received, for /api/health and, later, /metrics.</summary>
public sealed class FleetMetrics
{
    private long _accepted;
    private long _telemetryStored;
    private long _telemetryDuplicates;
    private long _denied;
    private long _brokerClients;

    public ConcurrentDictionary<WireError, long> Rejected { get; } = new();

    public long Accepted => Interlocked.Read(ref _accepted);

    public long TelemetryStored => Interlocked.Read(ref _telemetryStored);

    public long TelemetryDuplicates => Interlocked.Read(ref _telemetryDuplicates);

    /// <summary>Connections and publishes the embedded broker refused.</summary>
    public long Denied => Interlocked.Read(ref _denied);

    /// <summary>Connections the embedded broker closed before they authenticated: over the pending limit, too slow, or an oversized or non-CONNECT first packet.</summary>
    public long RefusedUnauthenticated => Interlocked.Read(ref _refusedUnauthenticated);

    public void CountRefusedUnauthenticated() => Interlocked.Increment(ref _refusedUnauthenticated);

    private long _refusedUnauthenticated;

    /// <summary>MQTT clients connected to the embedded broker now (devices and the fleet's own client).</summary>
    public long BrokerClients => Interlocked.Read(ref _brokerClients);

    public void ClientConnected() => Interlocked.Increment(ref _brokerClients);

    public void ClientDisconnected() => Interlocked.Decrement(ref _brokerClients);

    public void CountAccepted() => Interlocked.Increment(ref _accepted);

    public void CountRejected(WireError error) => Rejected.AddOrUpdate(error, 1, (_, n) => n + 1);

    public void CountDenied() => Interlocked.Increment(ref _denied);

    /// <summary>Artifact bytes answered through the broker (<see cref="Ota.ChunkServer"/>).</summary>
    public long ChunkBytesServed => Interlocked.Read(ref _chunkBytes);

    /// <summary>Chunk requests refused: not the device's artifact, unknown, or past its end.</summary>
    public long ChunksRefused => Interlocked.Read(ref _chunksRefused);

    private long _chunkBytes;
    private long _chunksRefused;

    public void CountChunkServed(int bytes) => Interlocked.Add(ref _chunkBytes, bytes);

    public void CountChunkRefused() => Interlocked.Increment(ref _chunksRefused);

    public void CountTelemetry(int stored, int duplicates)
    {
        Interlocked.Add(ref _telemetryStored, stored);
        Interlocked.Add(ref _telemetryDuplicates, duplicates);
    }
}
