using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Groups;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// What the fleet service keeps. Implementations: LiteDB (embedded default) and PostgreSQL (several
/// instances). Every implementation must pass the same store test suite.
/// </summary>
public interface IFleetStore : IDisposable
{
    Task RecordHelloAsync(HelloMessage hello, DateTimeOffset now, CancellationToken cancellationToken);

    Task RecordReportedAsync(ReportedState state, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Stores each record of each batch once per (device, stream, sequence), records the gaps the device
    /// declared (<see cref="TelemetryBatch.PendingFrom"/>), and returns per batch the new watermark: the
    /// highest sequence number at and below which everything is stored or a recorded gap. All batches go in
    /// one transaction (group commit): the ingest pipeline hands over whatever arrived meanwhile.
    /// </summary>
    Task<IReadOnlyList<TelemetryStoreResult>> StoreTelemetryAsync(IReadOnlyList<IncomingTelemetry> batches, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Recorded gaps of one device's telemetry, oldest first.</summary>
    Task<IReadOnlyList<TelemetryGap>> GetGapsAsync(string deviceId, int limit, CancellationToken cancellationToken);

    Task RecordOtaStatusAsync(OtaStatusMessage status, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Keeps a device's desired-state payload, so it is published again after a restart.</summary>
    Task SetDesiredAsync(string deviceId, byte[] payload, CancellationToken cancellationToken);

    Task<IReadOnlyList<(string DeviceId, byte[] Payload)>> ListDesiredAsync(CancellationToken cancellationToken);

    /// <summary>One device's stored desired state (the wire payload), or null when none was set.</summary>
    Task<byte[]?> GetDesiredAsync(string deviceId, CancellationToken cancellationToken);

    Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(CancellationToken cancellationToken);

    Task<DeviceRecord?> GetDeviceAsync(string deviceId, CancellationToken cancellationToken);

    /// <summary>Applies <paramref name="patch"/> to a known device's tags in one step; null when the device is unknown.</summary>
    Task<TagChange?> ChangeTagsAsync(string deviceId, TagPatch patch, CancellationToken cancellationToken);

    /// <summary>Creates a group; false when one of that name exists.</summary>
    Task<bool> CreateGroupAsync(DeviceGroup group, CancellationToken cancellationToken);

    Task<DeviceGroup?> GetGroupAsync(string name, CancellationToken cancellationToken);

    /// <summary>Every group, by name.</summary>
    Task<IReadOnlyList<DeviceGroup>> ListGroupsAsync(CancellationToken cancellationToken);

    /// <summary>Replaces a group by <paramref name="change"/> of its current state, atomically; null when there is no such group.</summary>
    Task<(DeviceGroup Before, DeviceGroup After)?> UpdateGroupAsync(string name, Func<DeviceGroup, DeviceGroup> change, CancellationToken cancellationToken);

    /// <summary>Deletes a group and returns it; null when there was none.</summary>
    Task<DeviceGroup?> DeleteGroupAsync(string name, CancellationToken cancellationToken);

    /// <summary>Registers a model; false when one of that id exists.</summary>
    Task<bool> CreateModelAsync(RegisteredModel model, CancellationToken cancellationToken);

    Task<RegisteredModel?> GetModelAsync(string id, CancellationToken cancellationToken);

    /// <summary>Every registered model, by id.</summary>
    Task<IReadOnlyList<RegisteredModel>> ListModelsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Adds a version if it is above every existing version of its model (versions only grow, as devices
    /// require); returns the highest version before the call (0 for none) and whether the version was added.
    /// </summary>
    Task<(bool Added, long Latest)> AddModelVersionAsync(ModelVersion version, CancellationToken cancellationToken);

    Task<ModelVersion?> GetModelVersionAsync(string modelId, long version, CancellationToken cancellationToken);

    /// <summary>A model's versions, newest first.</summary>
    Task<IReadOnlyList<ModelVersion>> ListModelVersionsAsync(string modelId, CancellationToken cancellationToken);

    /// <summary>Replaces a version by <paramref name="change"/> of its current state, atomically; null when there is no such version.</summary>
    Task<(ModelVersion Before, ModelVersion After)?> UpdateModelVersionAsync(string modelId, long version, Func<ModelVersion, ModelVersion> change, CancellationToken cancellationToken);

    /// <summary>Stored telemetry of one device, oldest first (for the API and tests).</summary>
    /// <summary>Stores a new rollout; false when its id is taken.</summary>
    Task<bool> CreateRolloutAsync(Rollouts.Rollout rollout, CancellationToken cancellationToken);

    Task<Rollouts.Rollout?> GetRolloutAsync(string id, CancellationToken cancellationToken);

    /// <summary>Every rollout, newest first.</summary>
    Task<IReadOnlyList<Rollouts.Rollout>> ListRolloutsAsync(CancellationToken cancellationToken);

    /// <summary>Replaces a rollout with <paramref name="change"/>'s result, atomically; null when it does not exist or the change returns null.</summary>
    Task<(Rollouts.Rollout Before, Rollouts.Rollout After)?> UpdateRolloutAsync(string id, Func<Rollouts.Rollout, Rollouts.Rollout?> change, CancellationToken cancellationToken);

    /// <summary>A device's newest <paramref name="limit"/> records (highest sequence numbers first).</summary>
    Task<IReadOnlyList<TelemetryRecord>> GetRecentTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken);

    Task<IReadOnlyList<TelemetryRecord>> GetTelemetryAsync(string deviceId, int limit, CancellationToken cancellationToken);

    Task CreateEnrollmentTokenAsync(EnrollmentTokenRecord token, CancellationToken cancellationToken);

    /// <summary>
    /// In one transaction: checks the enrollment token, takes one use of it, registers the device's key and
    /// creates its registry record with the token's tags. Enrolling again with the same key and token (a
    /// device retrying after a lost response) succeeds without taking another use.
    /// </summary>
    Task<EnrollOutcome> EnrollAsync(string tokenHash, DeviceCredential credential, string? hardwareProfile, DateTimeOffset now, CancellationToken cancellationToken);

    Task<DeviceCredential?> GetCredentialAsync(string deviceId, CancellationToken cancellationToken);

    /// <summary>Marks a device's key revoked; false when the device was never enrolled. Idempotent.</summary>
    Task<bool> RevokeDeviceAsync(string deviceId, string by, DateTimeOffset now, CancellationToken cancellationToken);

    Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken);

    Task<ApiKeyRecord?> GetApiKeyAsync(string id, CancellationToken cancellationToken);

    Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken);

    Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Keeps devices' drift sketches, one per (device, model, version, window): a sketch sent again replaces the first.</summary>
    Task UpsertSketchesAsync(IReadOnlyList<Drift.StoredSketch> sketches, CancellationToken cancellationToken);

    /// <summary>The sketches of one model version whose windows start within [<paramref name="from"/>, <paramref name="to"/>), oldest first.</summary>
    Task<IReadOnlyList<Drift.StoredSketch>> GetSketchesAsync(string model, string version, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken);

    /// <summary>Opens a drift alert; false when an active alert has the same key (model, version, feature, segment).</summary>
    Task<bool> CreateDriftAlertAsync(Drift.DriftAlert alert, CancellationToken cancellationToken);

    /// <summary>Drift alerts, newest first: the active ones, or all (the most recent <paramref name="limit"/>).</summary>
    Task<IReadOnlyList<Drift.DriftAlert>> ListDriftAlertsAsync(bool activeOnly, int limit, CancellationToken cancellationToken);

    /// <summary>Changes an alert atomically (null from <paramref name="change"/> leaves it); null when there is no such alert or nothing changed.</summary>
    Task<(Drift.DriftAlert Before, Drift.DriftAlert After)?> UpdateDriftAlertAsync(string id, Func<Drift.DriftAlert, Drift.DriftAlert?> change, CancellationToken cancellationToken);

    /// <summary>Keeps hard examples devices uploaded; one already kept (same id) is left as it is, label and all.</summary>
    Task AddHardExamplesAsync(IReadOnlyList<Retraining.StoredHardExample> examples, CancellationToken cancellationToken);

    /// <summary>A model's hard examples taken within [<paramref name="from"/>, <paramref name="to"/>), newest first, optionally of one device.</summary>
    Task<IReadOnlyList<Retraining.StoredHardExample>> ListHardExamplesAsync(string model, DateTimeOffset from, DateTimeOffset to, string? deviceId, int limit, CancellationToken cancellationToken);

    /// <summary>The hard examples of these ids that exist, in no particular order.</summary>
    Task<IReadOnlyList<Retraining.StoredHardExample>> GetHardExamplesAsync(IReadOnlyCollection<string> ids, CancellationToken cancellationToken);

    /// <summary>Labels these hard examples (feedback); returns how many exist and were labelled.</summary>
    Task<int> LabelHardExamplesAsync(IReadOnlyCollection<string> ids, string label, string by, DateTimeOffset at, CancellationToken cancellationToken);

    /// <summary>Creates or replaces the retraining policy of a model.</summary>
    Task PutRetrainingPolicyAsync(Retraining.RetrainingPolicy policy, CancellationToken cancellationToken);

    Task<IReadOnlyList<Retraining.RetrainingPolicy>> ListRetrainingPoliciesAsync(CancellationToken cancellationToken);

    /// <summary>Deletes a model's policy; false when it had none.</summary>
    Task<bool> DeleteRetrainingPolicyAsync(string modelId, CancellationToken cancellationToken);

    /// <summary>Stores a new job unless the model has an open one (queued, running or processing): false then.</summary>
    Task<bool> CreateRetrainingJobAsync(Retraining.RetrainingJob job, CancellationToken cancellationToken);

    Task<Retraining.RetrainingJob?> GetRetrainingJobAsync(string id, CancellationToken cancellationToken);

    /// <summary>Jobs newest first, of one model or all.</summary>
    Task<IReadOnlyList<Retraining.RetrainingJob>> ListRetrainingJobsAsync(string? modelId, int limit, CancellationToken cancellationToken);

    /// <summary>Changes a job atomically (null from <paramref name="change"/> leaves it); null when there is no such job or nothing changed.</summary>
    Task<(Retraining.RetrainingJob Before, Retraining.RetrainingJob After)?> UpdateRetrainingJobAsync(string id, Func<Retraining.RetrainingJob, Retraining.RetrainingJob?> change, CancellationToken cancellationToken);

    /// <summary>Adds a console user; false when the username is taken.</summary>
    Task<bool> CreateUserAsync(Identity.UserRecord user, CancellationToken cancellationToken);

    Task<Identity.UserRecord?> GetUserAsync(string username, CancellationToken cancellationToken);

    Task<IReadOnlyList<Identity.UserRecord>> ListUsersAsync(CancellationToken cancellationToken);

    /// <summary>Changes a user atomically (<paramref name="change"/> returns null to leave it); null when there is no such user or nothing changed.</summary>
    Task<(Identity.UserRecord Before, Identity.UserRecord After)?> UpdateUserAsync(string username, Func<Identity.UserRecord, Identity.UserRecord?> change, CancellationToken cancellationToken);

    Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken);

    /// <summary>The newest audit entries first, optionally only those about one target.</summary>
    Task<IReadOnlyList<AuditEntry>> GetAuditAsync(string? target, int limit, CancellationToken cancellationToken);
}

/// <summary>One decoded telemetry batch on its way into the store.</summary>
public sealed record IncomingTelemetry(TelemetryBatch Batch, IReadOnlyList<TelemetryRecord> Records);

public static class FleetStoreExtensions
{
    /// <summary>One batch on its own (tests, tools).</summary>
    public static async Task<TelemetryStoreResult> StoreTelemetryAsync(this IFleetStore store, TelemetryBatch batch, IReadOnlyList<TelemetryRecord> records,
        DateTimeOffset now, CancellationToken cancellationToken) =>
        (await store.StoreTelemetryAsync([new IncomingTelemetry(batch, records)], now, cancellationToken).ConfigureAwait(false))[0];
}

/// <param name="AckedSeq">The watermark: the device may delete everything at and below it.</param>
/// <param name="Stored">Records newly stored by this batch.</param>
/// <param name="Duplicates">Records of this batch that were already stored (a redelivery).</param>
/// <param name="Skipped">Sequence numbers newly recorded as gaps (evicted by the device, never to come).</param>
/// <param name="Conflicts">Records whose sequence number was stored before with other content.</param>
public readonly record struct TelemetryStoreResult(long AckedSeq, int Stored, int Duplicates, long Skipped, int Conflicts);

/// <summary>A run of sequence numbers a device evicted before sending them.</summary>
public sealed record TelemetryGap(string DeviceId, string StreamId, long From, long To, DateTimeOffset RecordedAt);
