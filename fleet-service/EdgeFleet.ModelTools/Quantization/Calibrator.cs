using System.Numerics.Tensors;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Observes the ranges of chosen float tensors over a set of sample inputs, by running the model in ONNX
/// Runtime with those tensors added as graph outputs. Min/max keeps the extremes; percentile keeps the central
/// share of values (a second pass fills a 2,048-bin histogram over the min/max range) so that rare outliers do
/// not stretch the scale.
/// </summary>
public static class Calibrator
{
    private const int Bins = 2048;

    public static Dictionary<string, TensorRange> Collect(OnnxModel model, IReadOnlyCollection<string> tensors, SampleSet samples, QuantizationOptions options)
    {
        var ranges = new Dictionary<string, TensorRange>();
        void MinMax(string name, OrtValue value)
        {
            var values = value.GetTensorDataAsSpan<float>();
            var range = new TensorRange(TensorPrimitives.Min(values), TensorPrimitives.Max(values));
            ranges[name] = ranges.TryGetValue(name, out var r) ? r.Union(range) : range;
        }
        if (options.Method == CalibrationMethod.MinMax)
        {
            TensorObserver.Run(model, tensors, samples, options, MinMax);
            return ranges;
        }
        var histograms = tensors.ToDictionary(n => n, _ => new long[Bins]);
        void Bin(string name, OrtValue value)
        {
            var (min, max) = ranges[name];
            var width = (max - min) / Bins;
            var histogram = histograms[name];
            foreach (var v in value.GetTensorDataAsSpan<float>())
                histogram[width > 0 ? Math.Clamp((int)((v - min) / width), 0, Bins - 1) : 0]++;
        }
        TensorObserver.Run(model, tensors, samples, options, MinMax, Bin);
        return tensors.ToDictionary(n => n, n => options.Method == CalibrationMethod.Percentile
            ? Trim(ranges[n], histograms[n], options.Percentile)
            : LeastSquaredError(ranges[n], histograms[n], options.Activations));
    }

    /// <summary>
    /// Shrinks the range towards zero in 1% steps and keeps the one with the least expected squared error:
    /// values inside cost scale²/12 (rounding), values outside their distance to the edge squared (clipping).
    /// </summary>
    internal static TensorRange LeastSquaredError(TensorRange full, long[] histogram, ActivationType type)
    {
        if (full.Max <= full.Min)
            return full;
        var width = (full.Max - full.Min) / histogram.Length;
        var best = full;
        var bestError = double.MaxValue;
        for (var step = 100; step >= 20; step--)
        {
            var candidate = new TensorRange(Math.Min(0, full.Min) * step / 100f, Math.Max(0, full.Max) * step / 100f);
            var scale = QuantMath.Activation(candidate, type).Scale;
            var rounding = (double)scale * scale / 12;
            double error = 0;
            for (var b = 0; b < histogram.Length; b++)
            {
                if (histogram[b] == 0)
                    continue;
                var v = full.Min + (b + 0.5) * width;
                var outside = v < candidate.Min ? candidate.Min - v : v > candidate.Max ? v - candidate.Max : 0;
                error += histogram[b] * (outside > 0 ? outside * outside : rounding);
            }
            if (error < bestError)
                (best, bestError) = (candidate, error);
        }
        return best;
    }

    /// <summary>The range between the (100 − p)th and the p-th percentile of the histogram.</summary>
    internal static TensorRange Trim(TensorRange full, long[] histogram, double percentile)
    {
        var total = histogram.Sum();
        if (total == 0 || full.Max <= full.Min)
            return full;
        var tail = total * (100 - percentile) / 100;
        var width = (full.Max - full.Min) / histogram.Length;
        int low = 0, high = histogram.Length - 1;
        for (double seen = 0; low < histogram.Length - 1 && seen + histogram[low] <= tail; low++)
            seen += histogram[low];
        for (double seen = 0; high > 0 && seen + histogram[high] <= tail; high--)
            seen += histogram[high];
        return new TensorRange(full.Min + low * width, full.Min + (high + 1) * width);
    }
}
