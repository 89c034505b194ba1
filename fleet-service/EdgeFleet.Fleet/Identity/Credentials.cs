namespace EdgeFleet.Fleet.Identity;

/// <summary>What an operator (an API key) may do; each role includes the ones before it.</summary>
public enum OperatorRole
{
    /// <summary>Reads the registry, telemetry and audit log.</summary>
    Viewer,

    /// <summary>Also enrolls and revokes devices, uploads artifacts, sets desired models.</summary>
    Operator,

    /// <summary>Also manages API keys.</summary>
    Admin,
}

public static class OperatorRoles
{
    /// <summary>
    /// Why <paramref name="role"/> is not one of the roles, or null. JSON enums also bind from numbers ("role": 99),
    /// so every entrance that takes a role checks it here before anything is stored.
    /// </summary>
    public static string? Problem(OperatorRole role) =>
        Enum.IsDefined(role) ? null : "role must be one of Viewer, Operator, Admin";
}

/// <summary>A one-time (or n-time) enrollment token. Only the SHA-256 of the token is stored.</summary>
public sealed record EnrollmentTokenRecord
{
    /// <summary>SHA-256 of the token, hex: the token itself is shown once, to the operator who created it.</summary>
    public required string Hash { get; init; }

    public required string CreatedBy { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required DateTimeOffset ExpiresAt { get; init; }

    public required int UsesLeft { get; init; }

    public string? Note { get; init; }

    /// <summary>Tags given to every device enrolled with this token (site, region, customer).</summary>
    public IReadOnlyDictionary<string, string> Tags { get; init; } = new Dictionary<string, string>();

    /// <summary>The first 12 hex digits of the hash: how the API and the audit log name the token.</summary>
    public string Id => Hash[..12];
}

/// <summary>A device's registered public key.</summary>
public sealed record DeviceCredential
{
    public required string DeviceId { get; init; }

    /// <summary>Raw Ed25519 public key.</summary>
    public required byte[] PublicKey { get; init; }

    public required DateTimeOffset EnrolledAt { get; init; }

    /// <summary>Hash of the enrollment token used, so a retried enrollment (lost response) is recognised.</summary>
    public required string EnrolledWith { get; init; }

    public DateTimeOffset? RevokedAt { get; init; }

    public string? RevokedBy { get; init; }

    public bool Revoked => RevokedAt is not null;
}

/// <summary>An operator's API key: <c>efk_{id}_{secret}</c>; only the SHA-256 of the secret is stored.</summary>
public sealed record ApiKeyRecord
{
    public required string Id { get; init; }

    public required string Name { get; init; }

    public required OperatorRole Role { get; init; }

    public required string SecretHash { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }

    public DateTimeOffset? RevokedAt { get; init; }
}

public enum EnrollOutcome
{
    Enrolled,
    InvalidToken,
    TokenExpired,
    TokenUsed,
    DeviceIdTaken,
    DeviceRevoked,
}

/// <summary>One state change made through the API: who, what, when, and the state before and after (JSON).</summary>
public sealed record AuditEntry
{
    public long Id { get; init; }

    public required DateTimeOffset At { get; init; }

    /// <summary><c>key:{id}</c> for an operator's API key, <c>device:{id}</c> for a device.</summary>
    public required string Actor { get; init; }

    /// <summary>A stable verb: <c>device.enroll</c>, <c>device.revoke</c>, <c>enrollment-token.create</c>, ...</summary>
    public required string Action { get; init; }

    /// <summary>What it acted on: a device id, a key id, a token id, an artifact hash.</summary>
    public required string Target { get; init; }

    public string? Before { get; init; }

    public string? After { get; init; }
}
