using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Enrollment tokens, device keys, API keys and the audit log in the embedded store.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> _enrollmentTokens = null!;
    private ILiteCollection<BsonDocument> _credentials = null!;
    private ILiteCollection<BsonDocument> _apiKeys = null!;
    private ILiteCollection<BsonDocument> _audit = null!;

    private void OpenIdentityCollections()
    {
        _enrollmentTokens = _db.GetCollection("enrollment_tokens");
        _credentials = _db.GetCollection("device_credentials");
        _apiKeys = _db.GetCollection("api_keys");
        _audit = _db.GetCollection("audit", BsonAutoId.Int64);
        _audit.EnsureIndex("target");
    }

    public Task CreateEnrollmentTokenAsync(EnrollmentTokenRecord token, CancellationToken cancellationToken) =>
        WriteAsync(() => _enrollmentTokens.Insert(new BsonDocument
        {
            ["_id"] = token.Hash,
            ["createdBy"] = token.CreatedBy,
            ["createdAt"] = LiteDbDocuments.Time(token.CreatedAt),
            ["expiresAt"] = LiteDbDocuments.Time(token.ExpiresAt),
            ["usesLeft"] = token.UsesLeft,
            ["note"] = token.Note,
            ["tags"] = LiteDbDocuments.TagsToBson(token.Tags),
        }), cancellationToken);

    public Task<EnrollOutcome> EnrollAsync(string tokenHash, DeviceCredential credential, string? hardwareProfile, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            if (_enrollmentTokens.FindById(tokenHash) is not { } token)
                return EnrollOutcome.InvalidToken;
            if (_credentials.FindById(credential.DeviceId) is { } existing)
            {
                var known = ToCredential(existing);
                if (known.Revoked)
                    return EnrollOutcome.DeviceRevoked;
                // A retry after a lost response: same key, same token. Anything else is another device.
                return known.PublicKey.AsSpan().SequenceEqual(credential.PublicKey) && known.EnrolledWith == tokenHash
                    ? EnrollOutcome.Enrolled
                    : EnrollOutcome.DeviceIdTaken;
            }
            if (LiteDbDocuments.Time(token["expiresAt"]) <= now)
                return EnrollOutcome.TokenExpired;
            if (token["usesLeft"].AsInt32 <= 0)
                return EnrollOutcome.TokenUsed;
            _db.BeginTrans();
            try
            {
                token["usesLeft"] = token["usesLeft"].AsInt32 - 1;
                _enrollmentTokens.Update(token);
                _credentials.Insert(FromCredential(credential));
                var device = _devices.FindById(credential.DeviceId) is { } doc
                    ? LiteDbDocuments.ToDevice(doc)
                    : new DeviceRecord { Id = credential.DeviceId, FirstSeen = now, LastSeen = now };
                var tags = new Dictionary<string, string>(device.Tags, StringComparer.Ordinal);
                foreach (var (k, v) in LiteDbDocuments.TagsFromBson(token["tags"]))
                    tags[k] = v;
                _devices.Upsert(LiteDbDocuments.FromDevice(device with
                {
                    Tags = tags,
                    EnrolledAt = now,
                    HardwareProfile = device.HardwareProfile ?? hardwareProfile,
                }));
                _db.Commit();
                return EnrollOutcome.Enrolled;
            }
            catch
            {
                _db.Rollback();
                throw;
            }
        }, cancellationToken);

    public Task<DeviceCredential?> GetCredentialAsync(string deviceId, CancellationToken cancellationToken) =>
        UnderGateAsync(() => _credentials.FindById(deviceId) is { } doc ? ToCredential(doc) : null, cancellationToken);

    public Task<bool> RevokeDeviceAsync(string deviceId, string by, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            if (_credentials.FindById(deviceId) is not { } doc)
                return false;
            if (!doc["revokedAt"].IsNull)
                return true;
            _db.BeginTrans();
            try
            {
                doc["revokedAt"] = LiteDbDocuments.Time(now);
                doc["revokedBy"] = by;
                _credentials.Update(doc);
                if (_devices.FindById(deviceId) is { } device)
                    _devices.Update(LiteDbDocuments.FromDevice(LiteDbDocuments.ToDevice(device) with { RevokedAt = now }));
                _db.Commit();
                return true;
            }
            catch
            {
                _db.Rollback();
                throw;
            }
        }, cancellationToken);

    public Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken) =>
        WriteAsync(() => _apiKeys.Insert(new BsonDocument
        {
            ["_id"] = key.Id,
            ["name"] = key.Name,
            ["role"] = key.Role.ToString(),
            ["secretHash"] = key.SecretHash,
            ["createdAt"] = LiteDbDocuments.Time(key.CreatedAt),
            ["createdBy"] = key.CreatedBy,
            ["revokedAt"] = LiteDbDocuments.Time(key.RevokedAt),
        }), cancellationToken);

    public Task<ApiKeyRecord?> GetApiKeyAsync(string id, CancellationToken cancellationToken) =>
        UnderGateAsync(() => _apiKeys.FindById(id) is { } doc ? ToApiKey(doc) : null, cancellationToken);

    public Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<ApiKeyRecord>>(() => _apiKeys.FindAll().Select(ToApiKey).OrderBy(k => k.CreatedAt).ToList(), cancellationToken);

    public Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            if (_apiKeys.FindById(id) is not { } doc)
                return false;
            if (doc["revokedAt"].IsNull)
            {
                doc["revokedAt"] = LiteDbDocuments.Time(now);
                _apiKeys.Update(doc);
            }
            return true;
        }, cancellationToken);

    public Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken) =>
        WriteAsync(() => _audit.Insert(new BsonDocument
        {
            ["at"] = LiteDbDocuments.Time(entry.At),
            ["actor"] = entry.Actor,
            ["action"] = entry.Action,
            ["target"] = entry.Target,
            ["before"] = entry.Before,
            ["after"] = entry.After,
        }), cancellationToken);

    public Task<IReadOnlyList<AuditEntry>> GetAuditAsync(string? target, int limit, CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<AuditEntry>>(() =>
        {
            var found = target is null
                ? _audit.Find(Query.All(Query.Descending), limit: limit)
                : _audit.Find(Query.EQ("target", target));
            return found.Select(d => new AuditEntry
            {
                Id = d["_id"].AsInt64,
                At = LiteDbDocuments.Time(d["at"])!.Value,
                Actor = d["actor"].AsString,
                Action = d["action"].AsString,
                Target = d["target"].AsString,
                Before = LiteDbDocuments.NullableString(d["before"]),
                After = LiteDbDocuments.NullableString(d["after"]),
            }).OrderByDescending(e => e.Id).Take(limit).ToList();
        }, cancellationToken);

    private static BsonDocument FromCredential(DeviceCredential c) => new()
    {
        ["_id"] = c.DeviceId,
        ["publicKey"] = c.PublicKey,
        ["enrolledAt"] = LiteDbDocuments.Time(c.EnrolledAt),
        ["enrolledWith"] = c.EnrolledWith,
        ["revokedAt"] = LiteDbDocuments.Time(c.RevokedAt),
        ["revokedBy"] = c.RevokedBy,
    };

    private static DeviceCredential ToCredential(BsonDocument d) => new()
    {
        DeviceId = d["_id"].AsString,
        PublicKey = d["publicKey"].AsBinary,
        EnrolledAt = LiteDbDocuments.Time(d["enrolledAt"])!.Value,
        EnrolledWith = d["enrolledWith"].AsString,
        RevokedAt = LiteDbDocuments.Time(d["revokedAt"]),
        RevokedBy = LiteDbDocuments.NullableString(d["revokedBy"]),
    };

    private static ApiKeyRecord ToApiKey(BsonDocument d) => new()
    {
        Id = d["_id"].AsString,
        Name = d["name"].AsString,
        Role = Enum.Parse<OperatorRole>(d["role"].AsString),
        SecretHash = d["secretHash"].AsString,
        CreatedAt = LiteDbDocuments.Time(d["createdAt"])!.Value,
        CreatedBy = d["createdBy"].AsString,
        RevokedAt = LiteDbDocuments.Time(d["revokedAt"]),
    };

    private Task<T> WriteAsync<T>(Func<T> write, CancellationToken ct) => UnderGateAsync(write, ct);

    private Task WriteAsync(Action write, CancellationToken ct) => UnderGateAsync(() =>
    {
        write();
        return true;
    }, ct);
}
