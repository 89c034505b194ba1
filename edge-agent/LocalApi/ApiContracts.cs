using System.Text.Json.Serialization;
using EdgeFleet.Agent.Inference;

namespace EdgeFleet.Agent.LocalApi;

/// <summary>The answer to <c>POST /v1/models/{name}/infer</c> with a JSON result.</summary>
public sealed record ApiInferResponse
{
    public required string Model { get; init; }

    public required string Version { get; init; }

    /// <summary>True when the active model failed and the fallback (the previous version) answered.</summary>
    public required bool FellBack { get; init; }

    public required long LatencyMicros { get; init; }

    public required Dictionary<string, JsonTensor> Outputs { get; init; }
}

/// <summary><c>GET /v1/models</c>: what is loaded.</summary>
public sealed record ApiModelList
{
    public required List<ApiModel> Models { get; init; }
}

public sealed record ApiModel
{
    public required string Name { get; init; }

    public required string Version { get; init; }

    public string? Sha256 { get; init; }

    /// <summary>active, or fallback (the model the active one replaced, kept to answer when it fails).</summary>
    public required string Role { get; init; }

    /// <summary>closed, open or half-open: whether requests go to the active model or its fallback.</summary>
    public required string Breaker { get; init; }

    /// <summary>The execution providers the session runs on, in priority order.</summary>
    public required List<string> ExecutionProviders { get; init; }

    /// <summary>Providers the hardware profile asked for that could not be used, with the reason.</summary>
    public required List<ApiProviderFallback> ProviderFallbacks { get; init; }

    public required List<ApiTensor> Inputs { get; init; }

    public required List<ApiTensor> Outputs { get; init; }
}

public sealed record ApiProviderFallback(string Provider, string Reason);

/// <summary>A model input or output: element type and shape (-1 in <see cref="Dims"/> for a symbolic dimension).</summary>
public sealed record ApiTensor
{
    public required string Name { get; init; }

    public required string Type { get; init; }

    /// <summary>The shape as text with symbolic dimensions named, e.g. <c>[batch, 3, 48, 192]</c>.</summary>
    public required string Shape { get; init; }

    public required long[] Dims { get; init; }

    public static ApiTensor From(TensorSpec spec) => new() { Name = spec.Name, Type = spec.TypeName, Shape = spec.ShapeText, Dims = spec.Dims };
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, RespectNullableAnnotations = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(InferRequest))]
[JsonSerializable(typeof(ApiInferResponse))]
[JsonSerializable(typeof(ApiModelList))]
[JsonSerializable(typeof(InferError))]
public sealed partial class LocalApiJsonContext : JsonSerializerContext;
