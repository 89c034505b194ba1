using System.Globalization;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.Shared.Stats;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.ModelTools.Drift;

/// <summary>One feature's baseline: name, where devices read it, bin edges and the sample's counts in them.</summary>
public sealed record Baseline(string Name, string Source, double[] Edges, long[] Counts);

/// <summary>
/// Feature baselines for drift from a directory of representative inputs (the training data, or what the field
/// should look like), from running the model on each input. A feature-vector input (<c>[batch, K]</c>, K ≤ 256)
/// gives one baseline per element (named by the model's <c>edgefleet.features</c> metadata when it has one per
/// element, else <c>input:N</c>); an image or tensor input (<c>[batch, channels, …]</c>) gives per channel the mean
/// and standard deviation of its values (<c>channel_mean:C</c>, <c>channel_std:C</c>). A classifier's output
/// (<c>[batch, K]</c>) adds the top class's confidence and one baseline per class probability (<c>p_LABEL</c>,
/// source <c>output:N</c>; labels from the model's <c>edgefleet.labels</c> metadata, else <c>output:N</c>). Values
/// are computed by <see cref="DriftSource.ValueOf"/>, as devices compute them. Bin edges are the sample's quantiles,
/// so each bin holds about the same share of the baseline; devices sketch on these edges.
/// </summary>
public static class BaselineBuilder
{
    public const int MaxFeatures = 256;

    public static List<Baseline> Build(string modelPath, string dataDirectory, int bins, int maxSamples = int.MaxValue)
    {
        if (bins is < 2 or > 1024)
            throw new SampleDataException("--bins must be within 2..1024");
        using var session = new InferenceSession(modelPath);
        if (session.InputMetadata.Count != 1 || session.InputMetadata.Single().Value.ElementDataType != TensorElementType.Float)
            throw new SampleDataException("baselines are built for models with one float input (a feature vector, an image or a tensor)");
        var samples = SampleSet.Open(dataDirectory, session.InputMetadata);
        var meta = session.ModelMetadata.CustomMetadataMap;
        List<(string Name, string Source)>? features = null;
        List<double>[] values = [];
        for (var i = 0; i < Math.Min(samples.Count, maxSamples); i++)
        {
            var tensor = samples.Read(i).Single();
            var data = (float[])tensor.Data;
            using var input = tensor.ToOrtValue();
            using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [input], [session.OutputNames[0]]);
            var outputShape = outputs[0].GetTensorTypeAndShape().Shape;
            var scores = outputShape.Length == 2 && outputs[0].GetTensorTypeAndShape().ElementDataType == TensorElementType.Float
                ? outputs[0].GetTensorDataAsSpan<float>()[..(int)outputShape[1]].ToArray()
                : [];
            if (features is null)
            {
                features = Features(tensor.Shape, data.Length, scores.Length, meta);
                values = [.. features.Select(_ => new List<double>())];
            }
            for (var f = 0; f < features.Count; f++)
            {
                var value = DriftSource.Parse(features[f].Source)!.Value.ValueOf(data, tensor.Shape, scores);
                if (!double.IsFinite(value))
                    throw new SampleDataException($"{samples.Entries[i]}: no {features[f].Source} in an input of shape [{string.Join(", ", tensor.Shape)}] (the first sample set the features)");
                values[f].Add(value);
            }
        }
        if (features is null)
            throw new SampleDataException($"{dataDirectory} holds no samples");
        return [.. features.Select((f, j) => Of(f.Name, f.Source, values[j], bins))];
    }

    /// <summary>What a sample of this shape is sketched by: its elements, or its channels' statistics; and the classifier's scores.</summary>
    private static List<(string Name, string Source)> Features(long[] shape, int length, int classes, IReadOnlyDictionary<string, string> meta)
    {
        static string N(long i) => i.ToString(CultureInfo.InvariantCulture);
        var features = new List<(string, string)>();
        if (shape.Length >= 3)
        {
            if (shape[1] * 2 > MaxFeatures)
                throw new SampleDataException($"the input has {shape[1]} channels; baselines take at most {MaxFeatures / 2}");
            for (var c = 0; c < shape[1]; c++)
                features.Add(($"channel_mean:{N(c)}", $"channel_mean:{N(c)}"));
            for (var c = 0; c < shape[1]; c++)
                features.Add(($"channel_std:{N(c)}", $"channel_std:{N(c)}"));
        }
        else
        {
            if (length > MaxFeatures)
                throw new SampleDataException($"the input has {length} values per sample; baselines are for feature vectors of at most {MaxFeatures}");
            var names = meta.TryGetValue("edgefleet.features", out var text) && text.Split(',') is { } split && split.Length == length
                ? split.Select(n => n.Trim()).ToArray()
                : [.. Enumerable.Range(0, length).Select(j => "input:" + N(j))];
            features.AddRange(names.Select((n, j) => (n, "input:" + N(j))));
        }
        if (classes is > 0 and <= MaxFeatures)
        {
            features.Add(("confidence", "confidence"));
            var labels = meta.TryGetValue("edgefleet.labels", out var labelText) && labelText.Split(',') is { } l && l.Length == classes
                ? l.Select(x => "p_" + x.Trim()).ToArray()
                : [.. Enumerable.Range(0, classes).Select(c => "output:" + N(c))];
            features.AddRange(labels.Select((name, c) => (name, "output:" + N(c))));
        }
        return features;
    }

    /// <summary>
    /// Bin edges for <paramref name="values"/> and their counts on them. A value that holds at least one bin's share
    /// of the sample (a point mass: zeros of a ReLU, a sensor's stuck reading, a constant feature) gets a bin of its
    /// own, <c>[v, v⁺)</c> with v⁺ the next double, so a change in its share shows; an outermost point mass also
    /// gets an empty bin beyond it, so values that leave it for outside the range are not folded into it. The other
    /// values get quantile edges with the remaining bins, so each holds about the same share. The last edge lies
    /// just above the largest value, so the sample itself is all in range.
    /// </summary>
    public static Baseline Of(string name, string source, IReadOnlyList<double> values, int bins)
    {
        var sorted = values.Where(double.IsFinite).Order().ToArray();
        if (sorted.Length == 0)
            throw new SampleDataException($"feature {name}: no finite values");
        var masses = new List<double>();
        for (int i = 0, j; i < sorted.Length; i = j)
        {
            for (j = i; j < sorted.Length && sorted[j] == sorted[i]; j++)
            {
            }
            if ((j - i) * (long)bins >= sorted.Length)
                masses.Add(sorted[i]);
        }
        var rest = sorted.Where(v => masses.BinarySearch(v) < 0).ToArray();
        var edges = new SortedSet<double>();
        foreach (var v in masses)
        {
            edges.Add(v);
            edges.Add(Math.BitIncrement(v));
        }
        var restBins = Math.Max(1, bins - masses.Count);
        for (var b = 0; b <= restBins && rest.Length > 0; b++)
        {
            var q = b == restBins ? Math.BitIncrement(rest[^1]) : rest[(int)Math.Round((double)b / restBins * (rest.Length - 1))];
            // A quantile edge between a mass and its v⁺ cannot happen (no double lies there); one on a mass is that mass's edge.
            edges.Add(q);
        }
        if (masses.Count > 0 && masses[0] == sorted[0])
            edges.Add(sorted[0] - Margin(sorted[0]));
        if (masses.Count > 0 && masses[^1] == sorted[^1])
            edges.Add(Math.BitIncrement(sorted[^1]) + Margin(sorted[^1]));
        if (edges.Count > DriftSpec.MaxEdges)
            throw new SampleDataException($"feature {name}: {edges.Count - 1} bins with its point masses; at most {DriftSpec.MaxEdges - 1} (use fewer --bins)");
        var sketch = new FeatureSketch([.. edges]);
        foreach (var v in sorted)
            sketch.Add(v);
        return new Baseline(name, source, [.. edges], [.. sketch.Counts]);
    }

    private static double Margin(double v) => Math.Max(Math.Abs(v) * 1e-3, 1e-6);
}
