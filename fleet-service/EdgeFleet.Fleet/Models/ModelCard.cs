using System.Text.Json;

namespace EdgeFleet.Fleet.Models;

/// <summary>A tensor of the model's interface; -1 marks a symbolic dimension.</summary>
public sealed record TensorSchema(string Name, string Type, long[] Shape);

/// <summary>
/// A feature's training-time distribution, the baseline for drift: counts per bin between consecutive
/// <see cref="Edges"/> (so one count fewer than edges). <see cref="Source"/> says where a device reads the
/// value (<c>input:N</c>, <c>confidence</c>); without it, a name of that form is its own source. Baselines with a
/// source are sketched on the devices that run the version.
/// </summary>
public sealed record FeatureBaseline(string Name, double[] Edges, long[] Counts)
{
    public string? Source { get; init; }

    /// <summary>
    /// How many of the baseline's values lay outside its edges (counted in the outer bins): 0 for a baseline built
    /// from a sample (its edges span it), more for one rebuilt from field sketches on older edges.
    /// </summary>
    public long OutOfRange { get; init; }

    /// <summary>
    /// Set when this baseline is to be taken from the version's own first windows in the field (the fleet sets it for
    /// the output features of a retrained version, whose answers on the field cannot be known before it runs there):
    /// until that many windows have arrived its counts are all zero and it is not judged.
    /// </summary>
    public int? ReferenceWindows { get; init; }

    /// <summary>The counts are the field's, from <see cref="ModelCard.FieldReference"/> (per device there).</summary>
    public bool Field { get; init; }

    /// <summary>A field reference still waiting for its windows.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool Pending => ReferenceWindows is not null && Counts.All(c => c == 0);

    /// <summary>This feature's PSI warning level (the drift decision's effect size); null for the default, 0.1.</summary>
    public double? WarnPsi { get; init; }

    /// <summary>This feature's PSI alert level (an alert's severity); null for the default, 0.25.</summary>
    public double? AlertPsi { get; init; }

    /// <summary>The source the devices sketch, or null when the baseline names none.</summary>
    public string? EffectiveSource => Source ?? (EdgeFleet.Shared.Stats.DriftSource.Parse(Name) is not null ? Name : null);
}

/// <summary>
/// What a version is for and where it came from: who owns it, what it is meant for and not, the hash of its
/// training data, its metrics, its input/output schema, its feature baselines for drift, and the thresholds
/// its validation gate applies.
/// </summary>
public sealed record ModelCard
{
    public string? Owner { get; init; }

    public string? IntendedUse { get; init; }

    public string? Limitations { get; init; }

    public string? TrainingDataSha256 { get; init; }

    public Dictionary<string, double> Metrics { get; set; } = [];

    public List<string> Labels { get; set; } = [];

    public List<TensorSchema> Inputs { get; set; } = [];

    public List<TensorSchema> Outputs { get; set; } = [];

    public List<FeatureBaseline> FeatureBaselines { get; set; } = [];

    /// <summary>
    /// Where the baselines marked <see cref="FeatureBaseline.Field"/> came from: a base version's sketches from these
    /// devices over this time. The fleet reads them per device, so a window is judged against the mix of its own
    /// devices' field (a canary's one device against that device's field, not the whole target's).
    /// </summary>
    public FieldReference? FieldReference { get; init; }

    /// <summary>The validation gate's thresholds (the CLI's <c>--card</c> reads them), as written.</summary>
    public JsonElement? Thresholds { get; init; }

    /// <summary>Null when the card is complete and consistent, else the first problem found.</summary>
    public string? Problem()
    {
        if (string.IsNullOrWhiteSpace(Owner))
            return "the model card needs an owner";
        if (string.IsNullOrWhiteSpace(IntendedUse))
            return "the model card needs an intendedUse";
        if (TrainingDataSha256 is { } sha && (sha.Length != 64 || !sha.All(char.IsAsciiHexDigit)))
            return "trainingDataSha256 must be 64 hex digits";
        foreach (var (name, value) in Metrics)
            if (!double.IsFinite(value))
                return $"metric '{name}' is not a finite number";
        foreach (var t in Inputs.Concat(Outputs))
            if (string.IsNullOrWhiteSpace(t.Name) || string.IsNullOrWhiteSpace(t.Type) || t.Shape is null || t.Shape.Any(d => d < -1))
                return $"tensor schema '{t.Name}' needs a name, a type and a shape (-1 for a symbolic dimension)";
        foreach (var b in FeatureBaselines)
        {
            if (string.IsNullOrWhiteSpace(b.Name))
                return "a feature baseline has no name";
            if (b.Edges is not { Length: >= 2 } || b.Counts is null || b.Counts.Length != b.Edges.Length - 1)
                return $"feature baseline '{b.Name}' needs at least two edges and one count per bin (edges - 1)";
            if (b.Edges.Any(e => !double.IsFinite(e)) || b.Edges.Zip(b.Edges.Skip(1)).Any(p => p.Second <= p.First))
                return $"feature baseline '{b.Name}': edges must be finite and strictly increasing";
            if (b.Counts.Any(c => c < 0))
                return $"feature baseline '{b.Name}': counts must not be negative";
            if (b.ReferenceWindows is < 1 or > 1000)
                return $"feature baseline '{b.Name}': referenceWindows must be 1-1000";
            if (b.Counts.Sum() == 0 && b.ReferenceWindows is null)
                return $"feature baseline '{b.Name}' holds no values: drift against it cannot be scored (build it with edgefleet model baseline)";
            if (b.OutOfRange < 0 || b.OutOfRange > b.Counts.Sum())
                return $"feature baseline '{b.Name}': outOfRange must be between 0 and its number of values";
            if (b.Counts.Length < 2)
                return $"feature baseline '{b.Name}' has one bin, so no value can ever drift from it: rebuild it with edgefleet model baseline, " +
                    "which gives a constant feature a bin of its own with bins below and above it";
            if (b.WarnPsi is { } warn && !(warn > 0 && warn <= (b.AlertPsi ?? Drift.DriftRule.DefaultAlertPsi)))
                return $"feature baseline '{b.Name}': warnPsi must be positive and at most alertPsi";
            if (b.AlertPsi is { } alert && !(alert > 0 && double.IsFinite(alert)))
                return $"feature baseline '{b.Name}': alertPsi must be a positive number";
            if (b.Source is { } source && EdgeFleet.Shared.Stats.DriftSource.Parse(source) is null)
                return $"feature baseline '{b.Name}': source '{source}' is not input:N or confidence";
        }
        if (FeatureBaselines.GroupBy(b => b.Name).FirstOrDefault(g => g.Count() > 1) is { } dup)
            return $"feature baseline '{dup.Key}' appears twice";
        return null;
    }
}

/// <summary>A base version's field sketches: which version, which devices, from when to when.</summary>
public sealed record FieldReference(long BaseVersion, DateTimeOffset From, DateTimeOffset To, List<string> Devices);
