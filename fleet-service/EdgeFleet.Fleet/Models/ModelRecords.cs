using System.Text.Json;

namespace EdgeFleet.Fleet.Models;

/// <summary>A model in the registry: a name for a line of versions.</summary>
public sealed record RegisteredModel
{
    public required string Id { get; init; }

    public string? Description { get; init; }

    public string? Owner { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }

    /// <summary>Model ids follow the rule for device ids: 1-64 of a-z, 0-9, '-', '_', '.'.</summary>
    public static bool IsValidId(string? id) => EdgeFleet.Shared.Wire.DeviceId.IsValid(id);
}

/// <summary>One stored file of a version: the FP32 original, its INT8 variant, or a variant built for one hardware profile.</summary>
public sealed record ModelArtifact(string Kind, string? Profile, string Sha256, long Length, string FileName)
{
    public const string Fp32Kind = "fp32";
    public const string Int8Kind = "int8";
    public const string VariantKind = "variant";
}

/// <summary>A validation gate report attached to a version, as <c>edgefleet model validate --json</c> wrote it.</summary>
public sealed record ValidationRecord(DateTimeOffset At, string By, string Verdict, string CandidateSha256, string? ReferenceSha256, JsonElement Report);

public sealed record StateChange(string From, string To, string By, DateTimeOffset At, string? Reason);

/// <summary>A version of a model: its files, model card, validation reports and approval state with its history.</summary>
public sealed record ModelVersion
{
    public required string ModelId { get; init; }

    public required long Version { get; init; }

    public required string State { get; init; }

    public required ModelCard Card { get; init; }

    public required IReadOnlyList<ModelArtifact> Artifacts { get; init; }

    public IReadOnlyList<ValidationRecord> Validations { get; set; } = [];

    public IReadOnlyList<StateChange> History { get; set; } = [];

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }
}

/// <summary>
/// The approval states of a version and the moves between them. A version starts as a draft; an accepted
/// validation report makes it validated, a rejected one rejects it; an operator approves a validated version
/// (only approved versions can be rolled out), rejects any live version, or retires it.
/// </summary>
public static class ApprovalStates
{
    public const string Draft = "draft";
    public const string Validated = "validated";
    public const string Approved = "approved";
    public const string Rejected = "rejected";
    public const string Retired = "retired";

    public static readonly IReadOnlySet<string> All = new HashSet<string> { Draft, Validated, Approved, Rejected, Retired };

    /// <summary>Null when <paramref name="from"/> → <paramref name="to"/> is allowed, else why not.</summary>
    public static string? CheckMove(string from, string to) => (from, to) switch
    {
        (Draft, Validated) or (Draft, Rejected) => null,
        (Validated, Approved) or (Validated, Rejected) or (Validated, Retired) => null,
        (Approved, Rejected) or (Approved, Retired) => null,
        (Draft, Approved) => "a draft cannot be approved: attach an accepted validation report first (edgefleet model validate, then model push --report)",
        (Rejected or Retired, _) => $"the version is {from}, which is final",
        _ => $"a {from} version cannot become {to}",
    };
}
