using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeFleet.Shared.Identity;

[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    RespectNullableAnnotations = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    MaxDepth = 8)]
[JsonSerializable(typeof(DeviceTokenClaims))]
[JsonSerializable(typeof(EnrollRequest))]
[JsonSerializable(typeof(EnrollResponse))]
public sealed partial class IdentityJsonContext : JsonSerializerContext;
