using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.ModelTools.Quantization;

public sealed class SampleDataException(string message) : Exception(message);

/// <summary>One input tensor of one sample: float32, int64, int32, uint8 or int8 values in row-major order.</summary>
public sealed record SampleTensor(string Name, long[] Shape, Array Data)
{
    public OrtValue ToOrtValue() => Data switch
    {
        float[] f => OrtValue.CreateTensorValueFromMemory(f, Shape),
        long[] l => OrtValue.CreateTensorValueFromMemory(l, Shape),
        int[] i => OrtValue.CreateTensorValueFromMemory(i, Shape),
        byte[] b => OrtValue.CreateTensorValueFromMemory(b, Shape),
        sbyte[] s => OrtValue.CreateTensorValueFromMemory(s, Shape),
        _ => throw new SampleDataException($"input {Name}: unsupported element type {Data.GetType().GetElementType()}"),
    };

    public TensorElementType ElementType => Data switch
    {
        float[] => TensorElementType.Float,
        long[] => TensorElementType.Int64,
        int[] => TensorElementType.Int32,
        byte[] => TensorElementType.UInt8,
        _ => TensorElementType.Int8,
    };
}

/// <summary>
/// A directory of model inputs, one sample per entry, in name order: <c>NAME.npy</c> (for a model with one
/// input), <c>NAME/INPUT.npy</c> (a folder per sample, one file per input), or <c>NAME.json</c> with
/// <c>{"inputs": {"x": {"shape": [...], "type": "float32", "data": [...]}}}</c> (the agent's infer format).
/// Each sample is checked against the model's inputs: names, element types and fixed dimensions.
/// </summary>
public sealed class SampleSet
{
    private SampleSet(string directory, IReadOnlyList<string> entries, IReadOnlyDictionary<string, NodeMetadata> inputs)
    {
        Directory = directory;
        Entries = entries;
        _inputs = inputs;
    }

    private readonly IReadOnlyDictionary<string, NodeMetadata> _inputs;

    public string Directory { get; }

    public IReadOnlyList<string> Entries { get; }

    public int Count => Entries.Count;

    public static SampleSet Open(string directory, IReadOnlyDictionary<string, NodeMetadata> inputs)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new SampleDataException($"sample directory {directory} does not exist");
        var entries = System.IO.Directory.EnumerateFileSystemEntries(directory)
            .Where(p => System.IO.Directory.Exists(p) || p.EndsWith(".npy", StringComparison.Ordinal) || p.EndsWith(".json", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();
        if (entries.Count == 0)
            throw new SampleDataException($"sample directory {directory} holds no samples (.npy files, .json files or one folder per sample)");
        return new SampleSet(directory, entries, inputs);
    }

    /// <summary>Reads and checks sample <paramref name="index"/>.</summary>
    public IReadOnlyList<SampleTensor> Read(int index)
    {
        var path = Entries[index];
        List<SampleTensor> tensors;
        if (System.IO.Directory.Exists(path))
            tensors = [.. System.IO.Directory.EnumerateFiles(path, "*.npy").Order(StringComparer.Ordinal).Select(f => Npy.Read(f, Path.GetFileNameWithoutExtension(f)))];
        else if (path.EndsWith(".npy", StringComparison.Ordinal))
            tensors = _inputs.Count == 1
                ? [Npy.Read(path, _inputs.Keys.Single())]
                : throw new SampleDataException($"{path}: the model has {_inputs.Count} inputs; use a folder per sample with one .npy per input");
        else
            tensors = ReadJson(path);
        Check(path, tensors);
        return tensors;
    }

    private void Check(string path, List<SampleTensor> tensors)
    {
        foreach (var (name, meta) in _inputs)
        {
            var tensor = tensors.FirstOrDefault(t => t.Name == name)
                ?? throw new SampleDataException($"{path}: no value for model input '{name}' (has: {string.Join(", ", tensors.Select(t => t.Name))})");
            if (tensor.ElementType != meta.ElementDataType)
                throw new SampleDataException($"{path}: input '{name}' is {tensor.ElementType}, the model wants {meta.ElementDataType}");
            var dims = meta.Dimensions;
            if (tensor.Shape.Length != dims.Length || dims.Where((d, i) => d >= 0 && d != tensor.Shape[i]).Any())
                throw new SampleDataException($"{path}: input '{name}' has shape [{string.Join(',', tensor.Shape)}], the model wants [{string.Join(',', dims.Select(d => d < 0 ? "?" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)))}]");
            if (tensor.Shape.Aggregate(1L, (a, b) => a * b) != tensor.Data.Length)
                throw new SampleDataException($"{path}: input '{name}' has {tensor.Data.Length} values for shape [{string.Join(',', tensor.Shape)}]");
        }
        foreach (var extra in tensors.Where(t => !_inputs.ContainsKey(t.Name)))
            throw new SampleDataException($"{path}: '{extra.Name}' is not an input of the model (inputs: {string.Join(", ", _inputs.Keys)})");
    }

    private static List<SampleTensor> ReadJson(string path)
    {
        SampleFile? file;
        try
        {
            file = JsonSerializer.Deserialize(File.ReadAllBytes(path), SampleJsonContext.Default.SampleFile);
        }
        catch (JsonException e)
        {
            throw new SampleDataException($"{path}: {e.Message}");
        }
        if (file?.Inputs is not { Count: > 0 } inputs)
            throw new SampleDataException($"{path}: no \"inputs\"");
        return [.. inputs.Select(kv => new SampleTensor(kv.Key, kv.Value.Shape, (kv.Value.Type ?? "float32") switch
        {
            "float32" => Array.ConvertAll(kv.Value.Data, v => (float)v),
            "int64" => Array.ConvertAll(kv.Value.Data, v => (long)v),
            "int32" => Array.ConvertAll(kv.Value.Data, v => (int)v),
            var t => throw new SampleDataException($"{path}: input '{kv.Key}' has type {t} (float32, int64 or int32)"),
        }))];
    }
}

public sealed record SampleFileTensor(long[] Shape, string? Type, double[] Data);

public sealed record SampleFile(Dictionary<string, SampleFileTensor> Inputs);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, RespectNullableAnnotations = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(SampleFile))]
internal sealed partial class SampleJsonContext : JsonSerializerContext;
