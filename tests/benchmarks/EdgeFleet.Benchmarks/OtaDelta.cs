using System.Diagnostics;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Tests.Common;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// Bytes on the wire for a model update: the full artifact (the baseline), the full artifact compressed, the generic
/// delta (zstd with the base as prefix, as <c>zstd --patch-from</c>) and the ONNX-aware delta (per weight XOR, byte
/// planes, zstd), with the time to rebuild the target on the device from each delta.
/// Run: <c>dotnet run -c Release --project tests/benchmarks/EdgeFleet.Benchmarks -- ota-delta</c>.
/// </summary>
public static class OtaDelta
{
    public static int Run()
    {
        var detector = File.ReadAllBytes(Path.Combine(Repo.TestModels, "ch_PP-OCRv4_det_infer.onnx"));
        var classifier = File.ReadAllBytes(Path.Combine(Repo.TestModels, "ch_ppocr_mobile_v2.0_cls_infer.onnx"));
        (string Name, byte[] Base, byte[] Target)[] cases =
        [
            ("demo v1 -> v2 (retrained, every weight)", DemoModelTrainer.Train(seed: 42, perClass: 200, epochs: 20).OnnxBytes,
                DemoModelTrainer.Train(seed: 43, perClass: 200, epochs: 20).OnnxBytes),
            ("PP-OCRv4 det, head fine-tuned (last 12 nodes)", detector, FineTune.Head(detector, layers: 12)),
            ("PP-OCRv4 det, all weights fine-tuned", detector, FineTune.Head(detector, layers: int.MaxValue)),
            ("PP-OCR cls, head fine-tuned (last 6 nodes)", classifier, FineTune.Head(classifier, layers: 6)),
        ];
        Console.WriteLine("case | full B | zstd(full) | zstd-patch | xor-planes | best/full | encode s | rebuild ms");
        foreach (var (name, baseBytes, target) in cases)
        {
            var compressed = ModelDelta.Encode([], target, DeltaMethod.ZstdPatch).Length;
            var candidates = ModelDeltas.Encode(baseBytes, target);
            string Size(DeltaMethod m) => candidates.FirstOrDefault(c => c.Method == m) is { } c ? $"{c.Bytes.Length}" : "-";
            var best = candidates[0];
            var clock = Stopwatch.StartNew();
            const int runs = 5;
            for (var i = 0; i < runs; i++)
            {
                if (!ModelDelta.Apply(baseBytes, best.Bytes, target.Length).AsSpan().SequenceEqual(target))
                {
                    Console.Error.WriteLine($"{name}: the rebuilt target differs");
                    return 1;
                }
            }
            Console.WriteLine($"{name} | {target.Length} | {compressed} | {Size(DeltaMethod.ZstdPatch)} | {Size(DeltaMethod.XorPlanes)} | "
                + $"{(double)best.Bytes.Length / target.Length:F4} ({best.Method}) | {candidates.Sum(c => c.EncodeTime.TotalSeconds):F1} | "
                + $"{clock.Elapsed.TotalMilliseconds / runs:F0}");
        }
        return 0;
    }
}
