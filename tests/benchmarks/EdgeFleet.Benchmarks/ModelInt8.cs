using System.Diagnostics;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.ModelTools.Samples;
using EdgeFleet.ModelTools.Validation;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// INT8 against FP32 on the PaddleOCR text direction classifier and text detector: each quantized by our
/// static QDQ quantizer from synthetic text images, then both models run through the validation gate on fresh
/// images from the same generator at one thread, interleaved, in one process. Prints latency, size, top-1
/// agreement (classifier) and output cosine (detector) against the targets.
/// </summary>
internal static class ModelInt8
{
    public static int Run(int clsSamples, int detSize, int detSamples, int calibration)
    {
        var cache = Repo.TestModels;
        var work = Directory.CreateTempSubdirectory("edgefleet-bench-int8-").FullName;
        try
        {
            var cls = Measure(work, "cls", Path.Combine(cache, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), [1, 3, 48, 192],
                r => TextImages.ClassifierInput(r, out _), calibration, clsSamples);
            // The classifier again without depthwise channel padding (what arm64's kernels need): smaller, slower here.
            var unpadded = Measure(work, "cls-unpadded", Path.Combine(cache, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), [1, 3, 48, 192],
                r => TextImages.ClassifierInput(r, out _), calibration, clsSamples, new QuantizationOptions { DepthwiseChannelMultiple = 1 });
            var det = Measure(work, "det", Path.Combine(cache, "ch_PP-OCRv4_det_infer.onnx"), [1, 3, detSize, detSize],
                r => TextImages.DetectorInput(r, detSize), Math.Min(calibration, 16), detSamples);
            Console.WriteLine($"""
                model-int8: INT8 (our static QDQ quantizer, {calibration} calibration images) vs FP32, 1 thread, ONNX Runtime {OrtEnv.Instance().GetVersionString()}
                  PP-OCR cls 3x48x192, {cls.Samples} images:  latency {cls.ReferenceLatency.P50Ms,7:F2} -> {cls.CandidateLatency.P50Ms,7:F2} ms p50  ratio {cls.LatencyRatio:F3} (target <= 0.5: {Met(cls.LatencyRatio <= 0.5)})
                                                   size {cls.ReferenceBytes,9:N0} -> {cls.CandidateBytes,9:N0} B    ratio {cls.SizeRatio:F3} (target <= 0.3: {Met(cls.SizeRatio <= 0.3)})
                                                   top-1 agreement {cls.Top1Agreement:P2} (target >= 99%: {Met(cls.Top1Agreement >= 0.99)}), cosine {cls.Cosine:F4}
                                                   reference itself, inputs ±½ 8-bit step: agreement {cls.ReferenceStability?.Top1Agreement:P2}, cosine {cls.ReferenceStability?.Cosine:F4}
                    --channel-multiple 1 (arm64):  latency {unpadded.ReferenceLatency.P50Ms,7:F2} -> {unpadded.CandidateLatency.P50Ms,7:F2} ms p50  ratio {unpadded.LatencyRatio:F3}, size ratio {unpadded.SizeRatio:F3}, agreement {unpadded.Top1Agreement:P2}
                  PP-OCR det 3x{detSize}x{detSize}, {det.Samples} images: latency {det.ReferenceLatency.P50Ms,7:F2} -> {det.CandidateLatency.P50Ms,7:F2} ms p50  ratio {det.LatencyRatio:F3} (target <= 0.5: {Met(det.LatencyRatio <= 0.5)})
                                                   size {det.ReferenceBytes,9:N0} -> {det.CandidateBytes,9:N0} B    ratio {det.SizeRatio:F3} (target <= 0.3: {Met(det.SizeRatio <= 0.3)})
                                                   output cosine {det.Cosine:F4} (target >= 0.98: {Met(det.Cosine >= 0.98)}), mean |err| {det.MeanAbsError:G3}
                                                   reference itself, inputs ±½ 8-bit step: cosine {det.ReferenceStability?.Cosine:F4}
                """);
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static ValidationReport Measure(string work, string name, string fp32, long[] shape, Func<Random, float[]> image, int calibration, int samples,
        QuantizationOptions? options = null)
    {
        var calibrationDir = Write(Path.Combine(work, name + "-calibration"), calibration, shape, image, seed: 1);
        var validationDir = Write(Path.Combine(work, name + "-validation"), samples, shape, image, seed: 2);
        using var session = new InferenceSession(fp32);
        var clock = Stopwatch.StartNew();
        var (model, _) = QdqQuantizer.Quantize(OnnxModel.Load(fp32), SampleSet.Open(calibrationDir, session.InputMetadata), options ?? new QuantizationOptions());
        var int8 = Path.Combine(work, name + "-int8.onnx");
        model.Save(int8);
        Console.Error.WriteLine($"{name}: quantized in {clock.Elapsed.TotalSeconds:F1} s");
        return ValidationGate.Run(new ValidationGate.Request
        {
            Reference = fp32,
            Candidate = int8,
            DataDirectory = validationDir,
            Threads = 1,
            LatencyRuns = Math.Max(30, samples),
        });
    }

    private static string Write(string dir, int count, long[] shape, Func<Random, float[]> image, int seed)
    {
        Directory.CreateDirectory(dir);
        var random = new Random(seed);
        for (var i = 0; i < count; i++)
            Npy.Write(Path.Combine(dir, $"{i:D5}.npy"), image(random), shape);
        return dir;
    }

    private static string Met(bool met) => met ? "met" : "NOT met";
}
