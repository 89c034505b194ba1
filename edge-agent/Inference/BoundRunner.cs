using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// The allocation-free steady state for any model whose inputs and outputs are tensors of a fixed-size element type
/// (float, float16, int64, int32, uint8, bool, …) at fixed shapes: input and output tensors are allocated once in
/// ONNX Runtime's memory (output shapes from one probing run), bound to the session once (an I/O binding) and reused,
/// so a call runs without allocating. Not thread-safe: one caller at a time.
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
        var outputs = new List<OrtValue>();
        try
        {
            foreach (var spec in session.Inputs)
            {
                if (TensorSpec.ElementSize(spec.ElementType) is null)
                {
                    throw new InferenceException(InferenceError.InputMismatch,
                        $"input '{spec.Name}' is {spec.TypeName}; the bound runner takes tensors of numbers or booleans");
                }
                var shape = inputShapes.TryGetValue(spec.Name, out var s) ? s
                    : spec.Dims.All(d => d >= 0) ? spec.Dims
                    : throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' has symbolic dimensions {spec.ShapeText}: give its shape");
                if (spec.CheckShape(shape) is { } problem)
                    throw new InferenceException(InferenceError.InputMismatch, problem);
                inputs.Add(Allocate(spec.ElementType, shape));
            }
            _inputValues = [.. inputs];
            // One run with outputs allocated by ONNX Runtime tells their types and shapes.
            using (var probe = session.RunAllocating(_inputValues))
            {
                foreach (var (value, spec) in probe.Zip(session.Outputs))
                {
                    var info = value.GetTensorTypeAndShape();
                    if (TensorSpec.ElementSize(info.ElementDataType) is null)
                    {
                        throw new InferenceException(InferenceError.InputMismatch,
                            $"output '{spec.Name}' is {TensorSpec.ElementTypeName(info.ElementDataType)}; " +
                            "the bound runner takes tensors of numbers or booleans");
                    }
                    outputs.Add(Allocate(info.ElementDataType, info.Shape));
                }
            }
            _outputValues = [.. outputs];
            _binding = session.Bind(_inputValues, _outputValues);
        }
        catch
        {
            foreach (var v in inputs.Concat(outputs))
                v.Dispose();
            throw;
        }
    }

    /// <summary>The input tensors, in the model's input order: fill them, then <see cref="Run"/>.</summary>
    public IReadOnlyList<OrtValue> InputValues => _inputValues;

    public TensorElementType InputType(int index) => _session.Inputs[index].ElementType;

    /// <summary>An input's elements as raw bytes, whatever their type.</summary>
    public Span<byte> InputBytes(int index) => _inputValues[index].GetTensorMutableRawData();

    /// <summary>A float32 input's elements.</summary>
    public Span<float> InputFloats(int index) => Floats(_inputValues[index], _session.Inputs[index].Name);

    /// <summary>A float32 output's elements, overwritten by each run.</summary>
    public Span<float> OutputFloats(int index) => Floats(_outputValues[index], _session.Outputs[index].Name);

    public void Run() => _session.Run(_binding);

    /// <summary>
    /// Fills every input with values valid for its type: floats uniform in [-1, 1), integers and booleans 0 or 1 (an
    /// index every embedding table has), so a benchmark runs any model without data of its own.
    /// </summary>
    public void FillRandom(Random random)
    {
        for (var i = 0; i < _inputValues.Length; i++)
        {
            var bytes = InputBytes(i);
            switch (InputType(i))
            {
                case TensorElementType.Float:
                    foreach (ref var v in MemoryMarshal.Cast<byte, float>(bytes))
                        v = (float)(random.NextDouble() * 2 - 1);
                    break;
                case TensorElementType.Double:
                    foreach (ref var v in MemoryMarshal.Cast<byte, double>(bytes))
                        v = random.NextDouble() * 2 - 1;
                    break;
                case TensorElementType.Float16:
                    foreach (ref var v in MemoryMarshal.Cast<byte, Half>(bytes))
                        v = (Half)(random.NextDouble() * 2 - 1);
                    break;
                case TensorElementType.Int64 or TensorElementType.UInt64:
                    foreach (ref var v in MemoryMarshal.Cast<byte, long>(bytes))
                        v = random.Next(2);
                    break;
                case TensorElementType.Int32 or TensorElementType.UInt32:
                    foreach (ref var v in MemoryMarshal.Cast<byte, int>(bytes))
                        v = random.Next(2);
                    break;
                case TensorElementType.Int16 or TensorElementType.UInt16:
                    foreach (ref var v in MemoryMarshal.Cast<byte, short>(bytes))
                        v = (short)random.Next(2);
                    break;
                case TensorElementType.Int8 or TensorElementType.UInt8 or TensorElementType.Bool:
                    foreach (ref var v in bytes)
                        v = (byte)random.Next(2);
                    break;
                default:
                    bytes.Clear(); // bfloat16: zeros
                    break;
            }
        }
    }

    public void Dispose()
    {
        _binding?.Dispose();
        foreach (var v in _inputValues)
            v.Dispose();
        foreach (var v in _outputValues ?? [])
            v.Dispose();
    }

    private static OrtValue Allocate(TensorElementType type, long[] shape)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
        value.GetTensorMutableRawData().Clear();
        return value;
    }

    private static Span<float> Floats(OrtValue value, string name) =>
        value.GetTensorTypeAndShape().ElementDataType == TensorElementType.Float
            ? MemoryMarshal.Cast<byte, float>(value.GetTensorMutableRawData())
            : throw new InferenceException(InferenceError.InputMismatch, $"tensor '{name}' is not float32");
}
