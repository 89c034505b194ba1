using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Onnx.Proto;
using EdgeFleet.Shared.Demo;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Tests;

public class DemoModelTests
{
    private static readonly Lazy<DemoModelTrainer.Result> Trained = new(() => DemoModelTrainer.Train(seed: 7, perClass: 200, epochs: 20));

    [Fact]
    public void Same_seed_gives_the_same_model_bytes()
    {
        var again = DemoModelTrainer.Train(seed: 7, perClass: 200, epochs: 20);
        Assert.Equal(Trained.Value.OnnxBytes, again.OnnxBytes);
        Assert.NotEqual(Trained.Value.OnnxBytes, DemoModelTrainer.Train(seed: 8, perClass: 200, epochs: 20).OnnxBytes);
    }

    [Fact]
    public void The_model_learns_the_simulated_conditions()
    {
        Assert.True(Trained.Value.TrainAccuracy > 0.95, $"train accuracy {Trained.Value.TrainAccuracy}");
        Assert.True(Trained.Value.HoldoutAccuracy > 0.95, $"hold-out accuracy {Trained.Value.HoldoutAccuracy}");
    }

    [Fact]
    public void The_written_file_is_standard_onnx_with_provenance()
    {
        var model = ModelProto.Parser.ParseFrom(Trained.Value.OnnxBytes);
        Assert.Equal(8, model.IrVersion);
        Assert.Equal(17, model.OpsetImport.Single().Version);
        Assert.Equal(["Sub", "Div", "Gemm", "Relu", "Gemm", "Softmax"], model.Graph.Node.Select(n => n.OpType));
        var meta = model.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("normal,imbalance,bearing-wear", meta["edgefleet.labels"]);
        Assert.Equal(Trained.Value.TrainingDataSha256, meta["edgefleet.training_data_sha256"]);
    }

    [Fact]
    public void Onnx_runtime_computes_what_the_trainer_learned()
    {
        using var session = new InferenceSession(Trained.Value.OnnxBytes);
        Assert.Equal([-1, 8], session.InputMetadata["features"].Dimensions);
        var data = DemoDataset.Generate(perClass: 100, seed: 1234);
        var input = data.Features.SelectMany(f => f).ToArray();
        using var value = OrtValue.CreateTensorValueFromMemory(input, [data.Count, VibrationFeatures.Count]);
        using var outputs = session.Run(new RunOptions(), ["features"], [value], ["probabilities"]);
        var p = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var correct = 0;
        for (var i = 0; i < data.Count; i++)
        {
            var row = p.AsSpan(i * 3, 3);
            Assert.Equal(1.0, row[0] + row[1] + row[2], 4);
            correct += row.IndexOf(MaxOf(row)) == data.Labels[i] ? 1 : 0;
        }
        Assert.True(correct >= 0.95 * data.Count, $"{correct}/{data.Count} correct in ONNX Runtime");
    }

    [Fact]
    public void Baselines_cover_every_input_feature_the_confidence_and_each_class_probability()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-baseline-").FullName;
        try
        {
            var model = Path.Combine(dir, "m.onnx");
            File.WriteAllBytes(model, Trained.Value.OnnxBytes);
            var data = DemoDataset.Generate(perClass: 40, seed: 99);
            for (var i = 0; i < data.Count; i++)
                EdgeFleet.ModelTools.Quantization.Npy.Write(Path.Combine(dir, $"{i:D4}.npy"), data.Features[i], 1, VibrationFeatures.Count);
            var baselines = EdgeFleet.ModelTools.Drift.BaselineBuilder.Build(model, dir, bins: 4);
            Assert.Equal([.. VibrationFeatures.Names, "confidence", "p_normal", "p_imbalance", "p_bearing-wear"], baselines.Select(b => b.Name));
            Assert.Equal(["output:0", "output:1", "output:2"], baselines.TakeLast(3).Select(b => b.Source));
            Assert.All(baselines, b => Assert.Equal(data.Count, b.Counts.Sum()));
            // A third of the inputs are each class: its probability's upper quantile bin holds them.
            var normal = baselines.Single(b => b.Name == "p_normal");
            Assert.True(normal.Edges[^1] > 0.9 && normal.Edges[0] < 0.1, string.Join(", ", normal.Edges));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Baselines_of_an_image_model_are_its_channels_mean_and_deviation_and_its_class_probabilities()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-baseline-img-").FullName;
        try
        {
            var random = new Random(5);
            for (var i = 0; i < 12; i++)
                EdgeFleet.ModelTools.Quantization.Npy.Write(Path.Combine(dir, $"{i:D4}.npy"), EdgeFleet.ModelTools.Samples.TextImages.ClassifierInput(random, out _), 1, 3, 48, 192);
            var baselines = EdgeFleet.ModelTools.Drift.BaselineBuilder.Build(TestModels.Classifier, dir, bins: 4);
            Assert.Equal(["channel_mean:0", "channel_mean:1", "channel_mean:2", "channel_std:0", "channel_std:1", "channel_std:2", "confidence", "output:0", "output:1"],
                baselines.Select(b => b.Name));
            Assert.All(baselines, b => Assert.Equal(12, b.Counts.Sum()));
            Assert.All(baselines.Where(b => b.Source.StartsWith("channel_std", StringComparison.Ordinal)), b => Assert.True(b.Edges[0] >= 0));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static float MaxOf(Span<float> row) => Math.Max(row[0], Math.Max(row[1], row[2]));
}
