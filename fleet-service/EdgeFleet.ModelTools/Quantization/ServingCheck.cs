using EdgeFleet.ModelTools.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.ModelTools.Quantization;

/// <summary>
/// The last step of a quantization, before anything is written: ONNX Runtime loads the model from its bytes and runs
/// one sample through it, reading every output. A graph that ONNX Runtime refuses (a tensor renamed at the top level
/// but not inside a subgraph, nodes out of order, an operator it lacks) or that fails at run time is refused here,
/// with ONNX Runtime's reason, instead of leaving the tool as a success.
/// </summary>
public static class ServingCheck
{
    /// <summary>Throws a <see cref="QuantizationException"/> naming what failed when the model cannot serve.</summary>
    /// <param name="sample">A calibration sample. Without one, zeros shaped from the model's inputs (symbolic dimensions 1)
    /// are run when <paramref name="reference"/> (the model it was made from) runs them too; otherwise only the load is checked.</param>
    /// <param name="role">How the refusal names the model ("the quantized model").</param>
    public static void Verify(OnnxModel model, IReadOnlyList<SampleTensor>? sample, string role, OnnxModel? reference = null)
    {
        using var options = Options();
        InferenceSession session;
        try
        {
            session = new InferenceSession(model.ToBytes(), options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new QuantizationException($"ONNX Runtime cannot load {role}: {ModelPreprocessor.FirstLine(e.Message)}");
        }
        using (session)
        {
            // Zeros the original cannot run either (a shape they break) say nothing about the variant: then only the load is checked.
            var inputs = sample
                ?? (Zeros(session.InputMetadata) is { } zeros && (reference is null || Runs(reference, zeros)) ? zeros : null);
            if (inputs is null)
                return;
            try
            {
                Run(session, inputs);
            }
            catch (OnnxRuntimeException e)
            {
                throw new QuantizationException(
                    $"ONNX Runtime loads {role} but cannot run it on a sample: {ModelPreprocessor.FirstLine(e.Message)}");
            }
        }
    }

    /// <summary>One input of zeros per model input, symbolic dimensions taken as 1; null for an element type samples cannot hold.</summary>
    public static IReadOnlyList<SampleTensor>? Zeros(IReadOnlyDictionary<string, NodeMetadata> inputs)
    {
        var tensors = new List<SampleTensor>();
        foreach (var (name, meta) in inputs)
        {
            var shape = meta.Dimensions.Select(d => d > 0 ? (long)d : 1L).ToArray();
            var count = (int)shape.Aggregate(1L, (a, b) => a * b);
            Array? data = meta.ElementDataType switch
            {
                TensorElementType.Float => new float[count],
                TensorElementType.Int64 => new long[count],
                TensorElementType.Int32 => new int[count],
                TensorElementType.UInt8 => new byte[count],
                TensorElementType.Int8 => new sbyte[count],
                _ => null,
            };
            if (data is null)
                return null;
            tensors.Add(new SampleTensor(name, shape, data));
        }
        return tensors;
    }

    private static SessionOptions Options() => new()
    {
        IntraOpNumThreads = 1,
        InterOpNumThreads = 1,
        LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
    };

    /// <summary>Whether the model loads and runs the inputs (a reference that cannot says nothing about its variant).</summary>
    private static bool Runs(OnnxModel model, IReadOnlyList<SampleTensor> inputs)
    {
        try
        {
            using var options = Options();
            using var session = new InferenceSession(model.ToBytes(), options);
            Run(session, inputs);
            return true;
        }
        catch (OnnxRuntimeException)
        {
            return false;
        }
    }

    private static void Run(InferenceSession session, IReadOnlyList<SampleTensor> inputs)
    {
        var values = inputs.Select(t => t.ToOrtValue()).ToArray();
        try
        {
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, inputs.Select(t => t.Name).ToArray(), values, [.. session.OutputMetadata.Keys]);
        }
        finally
        {
            foreach (var v in values)
                v.Dispose();
        }
    }
}
