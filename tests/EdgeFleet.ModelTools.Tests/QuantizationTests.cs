using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.ModelTools.Samples;
using EdgeFleet.ModelTools.Validation;
using EdgeFleet.Shared.Demo;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Tests;

public sealed class QuantizationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-quant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Samples(string name, int count, Func<Random, float[]> make, long[] shape, int seed)
    {
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        var random = new Random(seed);
        for (var i = 0; i < count; i++)
            Npy.Write(Path.Combine(dir, $"{i:D4}.npy"), make(random), shape);
        return dir;
    }

    private static SampleSet Open(string model, string dir)
    {
        using var session = new InferenceSession(model);
        return SampleSet.Open(dir, session.InputMetadata);
    }

    /// <summary>The graph ONNX Runtime actually runs, as it optimised it.</summary>
    private OnnxModel Optimized(string model)
    {
        var optimized = Path.Combine(_dir, Path.GetFileNameWithoutExtension(model) + ".opt.onnx");
        using (var options = new SessionOptions { OptimizedModelFilePath = optimized, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR })
        using (new InferenceSession(model, options))
        {
        }
        return OnnxModel.Load(optimized);
    }

    /// <summary>The op types ONNX Runtime actually runs.</summary>
    private string[] OptimizedOps(string model) => [.. Optimized(model).Graph.Node.Select(n => n.OpType)];

    /// <summary>
    /// Whether every node of <paramref name="opType"/> in the optimised graph reads a DequantizeLinear's output
    /// (past layout Transposes), that is, runs in float; an int8 one reads an int8 op's output directly.
    /// </summary>
    private bool RunsFloat(string model, string opType)
    {
        var graph = Optimized(model).Graph;
        var producers = graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n);
        var nodes = graph.Node.Where(n => n.OpType == opType).ToList();
        Assert.NotEmpty(nodes);
        return nodes.All(n =>
        {
            var producer = producers.GetValueOrDefault(n.Input[0]);
            while (producer is { OpType: "Transpose" })
                producer = producers.GetValueOrDefault(producer.Input[0]);
            return producer?.OpType == "DequantizeLinear";
        });
    }

    private string Quantize(string fp32, string calibration, string name, QuantizationOptions? options = null)
    {
        var (model, report) = QdqQuantizer.Quantize(OnnxModel.Load(fp32), Open(fp32, calibration), options ?? new QuantizationOptions());
        Assert.True(report.QuantizedNodes > 0);
        var path = Path.Combine(_dir, name);
        model.Save(path);
        return path;
    }

    [Fact]
    public void The_classifier_quantizes_to_fused_int8_kernels_and_the_gate_reports_what_it_measured()
    {
        var shape = new long[] { 1, 3, 48, 192 };
        var calibration = Samples("cls-cal", 24, r => TextImages.ClassifierInput(r, out _), shape, seed: 1);
        var validation = Samples("cls-val", 40, r => TextImages.ClassifierInput(r, out _), shape, seed: 2);
        var int8 = Quantize(TestModels.Classifier, calibration, "cls-int8.onnx");

        var ops = OptimizedOps(int8);
        Assert.Contains("QLinearConv", ops);
        // One float convolution is left: the first, which reads the image's 3 channels (slower in int8).
        Assert.Single(ops, o => o == "Conv");
        // HardSwish runs as QLinearAdd and QLinearMul, and the squeeze-and-excitation gates (HardSigmoid,
        // folded into their convolutions) as QLinearConv: nothing between a DequantizeLinear and a
        // QuantizeLinear runs in float but the stem.
        Assert.DoesNotContain("HardSigmoid", ops);
        Assert.DoesNotContain("Mul", ops);
        Assert.Contains("QLinearMul", ops);
        // The Reshape before the graph output does not pull the Softmax into int8 (its probabilities stay float).
        Assert.DoesNotContain("QLinearSoftmax", ops);
        Assert.Contains("Softmax", ops);
        // MaxPool runs float (calibrated on its own; ONNX Runtime's uint8 MaxPool is the slower one).
        Assert.True(RunsFloat(int8, "MaxPool"));
        // Depthwise channels padded to 16 cost a little over 1 % of the FP32 size (see the padding test for 30 %).
        Assert.True(new FileInfo(int8).Length <= new FileInfo(TestModels.Classifier).Length * 0.32, $"{new FileInfo(int8).Length} bytes");

        var report = ValidationGate.Run(new ValidationGate.Request { Reference = TestModels.Classifier, Candidate = int8, DataDirectory = validation, LatencyRuns = 10 });
        // The gate's figures, recomputed here independently.
        int agree = 0, stableAgree = 0;
        var referenceValues = new List<double>();
        double absError = 0;
        var random = new Random(2);
        using var sessionOptions = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
        using var referenceSession = new InferenceSession(TestModels.Classifier, sessionOptions);
        using var candidateSession = new InferenceSession(int8, sessionOptions);
        for (var i = 0; i < 40; i++)
        {
            var x = TextImages.ClassifierInput(random, out _);
            var r = OnnxModelTests.Run(referenceSession, x, shape);
            var c = OnnxModelTests.Run(candidateSession, x, shape);
            agree += (r[0] >= r[1]) == (c[0] >= c[1]) ? 1 : 0; // a tie is class 0, as the gate takes the first maximum
            referenceValues.AddRange([r[0], r[1]]);
            absError += Math.Abs(r[0] - c[0]) + Math.Abs(r[1] - c[1]);
            // The reference against itself, its input moved by up to half an 8-bit step of the input's range.
            var noise = new Random(i);
            var half = (x.Max() - x.Min()) / 255f / 2;
            var n = OnnxModelTests.Run(referenceSession, Array.ConvertAll(x, v => v + half * (float)(noise.NextDouble() * 2 - 1)), shape);
            stableAgree += (r[0] >= r[1]) == (n[0] >= n[1]) ? 1 : 0;
        }
        Assert.Equal(stableAgree / 40.0, report.ReferenceStability!.Top1Agreement!.Value, 6);
        Assert.Equal(agree / 40.0, report.Top1Agreement!.Value, 6);
        // Two values per sample: no cosine (it says nothing at that length); the error relative to the outputs' spread instead.
        Assert.Null(report.Cosine);
        Assert.Null(report.ReferenceStability.Cosine);
        Assert.DoesNotContain(report.Checks, c => c.Name == "cosine");
        var mean = referenceValues.Average();
        var spread = Math.Sqrt(referenceValues.Sum(v => (v - mean) * (v - mean)) / referenceValues.Count);
        Assert.Equal(spread, report.ReferenceSpread!.Value, 4);
        Assert.Equal(absError / referenceValues.Count / spread, report.RelativeMeanAbsError!.Value, 4);
        Assert.Contains(report.Checks, c => c.Name == "relativeMeanError");
        Assert.Equal(40, report.Samples);
        Assert.Equal((double)new FileInfo(int8).Length / new FileInfo(TestModels.Classifier).Length, report.SizeRatio, 6);
        Assert.Equal(report.Checks.All(c => c.Passed) ? "accepted" : "rejected", report.Verdict);
    }

    [Fact]
    public void HardSwish_runs_on_int8_and_stays_within_a_quantization_step()
    {
        // x → HardSwish → 1×1 convolution with weight 1 (quantized exactly), over x from −8 to 8.
        const int n = 161;
        var model = new OnnxModelBuilder("hardswish", opset: 14)
            .Input("x", 1, 1, 1, n)
            .Output("y", 1, 1, 1, n)
            .Initializer("w", [1f], 1, 1, 1, 1)
            .Node("HardSwish", ["x"], ["h"])
            .Node("Conv", ["h", "w"], ["y"]);
        var fp32 = Path.Combine(_dir, "hswish.onnx");
        File.WriteAllBytes(fp32, model.ToBytes());
        var x = Enumerable.Range(0, n).Select(i => -8f + 16f * i / (n - 1)).ToArray();
        var dir = Path.Combine(_dir, "hswish-cal");
        Directory.CreateDirectory(dir);
        Npy.Write(Path.Combine(dir, "0.npy"), x, 1, 1, 1, n);
        var int8 = Quantize(fp32, dir, "hswish-int8.onnx");

        var ops = OptimizedOps(int8);
        Assert.Contains("QLinearAdd", ops);
        Assert.Contains("QLinearMul", ops);
        Assert.DoesNotContain("HardSigmoid", ops);
        Assert.DoesNotContain("HardSwish", ops);

        var y = OnnxModelTests.Run(int8, null, x, [1, 1, 1, n]);
        var inputStep = 16f / 255;
        var outputStep = (8f + 0.375f) / 255;
        for (var i = 0; i < n; i++)
        {
            var expected = x[i] * Math.Clamp(x[i] + 3, 0, 6) / 6;
            // The input's rounding moves HardSwish by at most its slope (≤ 1.5) times half a step; the gate's and
            // the output's roundings add a step each.
            Assert.True(Math.Abs(y[i] - expected) <= 1.5f * inputStep / 2 + 2 * outputStep, $"HardSwish({x[i]}) = {expected}, int8 gives {y[i]}");
            if (x[i] <= -3 - inputStep)
                Assert.Equal(0f, y[i], 6);
        }
    }

    [Fact]
    public void Depthwise_channels_are_padded_to_sixteen_without_changing_what_the_model_computes()
    {
        var shape = new long[] { 1, 3, 48, 192 };
        var calibration = Samples("pad-cal", 8, r => TextImages.ClassifierInput(r, out _), shape, seed: 1);
        var padded = Quantize(TestModels.Classifier, calibration, "padded.onnx");
        var plain = Quantize(TestModels.Classifier, calibration, "plain.onnx", new QuantizationOptions { DepthwiseChannelMultiple = 1 });

        static long[] Groups(string path) => [.. OnnxModel.Load(path).Graph.Node.Where(n => n.OpType == "Conv")
            .Select(n => n.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1).Where(g => g > 1)];
        // The classifier's depthwise convolutions have 8, 24, 32, 40, 48, 88, 104 and 200 channels.
        Assert.Contains(Groups(plain), g => g % 16 != 0);
        Assert.All(Groups(padded), g => Assert.Equal(0, g % 16));
        Assert.Equal(Groups(plain).Length, Groups(padded).Length);
        // Unpadded (as for arm64, whose kernels take these channel counts): int8 weights, shared constants and a
        // compact graph make the file 30 % of the FP32 one or less.
        Assert.True(new FileInfo(plain).Length <= new FileInfo(TestModels.Classifier).Length * 0.3, $"{new FileInfo(plain).Length} bytes");
        Assert.True(new FileInfo(padded).Length > new FileInfo(plain).Length);

        // The new channels are zero and read with zero weights: the int8 models agree (the padded one runs other kernels).
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var a = new InferenceSession(padded, options);
        using var b = new InferenceSession(plain, options);
        var random = new Random(4);
        for (var i = 0; i < 10; i++)
        {
            var x = TextImages.ClassifierInput(random, out _);
            var pa = OnnxModelTests.Run(a, x, shape);
            var pb = OnnxModelTests.Run(b, x, shape);
            for (var k = 0; k < pa.Length; k++)
                Assert.Equal(pb[k], pa[k], 3);
        }
    }

    [Fact]
    public void A_depthwise_convolution_whose_channels_reach_a_graph_output_is_not_padded()
    {
        var model = new OnnxModelBuilder("dw", opset: 14)
            .Input("x", 1, 10, 8, 8)
            .Output("y", 1, 10, 8, 8)
            .Initializer("w", Enumerable.Range(0, 90).Select(i => (i % 7 - 3) / 3f).ToArray(), 10, 1, 3, 3)
            .Node("Conv", ["x", "w"], ["y"], OnnxModelBuilder.IntAttribute("group", 10), new AttributeProto { Name = "pads", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 1, 1, 1, 1 } });
        var fp32 = Path.Combine(_dir, "dw.onnx");
        File.WriteAllBytes(fp32, model.ToBytes());
        var dir = Path.Combine(_dir, "dw-cal");
        Directory.CreateDirectory(dir);
        var random = new Random(3);
        Npy.Write(Path.Combine(dir, "0.npy"), Enumerable.Range(0, 640).Select(_ => (float)random.NextDouble()).ToArray(), 1, 10, 8, 8);
        var int8 = OnnxModel.Load(Quantize(fp32, dir, "dw-int8.onnx"));
        Assert.Equal(10, int8.Graph.Node.Single(n => n.OpType == "Conv").Attribute.Single(a => a.Name == "group").I);
    }

    [Fact]
    public void A_constant_that_is_also_a_graph_input_is_never_merged_with_an_identical_one()
    {
        // Two convolution → Clip blocks; the first Clip's lower bound can be overridden at run time (it is a graph
        // input with a default), the second's is a plain constant of the same value.
        var model = new OnnxModelBuilder("clips", opset: 14)
            .Input("x", 1, 4, 4, 4)
            .Input("low")
            .Output("y", 1, 4, 4, 4)
            .Initializer("low", [0f])
            .Initializer("low2", [0f])
            .Initializer("high", [6f])
            .Initializer("w1", Enumerable.Range(0, 16).Select(i => (i % 5 - 2) / 2f).ToArray(), 4, 4, 1, 1)
            .Initializer("w2", Enumerable.Range(0, 16).Select(i => (i % 3 - 1) / 2f).ToArray(), 4, 4, 1, 1)
            .Initializer("w3", Enumerable.Range(0, 16).Select(i => (i % 7 - 3) / 3f).ToArray(), 4, 4, 1, 1)
            .Node("Conv", ["x", "w1"], ["a"])
            .Node("Clip", ["a", "low", "high"], ["b"])
            .Node("Conv", ["b", "w2"], ["c"])
            .Node("Clip", ["c", "low2", "high"], ["d"])
            .Node("Conv", ["d", "w3"], ["y"]);
        var fp32 = Path.Combine(_dir, "clips.onnx");
        File.WriteAllBytes(fp32, model.ToBytes());
        var dir = Path.Combine(_dir, "clips-cal");
        Directory.CreateDirectory(dir);
        var random = new Random(8);
        Npy.Write(Path.Combine(dir, "0.npy"), Enumerable.Range(0, 64).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray(), 1, 4, 4, 4);
        var int8 = OnnxModel.Load(Quantize(fp32, dir, "clips-int8.onnx"));

        Assert.Contains(int8.Graph.Input, i => i.Name == "low");
        var clips = int8.Graph.Node.Where(n => n.OpType == "Clip").ToList();
        Assert.Equal(2, clips.Count);
        Assert.Equal("low", clips[0].Input[1]);
        Assert.NotEqual("low", clips[1].Input[1]);
    }

    [Fact]
    public void A_broken_quantization_with_a_wrong_scale_is_rejected_by_the_gate()
    {
        var shape = new long[] { 1, 3, 48, 192 };
        var calibration = Samples("cal", 16, r => TextImages.ClassifierInput(r, out _), shape, seed: 1);
        var validation = Samples("val", 30, r => TextImages.ClassifierInput(r, out _), shape, seed: 3);
        var good = Quantize(TestModels.Classifier, calibration, "good.onnx");
        var model = OnnxModel.Load(good);
        // Scale every activation by 40 at the first quantized layer's input: the model still loads and runs.
        var q = model.Graph.Node.First(n => n.OpType == "QuantizeLinear");
        var scale = model.Initializer(q.Input[1])!;
        scale.RawData = Google.Protobuf.ByteString.CopyFrom(BitConverter.GetBytes(Tensors.Floats(scale)[0] * 40));
        var broken = Path.Combine(_dir, "broken.onnx");
        model.Save(broken);

        var thresholds = new ValidationThresholds { MaxLatencyRatio = null };
        var goodReport = ValidationGate.Run(new ValidationGate.Request { Reference = TestModels.Classifier, Candidate = good, DataDirectory = validation, LatencyRuns = 5, Thresholds = thresholds });
        var brokenReport = ValidationGate.Run(new ValidationGate.Request { Reference = TestModels.Classifier, Candidate = broken, DataDirectory = validation, LatencyRuns = 5, Thresholds = thresholds });
        Assert.Equal("rejected", brokenReport.Verdict);
        Assert.True(brokenReport.RelativeMeanAbsError > 3 * goodReport.RelativeMeanAbsError,
            $"relative error: broken {brokenReport.RelativeMeanAbsError} vs good {goodReport.RelativeMeanAbsError}");
        Assert.Contains(brokenReport.Checks, c => !c.Passed && c.Name is "relativeMeanError" or "top1Agreement");
        // Each check that measures the outputs rejects it on its own.
        Assert.Contains(brokenReport.Checks, c => !c.Passed && c.Name == "relativeMeanError");
        Assert.Equal("accepted", goodReport.Verdict);
    }

    [Fact]
    public void A_model_with_an_if_whose_branches_read_the_outer_graph_quantizes_into_a_model_that_runs()
    {
        // h = x·W1 at the top level; If(sum(h) > 0) then relu(h·W2) else -(h·W3): the branches read h, W2 and W3 from the
        // scope around them by name. Before, compaction renamed h at the top level only and the unused-initializer pass
        // dropped W2 and W3, so the written model could not load.
        var random = new Random(4);
        float[] Weights() => [.. Enumerable.Range(0, 16).Select(_ => (float)(random.NextDouble() * 2 - 1))];
        GraphProto Branch(string name, string op, string weight) => new OnnxModelBuilder(name, opset: 14)
            .Output(name + "_y", 1, 4)
            .Node("MatMul", ["h", weight], [name + "_m"])
            .Node(op, [name + "_m"], [name + "_y"])
            .Build().Graph;
        var proto = new OnnxModelBuilder("switch", opset: 14)
            .Input("x", 1, 4)
            .Output("y", 1, 4)
            .Initializer("W1", Weights(), 4, 4)
            .Initializer("W2", Weights(), 4, 4)
            .Initializer("W3", Weights(), 4, 4)
            .Initializer("zero", [0f])
            .Node("MatMul", ["x", "W1"], ["h"])
            .Node("ReduceSum", ["h"], ["s"], OnnxModelBuilder.IntAttribute("keepdims", 0))
            .Node("Greater", ["s", "zero"], ["cond"])
            .Build();
        proto.Graph.Node.Add(new NodeProto
        {
            OpType = "If",
            Name = "mode",
            Input = { "cond" },
            Output = { "y" },
            Attribute =
            {
                new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch("then", "Relu", "W2") },
                new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch("else", "Neg", "W3") },
            },
        });
        var path = Path.Combine(_dir, "switch.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        var data = Samples("switch-data", 40, r => [.. Enumerable.Range(0, 4).Select(_ => (float)(r.NextDouble() * 2 - 1))], [1, 4], seed: 6);

        var (int8, report) = QdqQuantizer.Quantize(OnnxModel.Load(path), Open(path, data), new QuantizationOptions { Threads = 1 });
        Assert.True(report.QuantizedByOpType.ContainsKey("MatMul"), string.Join(", ", report.QuantizedByOpType.Keys));
        Assert.Equal(["4 node(s) inside If 'mode' (MatMul 2, Neg 1, Relu 1): kept float, subgraphs are not quantized"], report.KeptFloat);
        var quantized = Path.Combine(_dir, "switch-int8.onnx");
        int8.Save(quantized);
        var (dynamic, dynamicReport) = DynamicQuantizer.Quantize(OnnxModel.Load(path), new QuantizationOptions());
        Assert.Single(dynamicReport.KeptFloat);
        var dynamicPath = Path.Combine(_dir, "switch-dynamic.onnx");
        dynamic.Save(dynamicPath);

        // Both run, on inputs that take either branch, and compute what the float model computes.
        foreach (var candidate in new[] { quantized, dynamicPath })
        {
            var gate = ValidationGate.Run(new() { Reference = path, Candidate = candidate, DataDirectory = data, LatencyRuns = 4,
                Thresholds = new ValidationThresholds { MaxLatencyRatio = null } });
            Assert.True(gate.RelativeMeanAbsError < 0.05, $"{candidate}: relative error {gate.RelativeMeanAbsError}");
        }
    }

    [Fact]
    public void A_score_output_of_one_value_is_judged_by_its_error_not_by_a_cosine_that_is_always_one()
    {
        string Scorer(string name, float[] weights)
        {
            var path = Path.Combine(_dir, name);
            File.WriteAllBytes(path, new OnnxModelBuilder("scorer", opset: 14)
                .Input("x", 1, 4)
                .Output("score", 1, 1)
                .Initializer("w", weights, 4, 1)
                .Node("MatMul", ["x", "w"], ["score"])
                .ToBytes());
            return path;
        }
        var reference = Scorer("score-a.onnx", [0.5f, -1, 2, 0.25f]);
        var close = Scorer("score-b.onnx", [0.502f, -1, 2, 0.25f]);
        var unrelated = Scorer("score-c.onnx", [-2, 0.3f, 0.1f, 1]);
        var data = Samples("score-data", 50, r => [.. Enumerable.Range(0, 4).Select(_ => (float)(r.NextDouble() * 2 - 1))], [1, 4], seed: 5);
        var thresholds = new ValidationThresholds { MaxLatencyRatio = null };
        ValidationReport Gate(string candidate) =>
            ValidationGate.Run(new() { Reference = reference, Candidate = candidate, DataDirectory = data, LatencyRuns = 4, Thresholds = thresholds });

        // Before, every sample's cosine was 1 and an entirely different model was accepted.
        var different = Gate(unrelated);
        Assert.Null(different.Cosine);
        Assert.Equal("rejected", different.Verdict);
        Assert.Contains(different.Checks, c => c.Name == "relativeMeanError" && !c.Passed && c.Value > 0.5);
        var near = Gate(close);
        Assert.Equal("accepted", near.Verdict);
        Assert.True(near.RelativeMeanAbsError < 0.01, $"relative error {near.RelativeMeanAbsError}");
    }

    [Fact]
    public void Latency_is_judged_on_the_interval_of_paired_runs_so_noise_alone_cannot_reject()
    {
        // The interval against an independent computation: t on the logarithms of the paired ratios.
        double[] logs = [0.1, -0.05, 0.2, 0.0, 0.15, 0.05, -0.1, 0.12, 0.08, 0.02, 0.3];
        var ratio = RatioInterval.Of(logs);
        var mean = logs.Average();
        var sd = Math.Sqrt(logs.Sum(l => (l - mean) * (l - mean)) / (logs.Length - 1));
        Assert.Equal(Math.Exp(mean), ratio.Estimate, 12);
        // Student's t for 10 degrees of freedom at 0.9995 is 4.587; the approximation is within 0.05 of it.
        Assert.InRange(Math.Log(ratio.High / ratio.Estimate) * Math.Sqrt(logs.Length) / sd, 4.587 - 0.05, 4.587 + 0.05);
        Assert.Equal(Math.Log(ratio.Estimate / ratio.Low), Math.Log(ratio.High / ratio.Estimate), 12);

        ValidationCheck Check(double p50Ratio, RatioInterval interval) => ValidationGate.Judge(new ValidationReport
        {
            Reference = "a", Candidate = "b", ReferenceSha256 = "", CandidateSha256 = "", Output = "y", Samples = 1, Threads = 1,
            MaxAbsError = 0, MeanAbsError = 0, ReferenceLatency = new(1, 1, 1), CandidateLatency = new(1, 1, 1),
            LatencyRatio = p50Ratio, LatencyRatioInterval = interval, ReferenceBytes = 1, CandidateBytes = 1, SizeRatio = 1, Checks = [],
            Verdict = "", At = DateTimeOffset.UnixEpoch,
        }, new ValidationThresholds { MaxLatencyRatio = 1.0, MinCosine = null, MaxRelativeMeanError = null }).Single();
        // A p50 ratio over the limit whose interval still holds it is noise: it passes, and says so.
        var noisy = Check(1.04, new RatioInterval(1.02, 0.97, 1.07, 120));
        Assert.True(noisy.Passed);
        Assert.Contains("within noise of the limit", noisy.Note);
        // Measurably slower fails; clearly faster passes without a note.
        Assert.False(Check(1.3, new RatioInterval(1.25, 1.1, 1.4, 30)).Passed);
        var faster = Check(0.6, new RatioInterval(0.6, 0.55, 0.66, 30));
        Assert.True(faster.Passed);
        Assert.Null(faster.Note);

        // A model against itself: p50 alone rejected it about half the time at a limit of 1.0.
        var model = Path.Combine(_dir, "same.onnx");
        File.WriteAllBytes(model, new OnnxModelBuilder("same", opset: 14).Input("x", 1, 4).Output("y", 1, 4).Node("Relu", ["x"], ["y"]).ToBytes());
        var data = Samples("same-data", 10, r => [.. Enumerable.Range(0, 4).Select(_ => (float)r.NextDouble())], [1, 4], seed: 2);
        for (var run = 0; run < 3; run++)
        {
            var report = ValidationGate.Run(new() { Reference = model, Candidate = model, DataDirectory = data, LatencyRuns = 30 });
            Assert.True(report.Accepted, string.Join("; ", report.Checks.Select(c => $"{c.Name} {c.Value} {c.Note}")));
        }
    }

    [Fact]
    public void The_detector_quantizes_and_runs_int8_convolutions()
    {
        var shape = new long[] { 1, 3, 128, 128 };
        var calibration = Samples("det-cal", 6, r => TextImages.DetectorInput(r, 128), shape, seed: 1);
        var int8 = Quantize(TestModels.Detector, calibration, "det-int8.onnx", new QuantizationOptions { Method = CalibrationMethod.Percentile, Percentile = 99.99 });
        Assert.Contains("QLinearConv", OptimizedOps(int8));
        // ConvTranspose keeps float weights: ONNX Runtime has no int8 fusion for it on the CPU.
        var graph = OnnxModel.Load(int8);
        var transposed = graph.Graph.Node.Where(n => n.OpType == "ConvTranspose").ToList();
        Assert.NotEmpty(transposed);
        Assert.All(transposed, t => Assert.Equal((int)TensorProto.Types.DataType.Float, graph.Initializer(t.Input[1])!.DataType));
        var report = ValidationGate.Run(new ValidationGate.Request { Reference = TestModels.Detector, Candidate = int8, DataDirectory = Samples("det-val", 4, r => TextImages.DetectorInput(r, 128), shape, seed: 9), LatencyRuns = 4 });
        Assert.Null(report.Top1Agreement);
        Assert.InRange(report.Cosine!.Value, 0.5, 1.0);
        Assert.True(report.SizeRatio < 0.35, $"size ratio {report.SizeRatio}");
    }

    [Fact]
    public void The_demo_model_quantizes_statically_and_dynamically_and_keeps_its_accuracy()
    {
        var trained = DemoModelTrainer.Train(seed: 7, perClass: 200, epochs: 20);
        var fp32 = Path.Combine(_dir, "demo.onnx");
        File.WriteAllBytes(fp32, trained.OnnxBytes);
        var data = DemoDataset.Generate(perClass: 60, seed: 99);
        var dir = Path.Combine(_dir, "demo-samples");
        Directory.CreateDirectory(dir);
        for (var i = 0; i < data.Count; i++)
            Npy.Write(Path.Combine(dir, $"{i:D4}.npy"), data.Features[i], 1, VibrationFeatures.Count);
        var labels = data.Labels.ToList();

        var stat = Quantize(fp32, dir, "demo-static.onnx");
        var (dynamicModel, dynamicReport) = DynamicQuantizer.Quantize(OnnxModel.Load(fp32), new QuantizationOptions { Mode = QuantizationMode.Dynamic });
        Assert.Equal(2, dynamicReport.QuantizedByOpType["Gemm"]);
        Assert.Contains(dynamicModel.Graph.Node, n => n.OpType == "MatMulInteger");
        Assert.DoesNotContain(dynamicModel.Graph.Node, n => n.OpType == "Gemm");
        var dynamicPath = Path.Combine(_dir, "demo-dynamic.onnx");
        dynamicModel.Save(dynamicPath);

        foreach (var candidate in new[] { stat, dynamicPath })
        {
            var report = ValidationGate.Run(new ValidationGate.Request { Reference = fp32, Candidate = candidate, DataDirectory = dir, Labels = labels, LatencyRuns = 5 });
            Assert.True(report.Top1Agreement >= 0.98, $"{candidate}: agreement {report.Top1Agreement}");
            Assert.True(report.CandidateAccuracy >= report.ReferenceAccuracy - 0.02, $"{candidate}: accuracy {report.ReferenceAccuracy} → {report.CandidateAccuracy}");
            Assert.Contains(report.Checks, c => c.Name == "accuracyDrop");
        }
    }

    [Fact]
    public void A_quantized_model_that_onnx_runtime_cannot_load_or_run_is_refused_with_its_reason()
    {
        OnnxModel Chain(params long?[] dims) => new(new OnnxModelBuilder("chain", opset: 14)
            .Input("x", dims)
            .Output("y", dims)
            .Node("Relu", ["x"], ["a"])
            .Node("Sigmoid", ["a"], ["y"])
            .Build());
        var sample = new List<SampleTensor> { new("x", [1, 4], new float[] { -1, 0, 1, 2 }) };

        // A well-formed result passes, with a sample and with zeros shaped from its inputs.
        ServingCheck.Verify(Chain(1, 4), sample, "the quantized model");
        ServingCheck.Verify(Chain(1, null), null, "the quantized model");

        // A tensor renamed where it is made but not where it is read (what a rename that misses a subgraph leaves
        // behind): ONNX Runtime refuses to load it.
        var dangling = Chain(1, 4);
        dangling.Graph.Node[0].Output[0] = "a_renamed";
        var refused = Assert.Throws<QuantizationException>(() => ServingCheck.Verify(dangling, sample, "the quantized model"));
        Assert.StartsWith("ONNX Runtime cannot load the quantized model: ", refused.Message);
        Assert.DoesNotContain("\n", refused.Message);

        // Loads, but fails on a real input: a reshape to three values of a four-value input.
        var reshape = new OnnxModel(new OnnxModelBuilder("reshape", opset: 14)
            .Input("x", 1, null)
            .Output("y", 3)
            .Node("Reshape", ["x", "shape"], ["y"])
            .Build());
        reshape.Graph.Initializer.Add(new TensorProto { Name = "shape", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 1 }, Int64Data = { 3 } });
        var failed = Assert.Throws<QuantizationException>(() => ServingCheck.Verify(reshape, sample, "the quantized model"));
        Assert.StartsWith("ONNX Runtime loads the quantized model but cannot run it on a sample: ", failed.Message);

        // Without a sample, zeros the original model cannot run either say nothing: only the load is checked.
        ServingCheck.Verify(reshape, null, "the quantized model", reference: reshape);
    }

    [Fact]
    public void A_model_without_float_inputs_cannot_be_calibrated()
    {
        var builder = new OnnxModelBuilder("ids");
        var model = builder.Build();
        model.Graph.Input.Add(new ValueInfoProto { Name = "ids", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Int64, Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimValue = 1 }, new TensorShapeProto.Types.Dimension { DimValue = 4 } } } } } });
        model.Graph.Output.Add(new ValueInfoProto { Name = "y", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } } });
        model.Graph.Node.Add(new NodeProto { OpType = "Cast", Name = "cast", Input = { "ids" }, Output = { "f" }, Attribute = { OnnxModelBuilder.IntAttribute("to", 1) } });
        model.Graph.Node.Add(new NodeProto { OpType = "MatMul", Name = "mm", Input = { "f", "w" }, Output = { "y" } });
        model.Graph.Initializer.Add(Tensors.FromFloats("w", new float[8], 4, 2));
        var path = Path.Combine(_dir, "ids.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        var dir = Path.Combine(_dir, "ids-samples");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "0.json"), """{"inputs":{"ids":{"shape":[1,4],"type":"int64","data":[1,2,3,4]}}}""");

        var error = Assert.Throws<QuantizationException>(() => QdqQuantizer.Quantize(OnnxModel.Load(path), Open(path, dir), new QuantizationOptions()));
        Assert.Contains("no float inputs", error.Message);
        Assert.Contains("dynamic", error.Message);
        // Dynamic quantization needs no calibration and handles it.
        Assert.Equal(1, DynamicQuantizer.Quantize(OnnxModel.Load(path), new QuantizationOptions()).Report.QuantizedNodes);
    }

    [Fact]
    public void Empty_or_mismatched_calibration_data_gets_a_clear_error()
    {
        var empty = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(empty);
        Assert.Contains("holds no samples", Assert.Throws<SampleDataException>(() => Open(TestModels.Classifier, empty)).Message);
        Assert.Contains("does not exist", Assert.Throws<SampleDataException>(() => Open(TestModels.Classifier, Path.Combine(_dir, "nowhere"))).Message);

        var wrong = Samples("wrong", 2, r => new float[3 * 48], [1, 3, 48], seed: 1);
        var error = Assert.Throws<SampleDataException>(() => QdqQuantizer.Quantize(OnnxModel.Load(TestModels.Classifier), Open(TestModels.Classifier, wrong), new QuantizationOptions()));
        Assert.Contains("has shape [1,3,48]", error.Message);

        var everything = new QuantizationOptions { ExcludeOpTypes = QdqQuantizer.QuantizableOpTypes.ToHashSet() };
        var cal = Samples("cal", 2, r => TextImages.ClassifierInput(r, out _), [1, 3, 48, 192], seed: 1);
        Assert.Contains("excluded", Assert.Throws<QuantizationException>(() => QdqQuantizer.Quantize(OnnxModel.Load(TestModels.Classifier), Open(TestModels.Classifier, cal), everything)).Message);
    }
}
