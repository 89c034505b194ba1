using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// The steady-state path for a classifier with one float input [batch, K] and one float output
/// [batch, C]: input and output tensors are allocated and bound once and reused, so a call allocates nothing.
/// Not thread-safe: one caller at a time.
/// </summary>
public sealed class Classifier : IDisposable
{
    private readonly ModelSession _session;
    private readonly float[] _input;
    private readonly float[] _output;
    private readonly OrtValue[] _inputValues;
    private readonly OrtValue[] _outputValues;
    private readonly OrtIoBinding _binding;

    public Classifier(ModelSession session, IReadOnlyList<string> labels)
    {
        if (session.Inputs.Count != 1 || session.Outputs.Count != 1)
            throw new InferenceException(InferenceError.InputMismatch, $"a classifier needs one input and one output; the model has {session.Inputs.Count} and {session.Outputs.Count}");
        var input = session.Inputs[0];
        var output = session.Outputs[0];
        if (input.ElementType != TensorElementType.Float || input.Dims.Length != 2 || input.Dims[1] < 1)
            throw new InferenceException(InferenceError.InputMismatch, $"input '{input.Name}' is {input.TypeName}{input.ShapeText}; a classifier needs float32[batch, K]");
        if (output.ElementType != TensorElementType.Float || output.Dims.Length != 2 || output.Dims[1] != labels.Count)
            throw new InferenceException(InferenceError.InputMismatch, $"output '{output.Name}' is {output.TypeName}{output.ShapeText}; expected float32[batch, {labels.Count}] for labels {string.Join(", ", labels)}");
        _session = session;
        Labels = labels;
        FeatureCount = (int)input.Dims[1];
        _input = new float[FeatureCount];
        _output = new float[labels.Count];
        _inputValues = [OrtValue.CreateTensorValueFromMemory(_input, [1, FeatureCount])];
        _outputValues = [OrtValue.CreateTensorValueFromMemory(_output, [1, labels.Count])];
        _binding = session.Bind(_inputValues, _outputValues);
    }

    public int FeatureCount { get; }

    public IReadOnlyList<string> Labels { get; }

    /// <summary>Returns the top class and its probability.</summary>
    public (int Index, float Confidence) Classify(ReadOnlySpan<float> features)
    {
        if (features.Length != FeatureCount)
            throw new InferenceException(InferenceError.InputMismatch, $"expected {FeatureCount} features, got {features.Length}");
        features.CopyTo(_input);
        _session.Run(_binding);
        var best = 0;
        for (var i = 1; i < _output.Length; i++)
        {
            if (_output[i] > _output[best])
                best = i;
        }
        return (best, _output[best]);
    }

    /// <summary>The class probabilities of the last <see cref="Classify"/> (call under the same lock).</summary>
    public float[] Probabilities() => [.. _output];

    public void Dispose()
    {
        _binding.Dispose();
        _inputValues[0].Dispose();
        _outputValues[0].Dispose();
    }
}
