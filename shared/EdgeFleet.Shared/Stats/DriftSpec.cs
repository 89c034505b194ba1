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
                return $"drift feature {f.Name}: source '{f.Source}' is not input:N, output:N, confidence, channel_mean:C or channel_std:C";
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
/// (for the demo, its N-th vibration feature), <c>output:N</c>, the probability of class N, <c>confidence</c>,
/// the top class's probability; for image and tensor inputs (<c>[batch, channels, …]</c>) <c>channel_mean:C</c>
/// and <c>channel_std:C</c>, the mean and standard deviation of channel C over the request's values.
/// </summary>
public readonly record struct DriftSource(int? InputIndex, int? OutputIndex = null, int? ChannelMean = null, int? ChannelStd = null)
{
    public bool Confidence => InputIndex is null && OutputIndex is null && ChannelMean is null && ChannelStd is null;

    public static DriftSource? Parse(string? source) =>
        source == "confidence" ? new DriftSource(null)
        : Index(source, "input:") is { } i ? new DriftSource(i)
        : Index(source, "output:") is { } o ? new DriftSource(null, o)
        : Index(source, "channel_mean:") is { } m ? new DriftSource(null, ChannelMean: m)
        : Index(source, "channel_std:") is { } s ? new DriftSource(null, ChannelStd: s)
        : null;

    /// <summary>
    /// This source's value for one answer: <paramref name="input"/> is the model's (first) input with its
    /// <paramref name="shape"/>, <paramref name="scores"/> the first row of its output (class probabilities), empty
    /// when it has none. NaN when the source does not apply (the fleet counts it as invalid).
    /// </summary>
    public double ValueOf(ReadOnlySpan<float> input, ReadOnlySpan<long> shape, ReadOnlySpan<float> scores)
    {
        if (InputIndex is { } n)
            return n < input.Length ? input[n] : double.NaN;
        if (OutputIndex is { } k)
            return k < scores.Length ? scores[k] : double.NaN;
        if ((ChannelMean ?? ChannelStd) is { } c)
            return ChannelStatistic(input, shape, c, ChannelStd is not null);
        if (scores.Length == 0)
            return double.NaN;
        var max = scores[0];
        foreach (var s in scores)
            max = Math.Max(max, s);
        return max;
    }

    private static double ChannelStatistic(ReadOnlySpan<float> input, ReadOnlySpan<long> shape, int channel, bool std)
    {
        if (shape.Length < 3 || channel >= shape[1] || shape[1] < 1)
            return double.NaN;
        long inner = 1;
        foreach (var d in shape[2..])
            inner *= d;
        var channels = shape[1];
        if (shape[0] * channels * inner != input.Length || inner == 0)
            return double.NaN;
        double sum = 0, squares = 0;
        long count = 0;
        for (long b = 0; b < shape[0]; b++)
        {
            foreach (var v in input.Slice((int)(((b * channels) + channel) * inner), (int)inner))
            {
                sum += v;
                squares += (double)v * v;
                count++;
            }
        }
        var mean = sum / count;
        return std ? Math.Sqrt(Math.Max(0, (squares / count) - (mean * mean))) : mean;
    }

    private static int? Index(string? source, string prefix) =>
        source is not null && source.StartsWith(prefix, StringComparison.Ordinal)
            && int.TryParse(source.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < 1 << 20 ? i : null;
}
