using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Inputs;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.Shared.Demo;

namespace EdgeFleet.Agent.Tests;

public sealed class DemoModelFixture : IDisposable
{
    private readonly TempDir _dir = new();

    public DemoModelFixture()
    {
        Path = _dir.File("vibration.onnx");
        File.WriteAllBytes(Path, DemoModelTrainer.Train(seed: 42, perClass: 200, epochs: 20).OnnxBytes);
    }

    public string Path { get; }

    public void Dispose() => _dir.Dispose();
}

public class InferenceTests(DemoModelFixture model) : IClassFixture<DemoModelFixture>
{
    [Fact]
    public void Reads_inputs_outputs_and_labels_from_the_model()
    {
        using var session = ModelSession.Load(model.Path);
        Assert.Equal("features", session.Inputs[0].Name);
        Assert.Equal("float32[batch, 8]", session.Inputs[0].TypeName + session.Inputs[0].ShapeText);
        Assert.Equal(MachineConditions.Labels, InferenceService.LabelsOf(session));
    }

    [Fact]
    public void Classifier_recognises_each_simulated_condition()
    {
        using var session = ModelSession.Load(model.Path);
        using var classifier = new Classifier(session, InferenceService.LabelsOf(session));
        var window = new float[256];
        var features = new float[8];
        foreach (var condition in Enum.GetValues<MachineCondition>())
        {
            var signal = new VibrationSignal(condition, seed: 99);
            var correct = 0;
            for (var i = 0; i < 50; i++)
            {
                signal.NextWindow(window);
                VibrationFeatures.Compute(window, features);
                var (index, confidence) = classifier.Classify(features);
                Assert.InRange(confidence, 0f, 1f);
                correct += index == (int)condition ? 1 : 0;
            }
            Assert.True(correct >= 45, $"{condition}: {correct}/50 correct");
        }
    }

    [Fact]
    public void Json_inference_matches_the_classifier()
    {
        using var session = ModelSession.Load(model.Path);
        double[] input = [0.1, 0.3, 3, 3, 0.01, 0.001, 0.001, 0.05];
        var response = session.Run(new Dictionary<string, JsonTensor> { ["features"] = new() { Shape = [1, 8], Data = input } });
        var probabilities = response.Outputs["probabilities"];
        Assert.Equal([1L, 3L], probabilities.Shape);
        Assert.Equal(1.0, probabilities.Data.Sum(), 4);
        using var classifier = new Classifier(session, InferenceService.LabelsOf(session));
        var (index, confidence) = classifier.Classify(input.Select(d => (float)d).ToArray());
        Assert.Equal(probabilities.Data.Max(), confidence, 5);
        Assert.Equal(Array.IndexOf(probabilities.Data, probabilities.Data.Max()), index);
    }

    [Theory]
    [InlineData("features", new long[] { 1, 7 }, 7, null, "expects [batch, 8]")]
    [InlineData("features", new long[] { 8 }, 8, null, "rank 1")]
    [InlineData("features", new long[] { 1, 8 }, 5, null, "has 5 values")]
    [InlineData("features", new long[] { 1, 8 }, 8, "int64", "expects float32")]
    [InlineData("pixels", new long[] { 1, 8 }, 8, null, "no input 'pixels'")]
    [InlineData("features", new long[] { 0, 8 }, 0, null, "at least 1")]
    public void Rejects_mismatched_inputs_with_a_clear_reason(string name, long[] shape, int values, string? type, string reason)
    {
        using var session = ModelSession.Load(model.Path);
        var e = Assert.Throws<InferenceException>(() => session.Run(new Dictionary<string, JsonTensor>
        {
            [name] = new() { Shape = shape, Type = type, Data = new double[values] },
        }));
        Assert.Equal(InferenceError.InputMismatch, e.Code);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Corrupt_and_missing_model_files_are_clear_errors()
    {
        using var dir = new TempDir();
        var corrupt = dir.File("corrupt.onnx");
        File.WriteAllBytes(corrupt, File.ReadAllBytes(model.Path).AsSpan(0, 300).ToArray());
        Assert.Equal(InferenceError.ModelLoadFailed, Assert.Throws<InferenceException>(() => ModelSession.Load(corrupt)).Code);
        Assert.Equal(InferenceError.ModelMissing, Assert.Throws<InferenceException>(() => ModelSession.Load(dir.File("absent.onnx"))).Code);
    }

    [Fact]
    public void Classifier_refuses_a_model_whose_outputs_do_not_match_the_labels()
    {
        using var session = ModelSession.Load(model.Path);
        var e = Assert.Throws<InferenceException>(() => new Classifier(session, ["a", "b"]));
        Assert.Contains("expected float32[batch, 2]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_lines_source_skips_bad_lines_with_reasons()
    {
        using var dir = new TempDir();
        var path = dir.File("windows.jsonl");
        var good = "[" + string.Join(',', Enumerable.Range(0, 32).Select(i => i * 0.01)) + "]";
        File.WriteAllLines(path, [good, "not json", "[1,2]", "{\"a\":1}", "[1, \"x\"]", "", good]);
        var reasons = new List<string>();
        using var source = new JsonLinesSource(path, reasons.Add);
        Assert.Equal(32, (await source.NextWindowAsync(CancellationToken.None))!.Value.Length);
        Assert.Equal(32, (await source.NextWindowAsync(CancellationToken.None))!.Value.Length);
        Assert.Null(await source.NextWindowAsync(CancellationToken.None));
        Assert.Equal(4, reasons.Count);
        Assert.Contains(reasons, r => r.Contains(":3: a window needs at least 16 samples", StringComparison.Ordinal));
    }
}
