using System.Globalization;
using System.Security.Cryptography;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.Shared.Demo;

namespace EdgeFleet.ModelTools.Demo;

/// <summary>
/// Trains the demo classifier (standardise → 16 ReLU units → 3-way softmax) on synthetic sensor data
/// with plain mini-batch SGD in double precision, and writes it as ONNX. Deterministic: every random
/// choice comes from the seed, so the same seed gives the same model bytes.
/// </summary>
public static class DemoModelTrainer
{
    public const string ModelName = "vibration-classifier";
    public const string InputName = "features";
    public const string OutputName = "probabilities";
    private const int Hidden = 16;

    public sealed record Result(byte[] OnnxBytes, double TrainAccuracy, double HoldoutAccuracy, string TrainingDataSha256);

    /// <param name="extra">
    /// Labelled examples to learn besides the synthetic data (retraining: hard examples that feedback labelled), each
    /// taken <paramref name="extraWeight"/> times.
    /// </param>
    public static Result Train(int seed = 42, int perClass = 600, int epochs = 40, IReadOnlyList<(float[] Features, int Label)>? extra = null, int extraWeight = 1)
    {
        var train = DemoDataset.Generate(perClass, seed);
        if (extra is { Count: > 0 })
        {
            var repeated = extra.SelectMany(e => Enumerable.Repeat(e, Math.Max(1, extraWeight))).ToList();
            train = train.With([.. repeated.Select(e => e.Features)], [.. repeated.Select(e => e.Label)]);
        }
        var holdout = DemoDataset.Generate(Math.Max(perClass / 4, 50), seed + 1);
        const int inputs = VibrationFeatures.Count;
        const int classes = 3;

        var (mean, std) = Standardisation(train);
        var x = train.Features.Select(f => Standardise(f, mean, std)).ToArray();

        var random = new Random(seed);
        var w1 = Init(random, Hidden, inputs);
        var b1 = new double[Hidden];
        var w2 = Init(random, classes, Hidden);
        var b2 = new double[classes];

        var order = Enumerable.Range(0, train.Count).ToArray();
        const int batch = 32;
        for (var epoch = 0; epoch < epochs; epoch++)
        {
            var rate = 0.1 / (1 + (0.05 * epoch));
            random.Shuffle(order);
            for (var start = 0; start < order.Length; start += batch)
            {
                var end = Math.Min(start + batch, order.Length);
                var gw1 = new double[Hidden, inputs];
                var gb1 = new double[Hidden];
                var gw2 = new double[classes, Hidden];
                var gb2 = new double[classes];
                for (var n = start; n < end; n++)
                {
                    var i = order[n];
                    var (h, p) = Forward(x[i], w1, b1, w2, b2);
                    // Softmax + cross-entropy gradient: p - onehot.
                    var dz2 = (double[])p.Clone();
                    dz2[train.Labels[i]] -= 1;
                    var dh = new double[Hidden];
                    for (var c = 0; c < classes; c++)
                    {
                        gb2[c] += dz2[c];
                        for (var j = 0; j < Hidden; j++)
                        {
                            gw2[c, j] += dz2[c] * h[j];
                            dh[j] += dz2[c] * w2[c, j];
                        }
                    }
                    for (var j = 0; j < Hidden; j++)
                    {
                        if (h[j] <= 0)
                            continue;
                        gb1[j] += dh[j];
                        for (var k = 0; k < inputs; k++)
                            gw1[j, k] += dh[j] * x[i][k];
                    }
                }
                var scale = rate / (end - start);
                Step(w1, gw1, scale);
                Step(w2, gw2, scale);
                for (var j = 0; j < Hidden; j++)
                    b1[j] -= scale * gb1[j];
                for (var c = 0; c < classes; c++)
                    b2[c] -= scale * gb2[c];
            }
        }

        double Accuracy(DemoDataset data) =>
            data.Features.Select((f, i) => ArgMax(Forward(Standardise(f, mean, std), w1, b1, w2, b2).P) == data.Labels[i] ? 1.0 : 0.0).Average();

        var dataHash = HashFeatures(train);
        var bytes = new OnnxModelBuilder("vibration_mlp")
            .Doc("EdgeFleet demo: classifies a vibration window's features as normal, imbalance or bearing wear.")
            .Input(InputName, null, inputs)
            .Output(OutputName, null, classes)
            .Initializer("feature_mean", ToFloat(mean), inputs)
            .Initializer("feature_std", ToFloat(std), inputs)
            .Initializer("w1", Flatten(w1), Hidden, inputs)
            .Initializer("b1", ToFloat(b1), Hidden)
            .Initializer("w2", Flatten(w2), classes, Hidden)
            .Initializer("b2", ToFloat(b2), classes)
            .Node("Sub", [InputName, "feature_mean"], ["centred"])
            .Node("Div", ["centred", "feature_std"], ["standardised"])
            .Node("Gemm", ["standardised", "w1", "b1"], ["hidden_pre"], OnnxModelBuilder.IntAttribute("transB", 1))
            .Node("Relu", ["hidden_pre"], ["hidden"])
            .Node("Gemm", ["hidden", "w2", "b2"], ["logits"], OnnxModelBuilder.IntAttribute("transB", 1))
            .Node("Softmax", ["logits"], [OutputName], OnnxModelBuilder.IntAttribute("axis", -1))
            .Metadata("edgefleet.model", ModelName)
            .Metadata("edgefleet.labels", string.Join(',', MachineConditions.Labels))
            .Metadata("edgefleet.features", string.Join(',', VibrationFeatures.Names))
            .Metadata("edgefleet.training_seed", seed.ToString(CultureInfo.InvariantCulture))
            .Metadata("edgefleet.training_data_sha256", dataHash)
            .ToBytes();
        return new Result(bytes, Accuracy(train), Accuracy(holdout), dataHash);
    }

    private static (double[] H, double[] P) Forward(double[] x, double[,] w1, double[] b1, double[,] w2, double[] b2)
    {
        var h = new double[b1.Length];
        for (var j = 0; j < h.Length; j++)
        {
            var s = b1[j];
            for (var k = 0; k < x.Length; k++)
                s += w1[j, k] * x[k];
            h[j] = Math.Max(0, s);
        }
        var z = new double[b2.Length];
        for (var c = 0; c < z.Length; c++)
        {
            var s = b2[c];
            for (var j = 0; j < h.Length; j++)
                s += w2[c, j] * h[j];
            z[c] = s;
        }
        var max = z.Max();
        var e = z.Select(v => Math.Exp(v - max)).ToArray();
        var sum = e.Sum();
        return (h, e.Select(v => v / sum).ToArray());
    }

    private static (double[] Mean, double[] Std) Standardisation(DemoDataset data)
    {
        var n = VibrationFeatures.Count;
        var mean = new double[n];
        var std = new double[n];
        foreach (var f in data.Features)
            for (var k = 0; k < n; k++)
                mean[k] += f[k] / (double)data.Count;
        foreach (var f in data.Features)
            for (var k = 0; k < n; k++)
                std[k] += (f[k] - mean[k]) * (f[k] - mean[k]) / data.Count;
        for (var k = 0; k < n; k++)
            std[k] = Math.Max(Math.Sqrt(std[k]), 1e-6);
        return (mean, std);
    }

    private static double[] Standardise(float[] f, double[] mean, double[] std)
    {
        // Rounded through float exactly as the ONNX graph will compute it.
        var x = new double[f.Length];
        for (var k = 0; k < f.Length; k++)
            x[k] = (f[k] - (float)mean[k]) / (float)std[k];
        return x;
    }

    private static double[,] Init(Random random, int rows, int cols)
    {
        var w = new double[rows, cols];
        var bound = Math.Sqrt(6.0 / (rows + cols));
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++)
                w[r, c] = ((random.NextDouble() * 2) - 1) * bound;
        return w;
    }

    private static void Step(double[,] w, double[,] g, double scale)
    {
        for (var r = 0; r < w.GetLength(0); r++)
            for (var c = 0; c < w.GetLength(1); c++)
                w[r, c] -= scale * g[r, c];
    }

    private static int ArgMax(double[] v) => Array.IndexOf(v, v.Max());

    private static float[] ToFloat(double[] v) => v.Select(d => (float)d).ToArray();

    private static float[] Flatten(double[,] w) => w.Cast<double>().Select(d => (float)d).ToArray();

    private static string HashFeatures(DemoDataset data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (var i = 0; i < data.Count; i++)
        {
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.Features[i].AsSpan()));
            sha.AppendData(BitConverter.GetBytes(data.Labels[i]));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
