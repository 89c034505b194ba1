using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.ModelTools.Samples;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Tests;

public sealed class OnnxModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-onnx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static float[] Run(string pathOrNull, byte[]? bytes, float[] input, long[] shape)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = bytes is null ? new InferenceSession(pathOrNull!, options) : new InferenceSession(bytes, options);
        return Run(session, input, shape);
    }

    internal static float[] Run(InferenceSession session, float[] input, long[] shape)
    {
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var result = session.Run(new RunOptions(), [session.InputMetadata.Keys.First()], [value], [session.OutputMetadata.Keys.First()]);
        return result[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Theory]
    [InlineData("cls")]
    [InlineData("det")]
    public void A_real_model_round_trips_byte_for_byte_and_computes_the_same(string which)
    {
        var path = which == "cls" ? TestModels.Classifier : TestModels.Detector;
        var model = OnnxModel.Load(path);
        var written = Path.Combine(_dir, "copy.onnx");
        model.Save(written);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(written));

        var (input, shape) = which == "cls"
            ? (TextImages.ClassifierInput(new Random(3), out _), new long[] { 1, 3, 48, 192 })
            : (TextImages.DetectorInput(new Random(3), 96), new long[] { 1, 3, 96, 96 });
        Assert.Equal(Run(path, null, input, shape), Run(written, null, input, shape));
    }

    [Fact]
    public void Large_tensors_go_to_external_data_and_come_back()
    {
        var model = OnnxModel.Load(TestModels.Classifier);
        var prepared = ModelPreprocessor.Prepare(model);
        var path = Path.Combine(_dir, "external.onnx");
        prepared.Save(path, externalDataThreshold: 1024);
        Assert.True(new FileInfo(path + ".data").Length > 400_000);
        Assert.True(new FileInfo(path).Length < 200_000);

        var input = TextImages.ClassifierInput(new Random(4), out _);
        long[] shape = [1, 3, 48, 192];
        // ONNX Runtime reads our external data itself, and our reader brings it back in memory.
        Assert.Equal(Run(null!, prepared.ToBytes(), input, shape), Run(path, null, input, shape));
        Assert.Equal(Run(null!, prepared.ToBytes(), input, shape), Run(null!, OnnxModel.Load(path).ToBytes(), input, shape));
    }

    [Fact]
    public void External_data_outside_the_model_directory_is_refused()
    {
        var prepared = ModelPreprocessor.Prepare(OnnxModel.Load(TestModels.Classifier));
        var tensor = prepared.Graph.Initializer.First(t => t.RawData.Length > 1000);
        tensor.ExternalData.Add(new Onnx.Proto.StringStringEntryProto { Key = "location", Value = "../../etc/passwd" });
        tensor.DataLocation = Onnx.Proto.TensorProto.Types.DataLocation.External;
        tensor.ClearRawData();
        var path = Path.Combine(_dir, "evil.onnx");
        File.WriteAllBytes(path, prepared.ToBytes());
        Assert.Contains("outside the model's directory", Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(path)).Message);
    }

    [Fact]
    public void Malformed_and_truncated_files_get_a_clear_error()
    {
        var garbage = Path.Combine(_dir, "garbage.onnx");
        File.WriteAllBytes(garbage, [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 37 % 251))]);
        Assert.Contains("not an ONNX model", Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(garbage)).Message);

        var truncated = Path.Combine(_dir, "truncated.onnx");
        var bytes = File.ReadAllBytes(TestModels.Classifier);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        Assert.Contains("not an ONNX model", Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(truncated)).Message);

        File.WriteAllBytes(garbage, []);
        Assert.Contains("empty", Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(garbage)).Message);
        Assert.Contains("cannot read", Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(Path.Combine(_dir, "missing.onnx"))).Message);
    }

    [Fact]
    public void Preparing_an_opset_9_model_for_quantization_keeps_its_outputs()
    {
        var model = OnnxModel.Load(TestModels.Classifier);
        Assert.Equal(9, model.Opset);
        var prepared = ModelPreprocessor.Prepare(model);
        Assert.Equal(ModelPreprocessor.MinimumOpset, prepared.Opset);
        Assert.DoesNotContain(prepared.Graph.Node, n => n.OpType is "BatchNormalization" or "Constant" or "Div");
        // The squeeze-and-excitation gates' HardSigmoid folds into the convolution before it, leaving Clip(0, 1).
        Assert.DoesNotContain(prepared.Graph.Node, n => n.OpType == "HardSigmoid");
        Assert.Contains(prepared.Graph.Node, n => n.OpType == "Clip");
        var random = new Random(5);
        for (var i = 0; i < 5; i++)
        {
            var input = TextImages.ClassifierInput(random, out _);
            var expected = Run(TestModels.Classifier, null, input, [1, 3, 48, 192]);
            var actual = Run(null!, prepared.ToBytes(), input, [1, 3, 48, 192]);
            for (var k = 0; k < expected.Length; k++)
                Assert.Equal(expected[k], actual[k], 4);
        }
    }

    [Fact]
    public void Preparing_the_detector_folds_its_affine_blocks_into_the_next_convolutions_and_keeps_its_outputs()
    {
        var prepared = ModelPreprocessor.Prepare(OnnxModel.Load(TestModels.Detector));
        // PP-LCNetV3's learnable affine blocks (HardSwish → Mul(a) → Add(b) → depthwise Conv): the Mul moves into
        // the convolution's weights, the Add stays as Add(b / a). Of the 14 such Muls one is left: its block feeds a
        // squeeze-and-excitation gate, not convolutions only.
        Assert.Single(prepared.Graph.Node, n => n.OpType == "Mul" && n.Input.Any(i => prepared.Initializer(i) is { } t && Tensors.ElementCount(t) == 1));
        var random = new Random(6);
        for (var i = 0; i < 2; i++)
        {
            var input = TextImages.DetectorInput(random, 128);
            var expected = Run(TestModels.Detector, null, input, [1, 3, 128, 128]);
            var actual = Run(null!, prepared.ToBytes(), input, [1, 3, 128, 128]);
            for (var k = 0; k < expected.Length; k++)
                Assert.Equal(expected[k], actual[k], 3);
        }
    }

    [Fact]
    public void Npy_files_round_trip_and_bad_ones_say_why()
    {
        var path = Path.Combine(_dir, "x.npy");
        Npy.Write(path, [1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        var tensor = Npy.Read(path, "x");
        Assert.Equal([2L, 3L], tensor.Shape);
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], (float[])tensor.Data);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^8]);
        Assert.Contains("truncated", Assert.Throws<SampleDataException>(() => Npy.Read(path, "x")).Message);
        File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        Assert.Contains("not a .npy file", Assert.Throws<SampleDataException>(() => Npy.Read(path, "x")).Message);
    }
}
