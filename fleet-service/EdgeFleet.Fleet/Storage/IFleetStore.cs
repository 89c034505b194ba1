using EdgeFleet.Fleet.Devices;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// What the fleet service keeps. Implementations: LiteDB (embedded default); PostgreSQL comes with the
/// fleet-core work. Every implementation must pass the same store test suite.
/// </summary>
public interface IFleetStore : IDisposable
{
    Task RecordHelloAsync(HelloMessage hello, DateTimeOffset now, CancellationToken cancellationToken);

    Task RecordReportedAsync(ReportedState state, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Stores each record of the batch once per (device, stream, sequence) and returns what to acknowledge:
    /// the highest sequence number below which everything is stored or was skipped by the device.
    /// </summary>
    Task<TelemetryStoreResult> StoreTelemetryAsync(TelemetryBatch batch, DateTimeOffset now, CancellationToken cancellationToken);

    Task RecordOtaStatusAsync(OtaStatusMessage status, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Keeps a device's desired-state payload, so it is published again after a restart.</summary>
    Task SetDesiredAsync(string deviceId, byte[] payload, CancellationToken cancellationToken);

    Task<IReadOnlyList<(string DeviceId, byte[] Payload)>> ListDesiredAsync(CancellationToken cancellationToken);

    Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(CancellationToken cancellationToken);

    Task<DeviceRecord?> GetDeviceAsync(string deviceId, CancellationToken cancellationToken);

    /// <summary>Stored telemetry of one device, oldest first (for the API and tests).</summary>
    Task<IReadOnlyList<TelemetryRecord>> GetTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken);
}

/// <param name="AckedSeq">Highest sequence number the device may now delete up to.</param>
/// <param name="Stored">Records newly stored by this batch.</param>
/// <param name="Duplicates">Records of this batch that were already stored (a redelivery).</param>
/// <param name="Skipped">Sequence numbers between the last ack and this batch that the device never sent.</param>
public readonly record struct TelemetryStoreResult(long AckedSeq, int Stored, int Duplicates, long Skipped);
