namespace EdgeFleet.Shared.Stats;

/// <summary>
/// A compact, mergeable summary of one feature (an input feature, a class probability, the top-class
/// confidence) over a window: a fixed-bin histogram on the baseline's bin edges plus count, mean, variance,
/// minimum and maximum. Bin i holds values in [edges[i], edges[i+1]); values below the first edge count in
/// the first bin and values at or above the last edge in the last one (and also in <see cref="Below"/> /
/// <see cref="Above"/>), so the bins always line up with the baseline's. NaN and infinities are counted in
/// <see cref="Invalid"/> and nowhere else.
/// </summary>
/// <remarks>
/// Merging adds the counts exactly, in any order; mean and variance combine by Chan's formula, equal in any
/// order up to floating-point rounding.
/// </remarks>
public sealed class FeatureSketch
{
    private readonly double[] _edges;
    private readonly long[] _counts;

    public FeatureSketch(IReadOnlyList<double> edges)
    {
        if (edges.Count < 2)
            throw new ArgumentException("a sketch needs at least two bin edges (one bin)", nameof(edges));
        for (var i = 1; i < edges.Count; i++)
        {
            if (!(edges[i] > edges[i - 1]) || !double.IsFinite(edges[i]) || !double.IsFinite(edges[i - 1]))
                throw new ArgumentException($"bin edges must be finite and strictly increasing (edge {i}: {edges[i]} after {edges[i - 1]})", nameof(edges));
        }
        _edges = [.. edges];
        _counts = new long[edges.Count - 1];
        Min = double.PositiveInfinity;
        Max = double.NegativeInfinity;
    }

    public IReadOnlyList<double> Edges => _edges;

    public IReadOnlyList<long> Counts => _counts;

    public long Count { get; private set; }

    public double Mean { get; private set; }

    /// <summary>Sum of squared deviations from the mean (Welford's M2).</summary>
    public double SumSquares { get; private set; }

    /// <summary>Population variance; 0 for fewer than two values.</summary>
    public double Variance => Count < 2 ? 0 : SumSquares / Count;

    public double Min { get; private set; }

    public double Max { get; private set; }

    public long Below { get; private set; }

    public long Above { get; private set; }

    public long Invalid { get; private set; }

    public void Add(double value)
    {
        if (!double.IsFinite(value))
        {
            Invalid++;
            return;
        }
        _counts[BinOf(value)]++;
        if (value < _edges[0])
            Below++;
        else if (value >= _edges[^1])
            Above++;
        Count++;
        var delta = value - Mean;
        Mean += delta / Count;
        SumSquares += delta * (value - Mean);
        Min = Math.Min(Min, value);
        Max = Math.Max(Max, value);
    }

    private int BinOf(double value)
    {
        // The first edge above the value, minus one; clamped into the outer bins.
        var index = Array.BinarySearch(_edges, value);
        var bin = index >= 0 ? index : ~index - 1;
        return Math.Clamp(bin, 0, _counts.Length - 1);
    }

    /// <summary>Adds <paramref name="other"/>'s values (same edges only).</summary>
    public void Merge(FeatureSketch other)
    {
        if (!_edges.AsSpan().SequenceEqual(other._edges))
            throw new ArgumentException("sketches merge only on the same bin edges", nameof(other));
        for (var i = 0; i < _counts.Length; i++)
            _counts[i] += other._counts[i];
        Below += other.Below;
        Above += other.Above;
        Invalid += other.Invalid;
        if (other.Count == 0)
            return;
        var total = Count + other.Count;
        var delta = other.Mean - Mean;
        SumSquares += other.SumSquares + (delta * delta * Count * other.Count / total);
        Mean += delta * other.Count / total;
        Count = total;
        Min = Math.Min(Min, other.Min);
        Max = Math.Max(Max, other.Max);
    }

    /// <summary>The wire form (without the edges: the drift spec and the model card have them).</summary>
    public Wire.SketchData ToData(string name) => new()
    {
        Name = name,
        Counts = [.. _counts],
        Count = Count,
        Mean = Mean,
        SumSquares = SumSquares,
        Min = Count == 0 ? null : Min,
        Max = Count == 0 ? null : Max,
        Below = Below,
        Above = Above,
        Invalid = Invalid,
    };

    /// <summary>Rebuilds a sketch from its wire form on <paramref name="edges"/>; null with the reason when they do not fit.</summary>
    public static FeatureSketch? FromData(Wire.SketchData data, IReadOnlyList<double> edges, out string? problem)
    {
        var sketch = new FeatureSketch(edges);
        if (data.Counts.Length != sketch._counts.Length || data.Counts.Sum() != data.Count)
        {
            problem = $"feature {data.Name}: {data.Counts.Length} bins, the baseline has {sketch._counts.Length}";
            return null;
        }
        data.Counts.CopyTo(sketch._counts, 0);
        sketch.Count = data.Count;
        sketch.Mean = data.Mean;
        sketch.SumSquares = data.SumSquares;
        sketch.Min = data.Min ?? double.PositiveInfinity;
        sketch.Max = data.Max ?? double.NegativeInfinity;
        sketch.Below = data.Below;
        sketch.Above = data.Above;
        sketch.Invalid = data.Invalid;
        problem = null;
        return sketch;
    }
}
