namespace EdgeFleet.Agent.Profiles;

/// <summary>One profile's verdict: whether the device matches it and the facts that decided.</summary>
public sealed record ProfileMatch(string Profile, bool Matches, int Priority, IReadOnlyList<string> Reasons);

public sealed record DetectionReport(string? Best, string Architecture, string? DeviceTreeModel, IReadOnlyList<ProfileMatch> Profiles);

/// <summary>
/// Names the best hardware profile for this device from what Linux shows: the CPU architecture and flags
/// (<c>/proc/cpuinfo</c>), the board (<c>/proc/device-tree/model</c>), accelerator device nodes under <c>/dev</c>,
/// and the vendor libraries on the loader's paths (looked up as files, not loaded). Everything is read under
/// <see cref="Root"/> so a test can give it a made-up system.
/// </summary>
public sealed class ProfileDetector(string root = "/", string? architecture = null)
{
    private static readonly string[] LibraryDirectories =
    [
        "/lib", "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu/tegra", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib",
        "/opt/qcom/aistack/qnn/lib", "/opt/intel/openvino/runtime/lib/intel64",
    ];

    public string Root { get; } = root;

    public DetectionReport Detect(IReadOnlyList<HardwareProfile> profiles)
    {
        var arch = architecture ?? Architecture();
        var model = Read("/proc/device-tree/model")?.TrimEnd('\0', '\n', ' ');
        var flags = CpuFlags();
        var matches = profiles.Select(p => Match(p, arch, model, flags)).OrderByDescending(m => m.Matches).ThenByDescending(m => m.Priority).ToList();
        return new DetectionReport(matches.FirstOrDefault(m => m.Matches)?.Profile, arch, model, matches);
    }

    private ProfileMatch Match(HardwareProfile profile, string arch, string? model, HashSet<string> flags)
    {
        var rules = profile.Detect;
        var reasons = new List<string>();
        var ok = true;
        void Check(bool passed, string reason)
        {
            ok &= passed;
            reasons.Add((passed ? "+ " : "- ") + reason);
        }
        Check(rules.Architecture == arch, $"architecture {arch}{(rules.Architecture == arch ? "" : $", profile wants {rules.Architecture}")}");
        if (rules.DeviceTreeModel.Count > 0)
        {
            var hit = model is null ? null : rules.DeviceTreeModel.FirstOrDefault(m => model.Contains(m, StringComparison.OrdinalIgnoreCase));
            Check(hit is not null, model is null ? "no /proc/device-tree/model" : hit is not null ? $"board '{model}' is a {hit}" : $"board '{model}' is none of {string.Join(", ", rules.DeviceTreeModel)}");
        }
        if (rules.CpuFlags.Count > 0)
        {
            var missing = rules.CpuFlags.Where(f => !flags.Contains(f)).ToList();
            Check(missing.Count == 0, missing.Count == 0 ? $"CPU has {string.Join(", ", rules.CpuFlags)}" : $"CPU lacks {string.Join(", ", missing)}");
        }
        if (rules.DeviceNodes.Count > 0)
        {
            var node = rules.DeviceNodes.FirstOrDefault(n => File.Exists(Under(n)) || Directory.Exists(Under(n)));
            Check(node is not null, node is not null ? $"{node} exists" : $"none of {string.Join(", ", rules.DeviceNodes)} exists");
        }
        if (rules.Libraries.Count > 0)
        {
            var found = rules.Libraries.Select(FindLibrary).FirstOrDefault(p => p is not null);
            Check(found is not null, found is not null ? $"{Path.GetFileName(found)} found in {Path.GetDirectoryName(found)}" : $"none of {string.Join(", ", rules.Libraries)} on the library paths");
        }
        return new ProfileMatch(profile.Name, ok, rules.Priority, reasons);
    }

    private string Architecture()
    {
        // /proc/cpuinfo names x86 CPUs by "vendor_id" and ARM ones by "CPU implementer"; fall back to the process.
        var info = Read("/proc/cpuinfo") ?? "";
        if (info.Contains("vendor_id", StringComparison.Ordinal))
            return "x86_64";
        if (info.Contains("CPU implementer", StringComparison.Ordinal))
            return "aarch64";
        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "aarch64" : "x86_64";
    }

    private HashSet<string> CpuFlags()
    {
        var flags = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in (Read("/proc/cpuinfo") ?? "").Split('\n'))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
                continue;
            var key = line[..colon].Trim();
            if (key is "flags" or "Features")
                flags.UnionWith(line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        }
        return flags;
    }

    private string? FindLibrary(string name)
    {
        var directories = (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(LibraryDirectories).Concat(LdSoConfDirectories());
        return directories.Select(d => Path.Combine(Under(d), name)).FirstOrDefault(File.Exists);
    }

    private IEnumerable<string> LdSoConfDirectories()
    {
        var confDir = Under("/etc/ld.so.conf.d");
        if (!Directory.Exists(confDir))
            yield break;
        foreach (var file in Directory.EnumerateFiles(confDir, "*.conf"))
            foreach (var line in File.ReadLines(file))
                if (line.StartsWith('/'))
                    yield return line.Trim();
    }

    private string? Read(string path)
    {
        try
        {
            return File.Exists(Under(path)) ? File.ReadAllText(Under(path)) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private string Under(string path) => Root == "/" ? path : Path.Combine(Root, path.TrimStart('/'));
}
