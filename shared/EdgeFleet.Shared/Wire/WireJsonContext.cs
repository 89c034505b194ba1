using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Wire;

/// <summary>Source-generated serializers for every wire message (no reflection: the agent is NativeAOT).</summary>
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    MaxDepth = 16)]
[JsonSerializable(typeof(HelloMessage))]
[JsonSerializable(typeof(ReportedState))]
[JsonSerializable(typeof(TelemetryBatch))]
[JsonSerializable(typeof(TelemetryAck))]
[JsonSerializable(typeof(TelemetryRecord))]
[JsonSerializable(typeof(List<TelemetryRecord>))]
[JsonSerializable(typeof(DesiredState))]
[JsonSerializable(typeof(OtaStatusMessage))]
[JsonSerializable(typeof(ChunkRequest))]
public sealed partial class WireJsonContext : JsonSerializerContext;
