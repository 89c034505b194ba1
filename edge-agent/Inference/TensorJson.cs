using System.Text.Json.Serialization;

namespace EdgeFleet.Agent.Inference;

/// <summary>A tensor as JSON: a shape, an element type and the values in row-major order.</summary>
public sealed record JsonTensor
{
    public required long[] Shape { get; init; }

    /// <summary>The element type (float32 by default): any fixed-size numeric type, or bool.</summary>
    public string? Type { get; init; }

    public required double[] Data { get; init; }
}

/// <summary>The <c>infer --input</c> file: named input tensors.</summary>
public sealed record InferRequest
{
    public required Dictionary<string, JsonTensor> Inputs { get; init; }
}

public sealed record InferResponse
{
    public required string Model { get; init; }

    public required Dictionary<string, JsonTensor> Outputs { get; init; }

    public required long LatencyMicros { get; init; }
}

public sealed record InferError
{
    public required string Error { get; init; }

    public required string Reason { get; init; }
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, RespectNullableAnnotations = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(InferRequest))]
[JsonSerializable(typeof(InferResponse))]
[JsonSerializable(typeof(InferError))]
internal sealed partial class InferenceJsonContext : JsonSerializerContext;
