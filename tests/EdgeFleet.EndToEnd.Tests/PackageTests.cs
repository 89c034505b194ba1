using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The agent's .deb: built by packaging/deb/build-deb.sh from the NativeAOT publish, checked by lintian and
/// by its contents, then installed, upgraded, removed and purged in a scratch root with dpkg
/// (<c>--root --force-script-chrootless</c>: the maintainer scripts run against the scratch root via DPKG_ROOT).
/// </summary>
[Collection("processes")]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class PackageTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("edgefleet-dpkg-root-").FullName;

    private static string Build(string version, string rid = "linux-x64")
    {
        var agent = Path.Combine(Repo.Root, "artifacts/agent", rid, "edgefleet-agent");
        Assert.True(File.Exists(agent), $"no NativeAOT agent at {agent}: run packaging/publish-agent.sh {rid} (scripts/test.sh does)");
        var (exit, output) = Run(Path.Combine(Repo.Root, "packaging/deb/build-deb.sh"), rid, version);
        Assert.True(exit == 0, output);
        return output.Trim().Split('\n')[^1];
    }

    [Fact]
    public void The_package_holds_the_binary_its_libraries_the_unit_and_a_conffile_and_lintian_finds_nothing()
    {
        var deb = Build("0.1.0");
        var (_, contents) = Run("dpkg-deb", "--contents", deb);
        Assert.Matches(@"-rwxr-xr-x root/root\s+\d+ .* \./usr/lib/edgefleet-agent/edgefleet-agent\n", contents);
        Assert.Matches(@"-rw-r--r-- root/root\s+\d+ .* \./usr/lib/edgefleet-agent/libonnxruntime\.so\n", contents);
        Assert.Contains("./usr/bin/edgefleet-agent -> ../lib/edgefleet-agent/edgefleet-agent", contents, StringComparison.Ordinal);
        Assert.Contains("./lib/systemd/system/edgefleet-agent.service", contents, StringComparison.Ordinal);
        Assert.Contains("./usr/lib/sysusers.d/edgefleet-agent.conf", contents, StringComparison.Ordinal);
        Assert.Contains("./etc/edgefleet/agent.json", contents, StringComparison.Ordinal);
        Assert.Matches(@"-rw-r--r-- root/root\s+\d+ .* \./usr/share/edgefleet/hardware-profiles/jetson-orin-nano\.json\n", contents);
        Assert.Contains("./usr/share/edgefleet/hardware-profiles/schema.json", contents, StringComparison.Ordinal);
        Assert.DoesNotContain(".dll", contents, StringComparison.Ordinal); // the ONNX Runtime package's Windows files stay out
        Assert.DoesNotContain(".dbg", contents, StringComparison.Ordinal);
        Assert.Equal("/etc/edgefleet/agent.json", Run("dpkg-deb", "--info", deb, "conffiles").Output.Trim());

        var (lintian, findings) = Run("lintian", "--no-cfg", "--fail-on", "error,warning", deb);
        Assert.True(lintian == 0, findings);
    }

    [Fact]
    public void The_arm64_package_carries_the_arm64_binary_and_is_lintian_clean_too()
    {
        var deb = Build("0.1.0", "linux-arm64");
        Assert.EndsWith("_arm64.deb", deb, StringComparison.Ordinal);
        Assert.Contains("Architecture: arm64", Run("dpkg-deb", "--info", deb).Output, StringComparison.Ordinal);
        var extracted = Path.Combine(_root, "extracted");
        Assert.Equal(0, Run("dpkg-deb", "-x", deb, extracted).ExitCode);
        var header = File.ReadAllBytes(Path.Combine(extracted, "usr/lib/edgefleet-agent/edgefleet-agent")).AsSpan(0, 20).ToArray();
        Assert.Equal(183, BitConverter.ToUInt16(header, 18)); // EM_AARCH64
        var (lintian, findings) = Run("lintian", "--no-cfg", "--fail-on", "error,warning", deb);
        Assert.True(lintian == 0, findings);
    }

    [Fact]
    public void Install_upgrade_remove_and_purge_in_a_scratch_root_keep_and_then_drop_configuration_and_state()
    {
        PrepareRoot();
        var first = Build("0.1.0");
        Dpkg("-i", first);
        Dpkg("-i", first); // installing the same version again changes nothing and fails nothing

        Assert.Contains("edgefleet:x:", File.ReadAllText(Path.Combine(_root, "etc/passwd")), StringComparison.Ordinal);
        var gid = File.ReadAllLines(Path.Combine(_root, "etc/group")).Single(l => l.StartsWith("edgefleet:", StringComparison.Ordinal)).Split(':')[2];
        var config = Path.Combine(_root, "etc/edgefleet/agent.json");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(config));
        Assert.Equal(gid, Run("stat", "-c", "%g", config).Output.Trim());
        var state = Path.Combine(_root, "var/lib/edgefleet");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute,
            File.GetUnixFileMode(state));
        var (exit, version) = Run(Path.Combine(_root, "usr/bin/edgefleet-agent"), "--version");
        Assert.Equal(0, exit);
        Assert.Equal("edgefleet-agent 0.1.0", version.Trim());

        // An upgrade keeps the operator's configuration and the agent's state.
        File.WriteAllText(config, """{ "broker": { "host": "fleet.example" } }""");
        File.WriteAllText(Path.Combine(state, "telemetry.db"), "buffered");
        Dpkg("-i", Build("0.1.1"));
        Assert.Contains("fleet.example", File.ReadAllText(config), StringComparison.Ordinal);
        Assert.Equal("buffered", File.ReadAllText(Path.Combine(state, "telemetry.db")));
        Assert.Contains("Version: 0.1.1", Run("dpkg", $"--root={_root}", "-s", "edgefleet-agent").Output, StringComparison.Ordinal);

        // Remove takes the program and keeps configuration and state; purge takes those too.
        Dpkg("-r", "edgefleet-agent");
        Assert.False(File.Exists(Path.Combine(_root, "usr/lib/edgefleet-agent/edgefleet-agent")));
        Assert.True(File.Exists(config));
        Assert.True(File.Exists(Path.Combine(state, "telemetry.db")));
        Dpkg("-P", "edgefleet-agent");
        Assert.False(Directory.Exists(Path.Combine(_root, "etc/edgefleet")));
        Assert.False(Directory.Exists(state));
    }

    /// <summary>A root with an empty dpkg database and the account files that systemd-sysusers edits.</summary>
    private void PrepareRoot()
    {
        Directory.CreateDirectory(Path.Combine(_root, "var/lib/dpkg/info"));
        Directory.CreateDirectory(Path.Combine(_root, "var/lib/dpkg/updates"));
        File.WriteAllText(Path.Combine(_root, "var/lib/dpkg/status"), "");
        File.WriteAllText(Path.Combine(_root, "var/lib/dpkg/available"), "");
        Directory.CreateDirectory(Path.Combine(_root, "etc"));
        File.WriteAllText(Path.Combine(_root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
        File.WriteAllText(Path.Combine(_root, "etc/group"), "root:x:0:\n");
        File.WriteAllText(Path.Combine(_root, "etc/shadow"), "root:*:19000:0:99999:7:::\n");
        File.WriteAllText(Path.Combine(_root, "etc/gshadow"), "root:*::\n");
    }

    private void Dpkg(params string[] args)
    {
        // The scratch root has no libc6 or systemd packages registered; the host provides them.
        var (exit, output) = Run("dpkg", [$"--root={_root}", "--force-script-chrootless", "--force-depends", .. args]);
        Assert.True(exit == 0, $"dpkg {string.Join(' ', args)}:\n{output}");
    }

    private static (int ExitCode, string Output) Run(string command, params string[] args)
    {
        using var process = ChildProcess.Start(Path.GetFileName(command), command, args);
        return (process.WaitForExit(TimeSpan.FromSeconds(120)), process.Output);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
