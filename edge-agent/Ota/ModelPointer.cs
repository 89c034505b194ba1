using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.IO;

namespace EdgeFleet.Agent.Ota;

/// <summary>An installed model file and what it is.</summary>
public sealed record InstalledModel
{
    public required string ModelId { get; init; }

    /// <summary>The manifest version; 0 for the factory model from the configuration.</summary>
    public required long Version { get; init; }

    public required string VersionLabel { get; init; }

    public required string Path { get; init; }

    public string? Sha256 { get; init; }

    /// <summary>What to sketch for drift while it runs (from its manifest, or the configuration for the factory model).</summary>
    public EdgeFleet.Shared.Stats.DriftSpec? Drift { get; init; }
}

/// <summary>The active model and the last known good one before it.</summary>
public sealed record PointerContent
{
    public required InstalledModel Active { get; init; }

    public InstalledModel? Previous { get; init; }
}

/// <summary>
/// <c>{state}/models/current.json</c>: which model the agent serves. Replaced with write-to-temp, fsync,
/// rename, fsync of the directory, so after a crash or power loss it names either the old or the new model,
/// both of whose files are still on disk.
/// </summary>
/// <param name="files">Where the file is (tests pass a power-cut simulator); the operating system's when null.</param>
public sealed class ModelPointer(string path, FileSystem? files = null)
{
    private readonly FileSystem _files = files ?? FileSystem.Os;

    public string FilePath { get; } = path;

    public PointerContent? Read()
    {
        try
        {
            return _files.Exists(FilePath) ? JsonSerializer.Deserialize(_files.ReadAll(FilePath), OtaAgentJsonContext.Default.PointerContent) : null;
        }
        catch (JsonException)
        {
            // Cannot happen through AtomicFile; if the file was edited by hand, fall back to the configured model.
            return null;
        }
    }

    /// <summary>
    /// The models to serve, best first: the pointer's active model, its previous one, then <paramref name="configured"/>
    /// (the factory model). An installed model whose file is missing or is not the file installed (SHA-256: a power
    /// cut, a failing card, a hand edit) is left out and passed to <paramref name="damaged"/>.
    /// </summary>
    public IEnumerable<InstalledModel> BootCandidates(InstalledModel? configured, Action<InstalledModel>? damaged = null)
    {
        var pointer = Read();
        foreach (var candidate in new[] { pointer?.Active, pointer?.Previous, configured })
        {
            if (candidate is null)
                continue;
            if (candidate.Sha256 is { } sha256 && !Intact(candidate.Path, sha256))
            {
                damaged?.Invoke(candidate);
                continue;
            }
            yield return candidate;
        }
    }

    private bool Intact(string path, string sha256)
    {
        if (!_files.Exists(path))
            return false;
        using var stream = _files.OpenRead(path);
        return string.Equals(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream)), sha256, StringComparison.Ordinal);
    }

    public void Write(PointerContent content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
        AtomicFile.Write(_files, FilePath, JsonSerializer.SerializeToUtf8Bytes(content, OtaAgentJsonContext.Default.PointerContent));
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[JsonSerializable(typeof(PointerContent))]
internal sealed partial class OtaAgentJsonContext : JsonSerializerContext;
