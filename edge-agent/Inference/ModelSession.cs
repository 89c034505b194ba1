using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using EdgeFleet.Agent.Profiles;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Agent.Inference;

/// <summary>Why a model could not be loaded or run. Stable codes: they reach operators.</summary>
public enum InferenceError
{
    ModelMissing,
    ModelLoadFailed,
    InputMismatch,
    RunFailed,
}

public sealed class InferenceException(InferenceError code, string reason) : Exception(reason)
{
    public InferenceError Code { get; } = code;
}

/// <summary>
/// One ONNX Runtime session over one model file, with its inputs and outputs read from the model's
/// metadata so that every request is checked before it reaches the runtime.
/// </summary>
public sealed class ModelSession : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();

    private ModelSession(string path, InferenceSession session, ProviderChoice providers)
    {
        Path = path;
        _session = session;
        Providers = providers;
        Inputs = session.InputMetadata.Select(kv => TensorSpec.From(kv.Key, kv.Value)).ToArray();
        Outputs = session.OutputMetadata.Select(kv => TensorSpec.From(kv.Key, kv.Value)).ToArray();
        InputNames = Inputs.Select(i => i.Name).ToArray();
        OutputNames = Outputs.Select(o => o.Name).ToArray();
        Metadata = session.ModelMetadata.CustomMetadataMap;
    }

    /// <summary>The execution providers the session runs on and those it fell back from.</summary>
    public ProviderChoice Providers { get; }

    /// <summary>The model's metadata_props (labels, provenance).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public string Path { get; }

    public IReadOnlyList<TensorSpec> Inputs { get; }

    public IReadOnlyList<TensorSpec> Outputs { get; }

    internal string[] InputNames { get; }

    internal string[] OutputNames { get; }

    /// <summary>
    /// Opens a model on <paramref name="profile"/>'s execution providers (CPU only when null), falling back past
    /// providers this device cannot use; <paramref name="intraOpThreads"/> null takes the profile's thread count.
    /// </summary>
    public static ModelSession Load(string path, int? intraOpThreads = 1, HardwareProfile? profile = null)
    {
        if (!File.Exists(path))
            throw new InferenceException(InferenceError.ModelMissing, $"model file {path} does not exist");
        profile ??= HardwareProfile.CpuOnly("cpu");
        try
        {
            var (session, providers) = ExecutionProviders.CreateSession(path, profile, () => new SessionOptions
            {
                IntraOpNumThreads = intraOpThreads ?? profile.Threads.IntraOp,
                InterOpNumThreads = Math.Max(1, profile.Threads.InterOp),
                ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            });
            return new ModelSession(path, session, providers);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InferenceException(InferenceError.ModelLoadFailed, $"ONNX Runtime cannot load {path}: {FirstLine(e.Message)}");
        }
    }

    /// <summary>Runs named JSON tensors through the model: the general, allocating path used by <c>infer</c>.</summary>
    public InferResponse Run(IReadOnlyDictionary<string, JsonTensor> inputs) =>
        Run(inputs, (results, micros) =>
        {
            var outputs = new Dictionary<string, JsonTensor>();
            for (var i = 0; i < OutputNames.Length; i++)
                outputs[OutputNames[i]] = FromOrtValue(results[i]);
            return new InferResponse { Model = Path, Outputs = outputs, LatencyMicros = micros };
        });

    /// <summary>Runs named JSON tensors, each checked against the model's input, and hands the outputs to <paramref name="read"/>.</summary>
    public T Run<T>(IReadOnlyDictionary<string, JsonTensor> inputs, Func<IReadOnlyList<OrtValue>, long, T> read) =>
        Run(inputs, (_, outputs, micros) => read(outputs, micros));

    /// <summary>As above, with the inputs as built handed to <paramref name="read"/> too.</summary>
    public T Run<T>(IReadOnlyDictionary<string, JsonTensor> inputs, Func<IReadOnlyList<OrtValue>, IReadOnlyList<OrtValue>, long, T> read)
    {
        foreach (var name in inputs.Keys)
        {
            if (!InputNames.Contains(name))
                throw new InferenceException(InferenceError.InputMismatch, $"the model has no input '{name}' (inputs: {string.Join(", ", InputNames)})");
        }
        return Run(
            spec => inputs.TryGetValue(spec.Name, out var tensor) ? ToOrtValue(spec, tensor)
                : throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' {spec.TypeName}{spec.ShapeText} is missing"),
            read);
    }

    /// <summary>
    /// Builds the inputs (<paramref name="input"/> is called once per model input, in order), runs the model
    /// and hands the outputs and the run's duration in microseconds to <paramref name="read"/>; every native
    /// value is disposed after.
    /// </summary>
    public T Run<T>(Func<TensorSpec, OrtValue> input, Func<IReadOnlyList<OrtValue>, long, T> read) =>
        Run(input, (_, outputs, micros) => read(outputs, micros));

    /// <summary>As above, with the inputs as built handed to <paramref name="read"/> too (inputs, outputs, microseconds).</summary>
    public T Run<T>(Func<TensorSpec, OrtValue> input, Func<IReadOnlyList<OrtValue>, IReadOnlyList<OrtValue>, long, T> read)
    {
        var values = new List<OrtValue>(Inputs.Count);
        try
        {
            foreach (var spec in Inputs)
                values.Add(input(spec));
            var started = Stopwatch.GetTimestamp();
            using var results = RunAllocating(values);
            return read(values, results, (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds);
        }
        finally
        {
            foreach (var v in values)
                v.Dispose();
        }
    }

    /// <summary>
    /// A tensor from raw little-endian bytes (the local API's binary body), checked against the input's
    /// element type and shape: any fixed-size numeric type the model declares, no conversion.
    /// </summary>
    public static OrtValue FromBytes(TensorSpec spec, long[] shape, string? type, ReadOnlySpan<byte> data)
    {
        if (spec.CheckShape(shape) is { } reason)
            throw new InferenceException(InferenceError.InputMismatch, reason);
        if (type is not null && type != spec.TypeName)
            throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' is {type}, the model expects {spec.TypeName}");
        if (TensorSpec.ElementSize(spec.ElementType) is not { } size)
            throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' is {spec.TypeName}, which a binary body cannot carry");
        var count = TensorSpec.ElementCount(shape);
        if (count * size != data.Length)
            throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' {spec.TypeName}[{string.Join(", ", shape)}] needs {count * size} bytes; the body has {data.Length}");
        if (spec.ElementType == TensorElementType.Float && spec.CheckFinite(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data)) is { } nonFinite)
            throw new InferenceException(InferenceError.InputMismatch, nonFinite);
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, spec.ElementType, shape);
        data.CopyTo(value.GetTensorMutableRawData());
        return value;
    }

    /// <summary>Binds pre-allocated tensors to the model's inputs and outputs, in their order, for <see cref="Run(OrtIoBinding)"/>.</summary>
    internal OrtIoBinding Bind(IReadOnlyList<OrtValue> inputs, IReadOnlyList<OrtValue> outputs)
    {
        var binding = _session.CreateIoBinding();
        for (var i = 0; i < inputs.Count; i++)
            binding.BindInput(InputNames[i], inputs[i]);
        for (var i = 0; i < outputs.Count; i++)
            binding.BindOutput(OutputNames[i], outputs[i]);
        return binding;
    }

    /// <summary>Runs on bound tensors: no managed allocation per call.</summary>
    internal void Run(OrtIoBinding binding)
    {
        try
        {
            _session.RunWithBinding(_runOptions, binding);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InferenceException(InferenceError.RunFailed, $"inference failed: {FirstLine(e.Message)}");
        }
    }

    /// <summary>Runs with outputs allocated by ONNX Runtime (the caller disposes them).</summary>
    internal IDisposableReadOnlyCollection<OrtValue> RunAllocating(IReadOnlyCollection<OrtValue> inputs)
    {
        try
        {
            return _session.Run(_runOptions, InputNames, inputs, OutputNames);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InferenceException(InferenceError.RunFailed, $"inference failed: {FirstLine(e.Message)}");
        }
    }

    private static OrtValue ToOrtValue(TensorSpec spec, JsonTensor tensor)
    {
        if (spec.CheckShape(tensor.Shape) is { } reason)
            throw new InferenceException(InferenceError.InputMismatch, reason);
        var count = TensorSpec.ElementCount(tensor.Shape);
        if (count != tensor.Data.Length)
            throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' has {tensor.Data.Length} values but shape [{string.Join(", ", tensor.Shape)}] needs {count}");
        var declared = tensor.Type ?? spec.TypeName;
        if (declared != spec.TypeName)
            throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' is {declared}, the model expects {spec.TypeName}");
        if (TensorSpec.ElementSize(spec.ElementType) is null)
            throw new InferenceException(InferenceError.InputMismatch,
                $"input '{spec.Name}' is {spec.TypeName}, which JSON input does not support");
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, spec.ElementType, tensor.Shape);
        if (TensorValues.Write(spec.ElementType, tensor.Data, value.GetTensorMutableRawData(), spec.Name) is { } problem)
        {
            value.Dispose();
            throw new InferenceException(InferenceError.InputMismatch, problem);
        }
        return value;
    }

    internal static JsonTensor FromOrtValue(OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        var data = TensorValues.Read(info.ElementDataType, value.GetTensorMutableRawData())
            ?? throw new InferenceException(InferenceError.RunFailed,
                $"output type {TensorSpec.ElementTypeName(info.ElementDataType)} cannot be written as JSON");
        return new JsonTensor { Shape = info.Shape, Type = TensorSpec.ElementTypeName(info.ElementDataType), Data = data };
    }

    private static string FirstLine(string text)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length > 300 ? line[..300] + "…" : line;
    }

    public void Dispose()
    {
        _runOptions.Dispose();
        _session.Dispose();
    }
}
