using System.Security.Cryptography;
using EdgeFleet.Shared.Ota;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.ModelTools.Signing;

/// <summary>
/// Builds the manifest for one model file: its hash and length per hardware profile, its input/output schema,
/// and a health check whose expected outputs come from running the model on the given sample inputs here,
/// so a device that reproduces them runs the same model correctly.
/// </summary>
public static class ManifestBuilder
{
    public sealed record Request
    {
        public required string ModelPath { get; init; }

        public required string ModelId { get; init; }

        public required long Version { get; init; }

        public required IReadOnlyList<string> Profiles { get; init; }

        /// <summary>Where devices fetch the artifact; <c>{sha256}</c> is replaced by the file's hash.</summary>
        public string UrlTemplate { get; init; } = "/api/artifacts/{sha256}";

        public required IReadOnlyList<Dictionary<string, TensorValue>> Samples { get; init; }

        public double Tolerance { get; init; } = 1e-3;

        public double LatencyBudgetMs { get; init; } = 100;

        public string? RolloutId { get; init; }

        public TimeSpan Lifetime { get; init; } = TimeSpan.FromDays(30);
    }

    public static ModelManifest Build(Request request, KeySetDocument keySet, DateTimeOffset now)
    {
        if (request.Samples.Count == 0)
            throw new ArgumentException("the health check needs at least one sample input");
        var bytes = File.ReadAllBytes(request.ModelPath);
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(bytes, options);
        var samples = request.Samples.Select(inputs => new HealthSample { Inputs = inputs, Expected = Run(session, inputs) }).ToArray();
        var artifact = new ArtifactEntry { Url = request.UrlTemplate.Replace("{sha256}", sha, StringComparison.Ordinal), Length = bytes.Length, Sha256 = sha };
        var manifest = new ModelManifest
        {
            ModelId = request.ModelId,
            Version = request.Version,
            KeySetVersion = keySet.Version,
            RolloutId = request.RolloutId,
            IssuedAt = now,
            Expires = now + request.Lifetime,
            Artifacts = request.Profiles.ToDictionary(p => p, _ => artifact),
            Schema = new ModelSchema
            {
                Inputs = session.InputMetadata.Select(kv => Schema(kv.Key, kv.Value)).ToArray(),
                Outputs = session.OutputMetadata.Select(kv => Schema(kv.Key, kv.Value)).ToArray(),
            },
            HealthCheck = new HealthCheck { Samples = samples, Tolerance = request.Tolerance, LatencyBudgetMs = request.LatencyBudgetMs },
        };
        if (ManifestRules.Check(manifest) is { } problem)
            throw new ArgumentException(problem);
        return manifest;
    }

    /// <summary>
    /// Health-check inputs made up from the model's own input metadata when no sample inputs exist (a rollout
    /// of a registry version): seeded values in [-1, 1] for float inputs, zeros for integer ones; a symbolic
    /// dimension is 1 when it leads (batch) and 32 elsewhere. They check that the device computes what ONNX
    /// Runtime computes here, which is what a health check is for.
    /// </summary>
    public static List<Dictionary<string, TensorValue>> SyntheticSamples(string modelPath, int count = 2, int seed = 1)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(modelPath, options);
        var random = new Random(seed);
        var samples = new List<Dictionary<string, TensorValue>>();
        for (var n = 0; n < count; n++)
        {
            var inputs = new Dictionary<string, TensorValue>();
            foreach (var (name, meta) in session.InputMetadata)
            {
                var shape = meta.Dimensions.Select((d, i) => d > 0 ? (long)d : i == 0 ? 1L : 32L).ToArray();
                var length = shape.Aggregate(1L, (a, b) => a * b);
                var isFloat = meta.ElementDataType == TensorElementType.Float;
                inputs[name] = new TensorValue
                {
                    Shape = shape,
                    Type = TypeName(meta.ElementDataType),
                    Data = [.. Enumerable.Range(0, (int)length).Select(_ => isFloat ? Math.Round(random.NextDouble() * 2 - 1, 4) : 0)],
                };
            }
            samples.Add(inputs);
        }
        return samples;
    }

    public static byte[] Sign(ModelManifest manifest, IEnumerable<SigningKey> keys) =>
        SignedDocuments.Sign(manifest, OtaJsonContext.Default.ModelManifest, keys);

    private static Dictionary<string, TensorValue> Run(InferenceSession session, Dictionary<string, TensorValue> inputs)
    {
        var values = new List<OrtValue>();
        try
        {
            var names = new List<string>();
            foreach (var (name, meta) in session.InputMetadata)
            {
                if (!inputs.TryGetValue(name, out var tensor))
                    throw new ArgumentException($"sample lacks input '{name}'");
                names.Add(name);
                values.Add(meta.ElementDataType switch
                {
                    TensorElementType.Float => OrtValue.CreateTensorValueFromMemory(tensor.Data.Select(d => (float)d).ToArray(), tensor.Shape),
                    TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(tensor.Data.Select(d => (long)d).ToArray(), tensor.Shape),
                    TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(tensor.Data.Select(d => (int)d).ToArray(), tensor.Shape),
                    var other => throw new ArgumentException($"input '{name}' is {other}; health-check samples support float32, int64, int32"),
                });
            }
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, names, values, session.OutputNames);
            var expected = new Dictionary<string, TensorValue>();
            for (var i = 0; i < session.OutputNames.Count; i++)
            {
                var info = results[i].GetTensorTypeAndShape();
                double[] data = info.ElementDataType switch
                {
                    TensorElementType.Float => results[i].GetTensorDataAsSpan<float>().ToArray().Select(f => (double)f).ToArray(),
                    TensorElementType.Int64 => results[i].GetTensorDataAsSpan<long>().ToArray().Select(f => (double)f).ToArray(),
                    TensorElementType.Int32 => results[i].GetTensorDataAsSpan<int>().ToArray().Select(f => (double)f).ToArray(),
                    var other => throw new ArgumentException($"output '{session.OutputNames[i]}' is {other}; health checks support float32, int64, int32"),
                };
                expected[session.OutputNames[i]] = new TensorValue { Shape = info.Shape, Type = TypeName(info.ElementDataType), Data = data };
            }
            return expected;
        }
        finally
        {
            foreach (var v in values)
                v.Dispose();
        }
    }

    private static TensorSchema Schema(string name, NodeMetadata meta) => new()
    {
        Name = name,
        Type = TypeName(meta.ElementDataType),
        Shape = meta.Dimensions.Select(d => (long)d).ToArray(),
    };

    private static string TypeName(TensorElementType type) => TensorTypes.Name((int)type);
}
