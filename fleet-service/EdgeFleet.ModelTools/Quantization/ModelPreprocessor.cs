using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Gets an FP32 model into the form the quantizer works on: opset 14 or later (per-channel Q/DQ, HardSwish), constants
/// folded into initializers and BatchNormalization folded into the preceding convolution (ONNX Runtime's
/// provider-independent basic optimizations, which write standard ONNX), then the exact rewrites of
/// <see cref="GraphSimplifier"/>.
/// </summary>
public static class ModelPreprocessor
{
    public const long MinimumOpset = 14;

    public static OnnxModel Prepare(OnnxModel source)
    {
        var model = source.Clone();
        OpsetUpgrade.Upgrade(model, MinimumOpset);
        var optimized = Optimize(model);
        GraphSimplifier.Simplify(optimized);
        return optimized;
    }

    /// <summary>Runs ONNX Runtime's basic (provider-independent) graph optimizations and reads the result back.</summary>
    public static OnnxModel Optimize(OnnxModel model)
    {
        var directory = Directory.CreateTempSubdirectory("edgefleet-prep-");
        try
        {
            var input = Path.Combine(directory.FullName, "in.onnx");
            var output = Path.Combine(directory.FullName, "out.onnx");
            File.WriteAllBytes(input, model.ToBytes());
            using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, OptimizedModelFilePath = output, IntraOpNumThreads = 1, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR })
            {
                try
                {
                    using var session = new InferenceSession(input, options);
                }
                catch (OnnxRuntimeException e)
                {
                    throw new OnnxFormatException($"ONNX Runtime cannot load the model: {FirstLine(e.Message)}", e);
                }
            }
            var result = OnnxModel.Load(output);
            // Keep the source's identity: producer, metadata and doc string.
            result.Proto.MetadataProps.Clear();
            result.Proto.MetadataProps.AddRange(model.Proto.MetadataProps);
            result.Proto.DocString = model.Proto.DocString;
            return result;
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    public static string FirstLine(string message) => message.Split('\n')[0].Trim();
}
