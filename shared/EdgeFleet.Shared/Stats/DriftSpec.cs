using System.Globalization;

namespace EdgeFleet.Shared.Stats;

/// <summary>
/// What a device sketches for drift while it runs a model: per feature, where the value comes from and the
/// baseline's bin edges, and the window length. The fleet writes it into the signed manifest from the model
/// card's feature baselines, so the device's bins line up with the baseline's.
/// </summary>
public sealed record DriftSpec
{
    public const int MaxFeatures = 256;
    public const int MaxEdges = 1025;

    /// <summary>Sketches are sent once per window of this length, aligned to multiples of it (hourly by default).</summary>
    public double WindowSeconds { get; set; } = 3600;

    public List<DriftFeature> Features { get; set; } = [];

    public string? Validate()
    {
        if (!(WindowSeconds >= 1) || WindowSeconds > 7 * 86400)
            return "drift.windowSeconds must be within 1 s and 7 days";
        if (Features.Count > MaxFeatures)
            return $"drift has at most {MaxFeatures} features";
        foreach (var f in Features)
        {
            if (string.IsNullOrWhiteSpace(f.Name) || f.Name.Length > 128)
                return "drift feature names are 1-128 characters";
            if (DriftSource.Parse(f.Source) is null)
                return $"drift feature {f.Name}: source '{f.Source}' is not input:N, output:N or confidence";
            if (f.Edges.Length is < 2 or > MaxEdges || f.Edges.Any(e => !double.IsFinite(e)) || f.Edges.Zip(f.Edges.Skip(1)).Any(p => !(p.Second > p.First)))
                return $"drift feature {f.Name}: 2-{MaxEdges} finite, strictly increasing bin edges";
        }
        return Features.GroupBy(f => f.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } dup ? $"drift feature {dup.Key} appears twice" : null;
    }
}

/// <summary>One sketched feature: its name (as in the model card), its source, the baseline's bin edges.</summary>
public sealed record DriftFeature(string Name, string Source, double[] Edges);

/// <summary>
/// Where a sketched value comes from: <c>input:N</c>, element N of the model's input as the device fed it
/// (for the demo, its N-th vibration feature), <c>output:N</c>, the probability of class N, or <c>confidence</c>,
/// the top class's probability.
/// </summary>
public readonly record struct DriftSource(int? InputIndex, int? OutputIndex = null)
{
    public bool Confidence => InputIndex is null && OutputIndex is null;

    public static DriftSource? Parse(string? source) =>
        source == "confidence" ? new DriftSource(null)
        : Index(source, "input:") is { } i ? new DriftSource(i)
        : Index(source, "output:") is { } o ? new DriftSource(null, o)
        : null;

    private static int? Index(string? source, string prefix) =>
        source is not null && source.StartsWith(prefix, StringComparison.Ordinal)
            && int.TryParse(source.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < 1 << 20 ? i : null;
}
