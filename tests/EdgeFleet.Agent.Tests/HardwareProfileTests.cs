using System.Text.Json.Nodes;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Profiles;
using Json.Schema;

namespace EdgeFleet.Agent.Tests;

public class HardwareProfileTests(DemoModelFixture model) : IClassFixture<DemoModelFixture>
{
    private static string ProfilesDirectory
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (Directory.Exists(Path.Combine(d.FullName, "hardware-profiles")))
                    return Path.Combine(d.FullName, "hardware-profiles");
            throw new InvalidOperationException("hardware-profiles not found");
        }
    }

    // The schema has an $id, which the library's global registry accepts once per process.
    private static readonly Lazy<JsonSchema> Schema = new(() => JsonSchema.FromText(File.ReadAllText(Path.Combine(ProfilesDirectory, "schema.json"))));

    [Fact]
    public void Every_profile_is_valid_against_the_schema_and_loads()
    {
        var schema = Schema.Value;
        var files = Directory.GetFiles(ProfilesDirectory, "*.json").Where(f => !f.EndsWith("schema.json", StringComparison.Ordinal)).ToList();
        foreach (var file in files)
        {
            using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
            var result = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            Assert.True(result.IsValid, $"{Path.GetFileName(file)}: {string.Join("; ", (result.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")))}");
        }
        var names = HardwareProfiles.LoadAll(ProfilesDirectory).Select(p => p.Name).ToHashSet();
        Assert.Superset(new HashSet<string> { "x86-64-generic", "x86-64-avx512-vnni", "jetson-orin-nano", "jetson-agx-orin", "raspberry-pi-5", "rockchip-rk3588", "qualcomm-qcs6490" }, names);
        Assert.Equal("CPU", HardwareProfiles.LoadAll(ProfilesDirectory).Select(p => p.ExecutionProviders[^1].Name).Distinct().Single());
    }

    [Fact]
    public void The_schema_catches_what_a_typo_would_break()
    {
        var schema = Schema.Value;
        var profile = JsonNode.Parse(File.ReadAllText(Path.Combine(ProfilesDirectory, "jetson-orin-nano.json")))!;
        profile["executionProviders"]![0]!["name"] = "TensorRt";
        using (var document = System.Text.Json.JsonDocument.Parse(profile.ToJsonString()))
            Assert.False(schema.Evaluate(document.RootElement).IsValid);
        using var dir = new TempDir();
        File.WriteAllText(dir.File("jetson-orin-nano.json"), profile.ToJsonString());
        Assert.Contains("unknown execution provider 'TensorRt'", Assert.Throws<HardwareProfileException>(() => HardwareProfiles.Load(dir.File("jetson-orin-nano.json"))).Message);
        File.WriteAllText(dir.File("other.json"), File.ReadAllText(Path.Combine(ProfilesDirectory, "x86-64-generic.json")));
        Assert.Contains("named differently", Assert.Throws<HardwareProfileException>(() => HardwareProfiles.Load(dir.File("other.json"))).Message);
        File.WriteAllText(dir.File("broken.json"), "{ \"name\": ");
        Assert.Contains("broken.json", Assert.Throws<HardwareProfileException>(() => HardwareProfiles.Load(dir.File("broken.json"))).Message);
    }

    /// <summary>A made-up system: /proc/cpuinfo, the device-tree model, device nodes and libraries.</summary>
    private static TempDir FakeSystem(string cpuinfo, string? board = null, string[]? nodes = null, string[]? libraries = null)
    {
        var root = new TempDir();
        void Write(string path, string text)
        {
            var full = Path.Combine(root.Path, path.TrimStart('/'));
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, text);
        }
        Write("/proc/cpuinfo", cpuinfo);
        if (board is not null)
            Write("/proc/device-tree/model", board + "\0");
        foreach (var node in nodes ?? [])
            Write(node, "");
        foreach (var library in libraries ?? [])
            Write(library, "");
        return root;
    }

    private const string ArmCpu = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n";

    [Theory]
    [InlineData("NVIDIA Jetson Orin Nano Developer Kit", new[] { "/dev/nvhost-ctrl-gpu", "/usr/local/cuda/lib64/libcudart.so.12" }, "jetson-orin-nano")]
    [InlineData("Jetson AGX Orin Developer Kit", new[] { "/dev/nvgpu/igpu0/ctrl", "/usr/lib/aarch64-linux-gnu/tegra/libcudart.so" }, "jetson-agx-orin")]
    [InlineData("Raspberry Pi 5 Model B Rev 1.0", new string[0], "raspberry-pi-5")]
    [InlineData("Radxa ROCK 5B (RK3588)", new[] { "/dev/rknpu" }, "rockchip-rk3588")]
    [InlineData("Qualcomm Technologies, Inc. QCS6490 IDP", new[] { "/dev/fastrpc-cdsp", "/usr/lib/libQnnHtp.so" }, "qualcomm-qcs6490")]
    [InlineData("Pine64 RockPro64", new string[0], "arm64-generic")]
    [InlineData("NVIDIA Jetson Orin Nano Developer Kit", new string[0], "arm64-generic")]
    public void Arm_boards_are_recognised_from_the_device_tree_device_nodes_and_libraries(string board, string[] files, string expected)
    {
        using var root = FakeSystem(ArmCpu, board, [.. files.Where(f => f.StartsWith("/dev/", StringComparison.Ordinal))], [.. files.Where(f => !f.StartsWith("/dev/", StringComparison.Ordinal))]);
        var report = new ProfileDetector(root.Path).Detect(HardwareProfiles.LoadAll(ProfilesDirectory));
        Assert.Equal("aarch64", report.Architecture);
        Assert.Equal(expected, report.Best);
        Assert.Contains(report.Profiles, p => p.Profile == expected && p.Matches && p.Reasons.All(r => r.StartsWith("+ ", StringComparison.Ordinal)));
    }

    [Fact]
    public void X86_cpus_are_told_apart_by_their_flags_and_the_reasons_say_why()
    {
        using var vnni = FakeSystem("vendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512_vnni amx_int8\n");
        var best = new ProfileDetector(vnni.Path).Detect(HardwareProfiles.LoadAll(ProfilesDirectory));
        Assert.Equal("x86-64-avx512-vnni", best.Best);

        using var plain = FakeSystem("vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 fma\n");
        var report = new ProfileDetector(plain.Path).Detect(HardwareProfiles.LoadAll(ProfilesDirectory));
        Assert.Equal("x86-64-generic", report.Best);
        Assert.Contains("- CPU lacks avx512f, avx512_vnni", report.Profiles.Single(p => p.Profile == "x86-64-avx512-vnni").Reasons);
        Assert.Contains("- architecture x86_64, profile wants aarch64", report.Profiles.Single(p => p.Profile == "jetson-orin-nano").Reasons);
    }

    [Fact]
    public void A_profile_that_asks_for_accelerators_this_machine_lacks_still_serves_on_the_cpu_and_says_why()
    {
        var jetson = HardwareProfiles.Load(Path.Combine(ProfilesDirectory, "jetson-orin-nano.json"));
        var wanting = jetson with
        {
            ExecutionProviders = [.. jetson.ExecutionProviders.Take(2), new ExecutionProviderSpec { Name = "QNN" }, new ExecutionProviderSpec { Name = "XNNPACK" }, new ExecutionProviderSpec { Name = "CPU" }],
        };
        using var accelerated = ModelSession.Load(model.Path, 1, wanting);
        using var cpu = ModelSession.Load(model.Path, 1);
        Assert.Equal(["CPU"], accelerated.Providers.Providers);
        Assert.Equal(["TensorRT", "CUDA", "QNN", "XNNPACK"], accelerated.Providers.Fallbacks.Select(f => f.Provider));
        Assert.All(accelerated.Providers.Fallbacks, f => Assert.Contains("not", f.Reason, StringComparison.Ordinal));

        var input = new Dictionary<string, JsonTensor> { ["features"] = new() { Shape = [1, 8], Data = [0.5, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3] } };
        Assert.Equal(cpu.Run(input).Outputs["probabilities"].Data, accelerated.Run(input).Outputs["probabilities"].Data);
        // Each fallback is reported once per process: a second look finds nothing new.
        ExecutionProviders.FirstSeen(accelerated.Providers.Fallbacks);
        Assert.Empty(ExecutionProviders.FirstSeen(accelerated.Providers.Fallbacks));
    }
}
