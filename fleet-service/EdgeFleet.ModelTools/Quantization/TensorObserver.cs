using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// Runs a model over sample inputs with chosen intermediate float tensors added as graph outputs, and hands
/// each tensor's values to an observer: the common ground of calibration and channel equalization. Several
/// passes share one session (the percentile method needs the ranges of the first to bin the second).
/// </summary>
internal static class TensorObserver
{
    public delegate void Observe(string tensor, OrtValue value);

    public static void Run(OnnxModel model, IReadOnlyCollection<string> tensors, SampleSet samples, QuantizationOptions options, params Observe[] passes)
    {
        var augmented = model.Clone();
        var existing = augmented.Graph.Output.Select(o => o.Name).ToHashSet();
        foreach (var name in tensors.Where(t => !existing.Contains(t)))
            augmented.Graph.Output.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } } });
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, IntraOpNumThreads = options.Threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        InferenceSession session;
        try
        {
            session = new InferenceSession(augmented.ToBytes(), sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxFormatException($"ONNX Runtime cannot load the model for calibration: {ModelPreprocessor.FirstLine(e.Message)}", e);
        }
        using (session)
        using (var runOptions = new RunOptions())
        {
            var names = tensors.ToArray();
            var count = Math.Min(samples.Count, options.MaxSamples ?? int.MaxValue);
            foreach (var observe in passes)
            {
                for (var i = 0; i < count; i++)
                {
                    var sample = samples.Read(i);
                    var inputs = sample.Select(t => t.ToOrtValue()).ToArray();
                    try
                    {
                        using var outputs = session.Run(runOptions, sample.Select(t => t.Name).ToArray(), inputs, names);
                        for (var k = 0; k < names.Length; k++)
                            observe(names[k], outputs[k]);
                    }
                    catch (OnnxRuntimeException e)
                    {
                        throw new SampleDataException($"{samples.Entries[i]}: ONNX Runtime failed on this sample: {ModelPreprocessor.FirstLine(e.Message)}");
                    }
                    finally
                    {
                        foreach (var value in inputs)
                            value.Dispose();
                    }
                }
            }
        }
    }
}
