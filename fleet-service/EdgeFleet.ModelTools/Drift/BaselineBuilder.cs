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
/// should look like): one per element of the model's feature-vector input (named by the model's
/// <c>edgefleet.features</c> metadata when it has one per element, else <c>input:N</c>), and one for the top
/// class's confidence and one per class's probability (<c>p_LABEL</c>, source <c>output:N</c>; labels from the
/// model's <c>edgefleet.labels</c> metadata, else <c>output:N</c>), from running the model on each input. Bin edges are the sample's quantiles, so each bin
/// holds about the same share of the baseline; devices sketch on these edges.
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
            throw new SampleDataException("baselines are built for models with one float input (a feature vector)");
        var samples = SampleSet.Open(dataDirectory, session.InputMetadata);
        List<double>[] values = [];
        var confidence = new List<double>();
        var probabilities = new List<List<double>>();
        for (var i = 0; i < Math.Min(samples.Count, maxSamples); i++)
        {
            var tensor = samples.Read(i).Single();
            var data = (float[])tensor.Data;
            if (values.Length == 0)
            {
                if (data.Length > MaxFeatures)
                    throw new SampleDataException($"the input has {data.Length} values per sample; baselines are for feature vectors of at most {MaxFeatures}");
                values = [.. Enumerable.Range(0, data.Length).Select(_ => new List<double>())];
            }
            if (data.Length != values.Length)
                throw new SampleDataException($"{samples.Entries[i]}: {data.Length} values, the first sample had {values.Length}");
            for (var j = 0; j < data.Length; j++)
                values[j].Add(data[j]);
            using var input = tensor.ToOrtValue();
            using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [input], [session.OutputNames[0]]);
            var scores = outputs[0].GetTensorDataAsSpan<float>();
            var width = (int)outputs[0].GetTensorTypeAndShape().Shape[^1];
            var max = float.NegativeInfinity;
            var row = scores[..Math.Min(width, scores.Length)];
            while (probabilities.Count < row.Length && row.Length <= MaxFeatures)
                probabilities.Add([]);
            for (var c = 0; c < row.Length && c < probabilities.Count; c++)
            {
                max = Math.Max(max, row[c]);
                probabilities[c].Add(row[c]);
            }
            confidence.Add(max);
        }
        var names = session.ModelMetadata.CustomMetadataMap.TryGetValue("edgefleet.features", out var text) && text.Split(',') is { } split && split.Length == values.Length
            ? split.Select(n => n.Trim()).ToArray()
            : [.. Enumerable.Range(0, values.Length).Select(j => "input:" + j.ToString(CultureInfo.InvariantCulture))];
        var baselines = values.Select((v, j) => Of(names[j], "input:" + j.ToString(CultureInfo.InvariantCulture), v, bins)).ToList();
        baselines.Add(Of("confidence", "confidence", confidence, bins));
        var labels = session.ModelMetadata.CustomMetadataMap.TryGetValue("edgefleet.labels", out var labelText) && labelText.Split(',') is { } l && l.Length == probabilities.Count
            ? l.Select(x => "p_" + x.Trim()).ToArray()
            : [.. Enumerable.Range(0, probabilities.Count).Select(c => "output:" + c.ToString(CultureInfo.InvariantCulture))];
        baselines.AddRange(probabilities.Select((p, c) => Of(labels[c], "output:" + c.ToString(CultureInfo.InvariantCulture), p, bins)));
        return baselines;
    }

    /// <summary>Quantile edges (duplicates dropped) and the values' counts on them.</summary>
    public static Baseline Of(string name, string source, IReadOnlyList<double> values, int bins)
    {
        var sorted = values.Where(double.IsFinite).Order().ToArray();
        if (sorted.Length == 0)
            throw new SampleDataException($"feature {name}: no finite values");
        var edges = new List<double>();
        for (var b = 0; b <= bins; b++)
        {
            var q = sorted[(int)Math.Round((double)b / bins * (sorted.Length - 1))];
            if (edges.Count == 0 || q > edges[^1])
                edges.Add(q);
        }
        if (edges.Count < 2)
            edges.Add(edges[0] + Math.Max(Math.Abs(edges[0]) * 1e-6, 1e-9)); // one value throughout: one bin
        var sketch = new FeatureSketch(edges);
        foreach (var v in sorted)
            sketch.Add(v);
        return new Baseline(name, source, [.. edges], [.. sketch.Counts]);
    }
}
