using System.Text.Json;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Profiles;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Agent.Cli;

/// <summary>
/// <c>profile detect</c>: which hardware profile fits this device, and why; <c>profile show</c>: a profile's
/// settings and which of its execution providers this build and device can use.
/// </summary>
public static class ProfileCommand
{
    public static int Detect(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("profiles", "root", "json");
        var directory = args.Get("profiles") ?? DefaultDirectory();
        IReadOnlyList<HardwareProfile> profiles;
        try
        {
            profiles = HardwareProfiles.LoadAll(directory);
        }
        catch (HardwareProfileException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        var report = new ProfileDetector(args.Get("root") ?? "/").Detect(profiles);
        if (args.Has("json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(report, ProfileJsonContext.Default.DetectionReport));
        }
        else
        {
            stdout.WriteLine(report.Best is { } best ? $"best profile: {best}" : "no profile matches this device (the agent will run on the CPU)");
            stdout.WriteLine($"architecture {report.Architecture}; board {report.DeviceTreeModel ?? "(no device tree)"}");
            foreach (var match in report.Profiles)
            {
                stdout.WriteLine($"{(match.Matches ? "match   " : "no match")} {match.Profile} (priority {match.Priority})");
                foreach (var reason in match.Reasons)
                    stdout.WriteLine($"           {reason}");
            }
        }
        return report.Best is null ? 3 : 0;
    }

    public static int Show(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("profiles", "name", "model", "json");
        var directory = args.Get("profiles") ?? DefaultDirectory();
        try
        {
            var profile = HardwareProfiles.Load(Path.Combine(directory, args.Require("name") + ".json"));
            if (args.Get("model") is not { } model)
            {
                stdout.WriteLine(JsonSerializer.Serialize(profile, ProfileJsonContext.Default.HardwareProfile));
                return 0;
            }
            // With a model: open it on the profile and say which providers it really got.
            using var session = Inference.ModelSession.Load(model, null, profile);
            if (args.Has("json"))
            {
                stdout.WriteLine(JsonSerializer.Serialize(session.Providers, ProfileJsonContext.Default.ProviderChoice));
            }
            else
            {
                stdout.WriteLine($"{Path.GetFileName(model)} on {profile.Name}: runs on {string.Join(" > ", session.Providers.Providers)}");
                foreach (var f in session.Providers.Fallbacks)
                    stdout.WriteLine($"  {f.Provider} not used: {f.Reason}");
            }
            return 0;
        }
        catch (Exception e) when (e is HardwareProfileException or Inference.InferenceException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    /// <summary>The installed profiles, or those beside the binary in a checkout or an unpacked package.</summary>
    private static string DefaultDirectory()
    {
        if (Directory.Exists(HardwareProfiles.DefaultDirectory))
            return HardwareProfiles.DefaultDirectory;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "hardware-profiles");
            if (Directory.Exists(candidate))
                return candidate;
        }
        return HardwareProfiles.DefaultDirectory;
    }
}
