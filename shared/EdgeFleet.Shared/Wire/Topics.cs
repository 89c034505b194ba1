namespace EdgeFleet.Shared.Wire;

/// <summary>The kinds of topic under a device's prefix <c>ef/v1/{device}/</c>.</summary>
public enum TopicKind
{
    Hello,
    Telemetry,
    TelemetryAck,
    StateDesired,
    StateReported,
    OtaStatus,

    /// <summary>A device asks for a range of an artifact (<see cref="ChunkRequest"/>).</summary>
    OtaChunkRequest,

    /// <summary>The fleet's answer to a <see cref="ChunkRequest"/> (<see cref="ChunkFrame"/>, binary).</summary>
    OtaChunkData,
}

/// <summary>Builds and parses the v1 MQTT topic scheme.</summary>
public static class Topics
{
    public const string Root = "ef/v1/";

    private static readonly (TopicKind Kind, string Suffix, bool FromDevice)[] Table =
    [
        (TopicKind.Hello, "hello", true),
        (TopicKind.Telemetry, "telemetry", true),
        (TopicKind.TelemetryAck, "telemetry/ack", false),
        (TopicKind.StateDesired, "state/desired", false),
        (TopicKind.StateReported, "state/reported", true),
        (TopicKind.OtaStatus, "ota/status", true),
        (TopicKind.OtaChunkRequest, "ota/chunk/get", true),
        (TopicKind.OtaChunkData, "ota/chunk/data", false),
    ];

    public static string For(string deviceId, TopicKind kind) => Root + deviceId + "/" + Suffix(kind);

    public static string DevicePrefix(string deviceId) => Root + deviceId + "/";

    /// <summary>A single-level wildcard filter over every device for one topic kind.</summary>
    public static string AllDevices(TopicKind kind) => Root + "+/" + Suffix(kind);

    /// <summary>True when a device publishes this kind; false when the fleet does.</summary>
    public static bool IsFromDevice(TopicKind kind) => Array.Find(Table, t => t.Kind == kind).FromDevice;

    public static string Suffix(TopicKind kind) => Array.Find(Table, t => t.Kind == kind).Suffix
        ?? throw new ArgumentOutOfRangeException(nameof(kind));

    /// <summary>Parses <c>ef/v1/{device}/{suffix}</c>; false for anything outside the scheme.</summary>
    public static bool TryParse(string topic, out string deviceId, out TopicKind kind)
    {
        deviceId = "";
        kind = default;
        if (!topic.StartsWith(Root, StringComparison.Ordinal))
            return false;
        var rest = topic.AsSpan(Root.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0)
            return false;
        var id = rest[..slash].ToString();
        var suffix = rest[(slash + 1)..];
        if (!DeviceId.IsValid(id))
            return false;
        foreach (var entry in Table)
        {
            if (suffix.SequenceEqual(entry.Suffix))
            {
                deviceId = id;
                kind = entry.Kind;
                return true;
            }
        }
        return false;
    }
}
