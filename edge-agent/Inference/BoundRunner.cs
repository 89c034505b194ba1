using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// The allocation-free steady state for any model with float inputs and outputs at fixed shapes: input and
/// output tensors are allocated once (output shapes from one probing run), bound to the session once (an I/O
/// binding) and reused, so a call runs without allocating. Not thread-safe: one caller at a time.
/// </summary>
public sealed class BoundRunner : IDisposable
{
    private readonly ModelSession _session;
    private readonly OrtValue[] _inputValues;
    private readonly OrtValue[] _outputValues;
    private readonly OrtIoBinding _binding;

    public BoundRunner(ModelSession session, IReadOnlyDictionary<string, long[]> inputShapes)
    {
        _session = session;
        var inputs = new List<OrtValue>();
        try
        {
            foreach (var spec in session.Inputs)
            {
                if (spec.ElementType != TensorElementType.Float)
                    throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' is {spec.TypeName}; the bound runner takes float32 inputs");
                var shape = inputShapes.TryGetValue(spec.Name, out var s) ? s
                    : spec.Dims.All(d => d >= 0) ? spec.Dims
                    : throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' has symbolic dimensions {spec.ShapeText}: give its shape");
                if (spec.CheckShape(shape) is { } problem)
                    throw new InferenceException(InferenceError.InputMismatch, problem);
                var buffer = new float[shape.Aggregate(1L, (a, b) => a * b)];
                Inputs.Add(buffer);
                inputs.Add(OrtValue.CreateTensorValueFromMemory(buffer, shape));
            }
            _inputValues = [.. inputs];
            // One run with outputs allocated by ONNX Runtime tells their shapes.
            using var probe = session.RunAllocating(_inputValues);
            var outputs = new List<OrtValue>();
            foreach (var (value, spec) in probe.Zip(session.Outputs))
            {
                if (value.GetTensorTypeAndShape().ElementDataType != TensorElementType.Float)
                    throw new InferenceException(InferenceError.InputMismatch, $"output '{spec.Name}' is not float32");
                var shape = value.GetTensorTypeAndShape().Shape;
                var buffer = new float[shape.Aggregate(1L, (a, b) => a * b)];
                Outputs.Add(buffer);
                outputs.Add(OrtValue.CreateTensorValueFromMemory(buffer, shape));
            }
            _outputValues = [.. outputs];
            _binding = session.Bind(_inputValues, _outputValues);
        }
        catch
        {
            foreach (var v in inputs)
                v.Dispose();
            throw;
        }
    }

    /// <summary>The input buffers, in the model's input order: fill them, then <see cref="Run"/>.</summary>
    public List<float[]> Inputs { get; } = [];

    /// <summary>The output buffers, in the model's output order, overwritten by each run.</summary>
    public List<float[]> Outputs { get; } = [];

    public void Run() => _session.Run(_binding);

    public void Dispose()
    {
        _binding?.Dispose();
        foreach (var v in _inputValues)
            v.Dispose();
        foreach (var v in _outputValues ?? [])
            v.Dispose();
    }
}
