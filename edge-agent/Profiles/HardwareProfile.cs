using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeFleet.Agent.Profiles;

/// <summary>An execution provider to try, with its ONNX Runtime provider options.</summary>
public sealed record ExecutionProviderSpec
{
    public required string Name { get; init; }

    public Dictionary<string, string> Options { get; set; } = [];
}

public sealed record ThreadSettings
{
    /// <summary>Intra-op threads; 0 lets ONNX Runtime use one per physical core.</summary>
    public int IntraOp { get; init; }

    public int InterOp { get; init; } = 1;
}

public sealed record TelemetryLimits
{
    public int MaxRecordsPerMinute { get; init; }

    public int MaxBufferMb { get; init; }

    public int DailyUploadMb { get; init; }
}

/// <summary>How <c>profile detect</c> recognises the device class; every listed group must match (any entry of it).</summary>
public sealed record DetectionRules
{
    public required string Architecture { get; init; }

    /// <summary>Among matching profiles the highest wins.</summary>
    public int Priority { get; init; }

    public List<string> DeviceTreeModel { get; set; } = [];

    /// <summary>All of these must be in /proc/cpuinfo's flags (x86) or Features (ARM).</summary>
    public List<string> CpuFlags { get; set; } = [];

    public List<string> DeviceNodes { get; set; } = [];

    public List<string> Libraries { get; set; } = [];
}

/// <summary>
/// One device class (<c>hardware-profiles/*.json</c>, installed under <c>/usr/share/edgefleet/hardware-profiles</c>):
/// execution providers in priority order, threads, memory budget, preferred precision, telemetry limits, and
/// the rules that recognise it. The JSON schema beside the files is the contract; <see cref="Problem"/> checks
/// what the agent relies on.
/// </summary>
public sealed record HardwareProfile
{
    public static readonly IReadOnlySet<string> KnownProviders = new HashSet<string> { "TensorRT", "CUDA", "QNN", "OpenVINO", "XNNPACK", "ACL", "CPU" };

    public required string Name { get; init; }

    public string Description { get; init; } = "";

    public required string RuntimeIdentifier { get; init; }

    public required List<ExecutionProviderSpec> ExecutionProviders { get; init; }

    public ThreadSettings Threads { get; init; } = new();

    public int MemoryBudgetMb { get; init; } = 512;

    /// <summary>INT8, FP16 or FP32: which artifact variant the device prefers.</summary>
    public string Precision { get; init; } = "INT8";

    public TelemetryLimits Telemetry { get; init; } = new();

    public required DetectionRules Detect { get; init; }

    /// <summary>The profile used when none is installed: ONNX Runtime's CPU kernels.</summary>
    public static HardwareProfile CpuOnly(string name) => new()
    {
        Name = name,
        Description = "CPU only (no profile file found)",
        RuntimeIdentifier = Environment.Is64BitProcess && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "linux-arm64" : "linux-x64",
        ExecutionProviders = [new ExecutionProviderSpec { Name = "CPU" }],
        Detect = new DetectionRules { Architecture = "any" },
    };

    public string? Problem()
    {
        if (string.IsNullOrWhiteSpace(Name))
            return "name is missing";
        if (ExecutionProviders.Count == 0)
            return "executionProviders is empty";
        if (ExecutionProviders.FirstOrDefault(e => !KnownProviders.Contains(e.Name)) is { } unknown)
            return $"unknown execution provider '{unknown.Name}' (known: {string.Join(", ", KnownProviders)})";
        if (Threads.IntraOp < 0 || Threads.InterOp < 1)
            return "threads.intraOp must be ≥ 0 and threads.interOp ≥ 1";
        if (Precision is not ("INT8" or "FP16" or "FP32"))
            return $"precision '{Precision}' is not INT8, FP16 or FP32";
        if (MemoryBudgetMb < 32)
            return "memoryBudgetMb must be at least 32";
        return null;
    }
}

public sealed class HardwareProfileException(string message) : Exception(message);

/// <summary>Reads the profile files of a directory.</summary>
public static class HardwareProfiles
{
    public const string DefaultDirectory = "/usr/share/edgefleet/hardware-profiles";

    public static IReadOnlyList<HardwareProfile> LoadAll(string directory)
    {
        if (!Directory.Exists(directory))
            throw new HardwareProfileException($"hardware profile directory {directory} does not exist");
        return [.. Directory.EnumerateFiles(directory, "*.json").Where(f => Path.GetFileName(f) != "schema.json").Order(StringComparer.Ordinal).Select(Load)];
    }

    public static HardwareProfile Load(string path)
    {
        HardwareProfile? profile;
        try
        {
            profile = JsonSerializer.Deserialize(File.ReadAllBytes(path), ProfileJsonContext.Default.HardwareProfile);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new HardwareProfileException($"{path}: {e.Message.ReplaceLineEndings(" ")}");
        }
        if (profile is null)
            throw new HardwareProfileException($"{path}: empty");
        if (profile.Problem() is { } problem)
            throw new HardwareProfileException($"{path}: {problem}");
        if (Path.GetFileNameWithoutExtension(path) != profile.Name)
            throw new HardwareProfileException($"{path}: the file is named differently from its profile '{profile.Name}'");
        return profile;
    }

    /// <summary>The named profile from <paramref name="directory"/>, or the CPU-only profile when its file is absent.</summary>
    public static (HardwareProfile Profile, string? Warning) Resolve(string name, string directory)
    {
        var path = Path.Combine(directory, name + ".json");
        return File.Exists(path)
            ? (Load(path), null)
            : (HardwareProfile.CpuOnly(name), $"no hardware profile file {path}; running on the CPU");
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true,
    RespectNullableAnnotations = true, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(HardwareProfile))]
[JsonSerializable(typeof(DetectionReport))]
[JsonSerializable(typeof(ProviderChoice))]
internal sealed partial class ProfileJsonContext : JsonSerializerContext;
