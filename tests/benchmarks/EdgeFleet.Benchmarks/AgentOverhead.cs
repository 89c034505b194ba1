using System.Text.Json.Nodes;

namespace EdgeFleet.Benchmarks;

/// <summary>
/// The agent's inference path against plain ONNX Runtime on the PaddleOCR classifier and detector: runs the
/// NativeAOT agent's own <c>bench --json</c> (both paths in one process, interleaved) and prints its p50s and
/// their ratio against the target (≤ 1.03 at p50).
/// </summary>
internal static class AgentOverhead
{
    public static int Run(int clsRuns, int detRuns)
    {
        var agent = Path.Combine(Repo.Root, "artifacts/agent/linux-x64/edgefleet-agent");
        if (!File.Exists(agent))
        {
            Console.Error.WriteLine($"no NativeAOT agent at {agent}: run packaging/publish-agent.sh linux-x64");
            return 1;
        }
        var cache = Repo.TestModels;
        Console.WriteLine("agent-overhead: edgefleet-agent bench (NativeAOT), agent path vs plain ONNX Runtime, 1 thread, interleaved");
        foreach (var (name, file, shape, runs) in new[]
        {
            ("PP-OCR cls 1x3x48x192", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "x=1x3x48x192", clsRuns),
            ("PP-OCR det 1x3x640x640", "ch_PP-OCRv4_det_infer.onnx", "x=1x3x640x640", detRuns),
        })
        {
            var report = JsonNode.Parse(Repo.Capture(agent, "bench", "--model", Path.Combine(cache, file), "--shape", shape, "--runs", runs.ToString(System.Globalization.CultureInfo.InvariantCulture), "--warmup", "5", "--json"))!;
            var ratio = report["ratioP50"]!.GetValue<double>();
            Console.WriteLine($"  {name,-24} agent p50 {report["agent"]!["p50Ms"]!.GetValue<double>(),8:F3} ms  raw p50 {report["raw"]!["p50Ms"]!.GetValue<double>(),8:F3} ms  "
                + $"ratio {ratio:F3} (target <= 1.03: {(ratio <= 1.03 ? "met" : "NOT met")}); p95 ratio {report["ratioP95"]!.GetValue<double>():F3}");
        }
        return 0;
    }
}
