namespace EdgeFleet.ModelTools.Validation;

/// <summary>
/// Accumulates the comparison of two models' outputs sample by sample. Outputs of rank 2 ([rows, classes]) count
/// as classification: top-1 agreement and, with labels, accuracy per row. Every output contributes absolute
/// error, also relative to the spread (standard deviation) of the reference's values over all samples, and,
/// where each sample's output has at least <see cref="MinCosineValues"/> values, the cosine similarity of each
/// sample's output vectors (the cosine of one value is 1 whatever the value, so a short output has none).
/// </summary>
internal sealed class OutputComparison(IReadOnlyList<int>? labels)
{
    public const int MinCosineValues = 8;

    private long _referenceCount;
    private double _referenceMean;
    private double _referenceM2;
    private bool _shortOutput;

    private int _agreeing;
    private int _referenceCorrect;
    private int _candidateCorrect;
    private double _absSum;
    private long _values;
    private double _cosineSum;
    private int _samples;

    public int Rows { get; private set; }

    public bool Classification { get; private set; } = true;

    public double MaxAbsError { get; private set; }

    public double MeanAbsError => _values == 0 ? 0 : _absSum / _values;

    public double? Cosine => _shortOutput ? null : _samples == 0 ? 0 : _cosineSum / _samples;

    /// <summary>The standard deviation of the reference's output values over every sample.</summary>
    public double ReferenceSpread => _referenceCount == 0 ? 0 : Math.Sqrt(_referenceM2 / _referenceCount);

    /// <summary>
    /// Mean absolute error over the reference's spread: 0 for a copy, about 1.1 for an unrelated output of the same spread.
    /// </summary>
    public double RelativeMeanAbsError =>
        ReferenceSpread > 0 ? MeanAbsError / ReferenceSpread : MeanAbsError == 0 ? 0 : double.PositiveInfinity;

    public double? Top1Agreement => Classification && Rows > 0 ? (double)_agreeing / Rows : null;

    public double? ReferenceAccuracy => Classification && labels is not null && Rows > 0 ? (double)_referenceCorrect / Rows : null;

    public double? CandidateAccuracy => Classification && labels is not null && Rows > 0 ? (double)_candidateCorrect / Rows : null;

    public void Add(float[] reference, float[] candidate, long[] shape)
    {
        if (reference.Length != candidate.Length)
            throw new ValidationException($"the outputs differ in size ({reference.Length} vs {candidate.Length} values)");
        double dot = 0, nr = 0, nc = 0;
        _shortOutput |= reference.Length < MinCosineValues;
        for (var i = 0; i < reference.Length; i++)
        {
            // Welford's running variance of the reference's values.
            _referenceCount++;
            var delta = reference[i] - _referenceMean;
            _referenceMean += delta / _referenceCount;
            _referenceM2 += delta * (reference[i] - _referenceMean);
            var e = Math.Abs((double)reference[i] - candidate[i]);
            _absSum += e;
            MaxAbsError = Math.Max(MaxAbsError, e);
            dot += (double)reference[i] * candidate[i];
            nr += (double)reference[i] * reference[i];
            nc += (double)candidate[i] * candidate[i];
        }
        _values += reference.Length;
        _cosineSum += nr == 0 && nc == 0 ? 1 : nr == 0 || nc == 0 ? 0 : dot / Math.Sqrt(nr * nc);
        _samples++;

        Classification &= shape.Length == 2 && shape[1] > 1;
        if (!Classification)
            return;
        var classes = (int)shape[1];
        for (var row = 0; row < shape[0]; row++)
        {
            var r = ArgMax(reference.AsSpan(row * classes, classes));
            var c = ArgMax(candidate.AsSpan(row * classes, classes));
            _agreeing += r == c ? 1 : 0;
            if (labels is not null && Rows < labels.Count)
            {
                _referenceCorrect += r == labels[Rows] ? 1 : 0;
                _candidateCorrect += c == labels[Rows] ? 1 : 0;
            }
            Rows++;
        }
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        var best = 0;
        for (var i = 1; i < row.Length; i++)
            if (row[i] > row[best])
                best = i;
        return best;
    }
}
