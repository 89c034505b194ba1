namespace EdgeFleet.ModelTools.Quantization;

/// <summary>An observed value range of a tensor.</summary>
public readonly record struct TensorRange(float Min, float Max)
{
    public TensorRange Union(TensorRange other) => new(Math.Min(Min, other.Min), Math.Max(Max, other.Max));
}

/// <summary>Affine quantization parameters: real = (q - ZeroPoint) * Scale.</summary>
public readonly record struct QuantParams(float Scale, int ZeroPoint);

/// <summary>The arithmetic of INT8 quantization, in one place.</summary>
public static class QuantMath
{
    /// <summary>
    /// Asymmetric parameters for an activation range. The range is widened to include 0 so that zero (padding,
    /// ReLU) is exact, as ONNX Runtime's fused kernels and its ReLU/Clip removal expect.
    /// </summary>
    public static QuantParams Activation(TensorRange range, ActivationType type)
    {
        var (qmin, qmax) = type == ActivationType.UInt8 ? (0, 255) : (-128, 127);
        var rmin = Math.Min(0f, range.Min);
        var rmax = Math.Max(0f, range.Max);
        if (!float.IsFinite(rmin) || !float.IsFinite(rmax))
            throw new InvalidOperationException($"calibration saw a non-finite value ({range.Min}, {range.Max})");
        if (rmax - rmin < 1e-12f)
            return new QuantParams(1f, type == ActivationType.UInt8 ? 0 : 0);
        var scale = (rmax - rmin) / (qmax - qmin);
        var zero = (int)Math.Round(qmin - rmin / scale, MidpointRounding.ToEven);
        return new QuantParams(scale, Math.Clamp(zero, qmin, qmax));
    }

    /// <summary>Symmetric INT8 (−127..127, zero point 0) scale for weights whose largest magnitude is <paramref name="maxAbs"/>.</summary>
    public static float SymmetricScale(float maxAbs) => maxAbs > 0 ? maxAbs / 127f : 1f;

    public static sbyte QuantizeSymmetric(float value, float scale) =>
        (sbyte)Math.Clamp(Math.Round(value / scale, MidpointRounding.ToEven), -127, 127);

    /// <summary>
    /// Symmetric int8 weights with one scale per slice along <paramref name="axis"/> (one for the whole tensor
    /// when null): the quantized values and the scales.
    /// </summary>
    public static (sbyte[] Quantized, float[] Scales) SymmetricWeights(float[] values, long[] dims, int? axis)
    {
        var channels = axis is { } a ? (int)dims[a] : 1;
        var inner = axis is { } b ? dims.Skip(b + 1).Aggregate(1L, (x, y) => x * y) : values.Length;
        var maxAbs = new float[channels];
        for (long i = 0; i < values.Length; i++)
        {
            var c = (int)(i / inner % channels);
            maxAbs[c] = Math.Max(maxAbs[c], Math.Abs(values[i]));
        }
        var scales = Array.ConvertAll(maxAbs, SymmetricScale);
        var q = new sbyte[values.Length];
        for (long i = 0; i < values.Length; i++)
            q[i] = QuantizeSymmetric(values[i], scales[(int)(i / inner % channels)]);
        return (q, scales);
    }

    public static int Quantize(float value, QuantParams p, ActivationType type)
    {
        var (qmin, qmax) = type == ActivationType.UInt8 ? (0, 255) : (-128, 127);
        return (int)Math.Clamp(Math.Round(value / p.Scale, MidpointRounding.ToEven) + p.ZeroPoint, qmin, qmax);
    }
}
