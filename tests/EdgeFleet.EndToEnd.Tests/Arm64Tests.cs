using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The linux-arm64 NativeAOT agent (cross-compiled by packaging/publish-agent.sh linux-arm64) under
/// qemu-user: version, signed-manifest verification with the model's health check, and a real run that
/// classifies, buffers and syncs telemetry to a fleet service.
///
/// qemu-user 7.2 hands the program the host's x86 /proc/cpuinfo; ONNX Runtime's CPU detection (cpuinfo)
/// dereferences NULL on it (seen: SIGSEGV right after reading /proc/cpuinfo and the sysfs topology). So each
/// run gets an arm64 /proc/cpuinfo bind-mounted in a private mount namespace (root, as the tests run).
/// </summary>
[Collection("processes")]
public sealed class Arm64Tests(OtaFixture ota) : IClassFixture<OtaFixture>
{
    private static string Agent => Path.Combine(Repo.Root, "artifacts/agent/linux-arm64/edgefleet-agent");

    private const string ArmCpuInfo = """
        processor	: 0
        BogoMIPS	: 108.00
        Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
        CPU implementer	: 0x41
        CPU architecture: 8
        CPU variant	: 0x4
        CPU part	: 0xd0b
        CPU revision	: 1


        """;

    private ChildProcess Start(string name, params string[] args)
    {
        Assert.True(File.Exists(Agent), $"no arm64 agent at {Agent}: run packaging/publish-agent.sh linux-arm64 (scripts/test.sh does)");
        var cpuinfo = Path.Combine(ota.Directory, "cpuinfo-arm64");
        File.WriteAllText(cpuinfo, ArmCpuInfo.Replace("\r", "", StringComparison.Ordinal));
        var command = $"mount --bind {cpuinfo} /proc/cpuinfo && exec qemu-aarch64-static -L / {Agent} " +
            string.Join(' ', args.Select(a => "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'"));
        return ChildProcess.Start(name, "unshare", ["-m", "sh", "-c", command]);
    }

    private (int ExitCode, string Output) Run(params string[] args)
    {
        using var process = Start("arm64", args);
        return (process.WaitForExit(TimeSpan.FromSeconds(120)), process.Output);
    }

    [Fact]
    public void The_binary_is_aarch64_and_reports_its_version()
    {
        var header = File.ReadAllBytes(Agent).AsSpan(0, 20).ToArray();
        Assert.Equal(183, BitConverter.ToUInt16(header, 18)); // e_machine EM_AARCH64
        var (exit, output) = Run("--version");
        Assert.Equal(0, exit);
        Assert.Equal("edgefleet-agent 0.1.0", output.Trim());
    }

    [Fact]
    public void Verifies_a_signed_manifest_with_its_health_check_and_refuses_a_tampered_one()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-arm64-ota-").FullName;
        var manifest = Path.Combine(dir, "m.json");
        var keySet = Path.Combine(dir, "keyset.json");
        File.WriteAllBytes(manifest, ota.Sign(ota.Manifest(ota.Retrained, 2)));
        File.WriteAllBytes(keySet, ota.KeySet);

        var (exit, output) = Run("verify-manifest", "--manifest", manifest, "--keyset", keySet, "--root", ota.Keys.RootPath, "--artifact", ota.Retrained);
        Assert.True(exit == 0, output);
        Assert.StartsWith("ok: vibration-classifier v2", output.Trim(), StringComparison.Ordinal);

        var tampered = JsonNode.Parse(File.ReadAllBytes(manifest))!;
        tampered["signed"]!["version"] = 3;
        File.WriteAllText(manifest, tampered.ToJsonString());
        var (refused, reason) = Run("verify-manifest", "--manifest", manifest, "--keyset", keySet, "--root", ota.Keys.RootPath);
        Assert.NotEqual(0, refused);
        Assert.Contains("signature", reason, StringComparison.OrdinalIgnoreCase);
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task Runs_the_model_buffers_and_syncs_telemetry_to_the_fleet_over_mqtt()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-arm64-run-").FullName;
        using var fleet = new Fleet(dir);
        var config = Path.Combine(dir, "agent.json");
        File.WriteAllText(config, new JsonObject
        {
            ["deviceId"] = "arm-01",
            ["stateDirectory"] = Path.Combine(dir, "state"),
            ["hardwareProfile"] = "raspberry-pi-5",
            ["broker"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = fleet.BrokerPort },
            ["model"] = new JsonObject { ["name"] = "vibration-classifier", ["version"] = "1.0.0", ["path"] = ota.Factory },
            ["input"] = new JsonObject { ["kind"] = "demoVibration", ["condition"] = "imbalance", ["rateHz"] = 10 },
            ["telemetry"] = new JsonObject { ["maxBatchAgeSeconds"] = 0.5 },
        }.ToJsonString());
        var (enrolled, enrollOutput) = Run("enroll", "--fleet", fleet.Url, "--token", await fleet.EnrollmentToken(), "--config", config);
        Assert.True(enrolled == 0, enrollOutput);
        using (var agent = Start("arm-01", "run", "--config", config))
        {
            var device = await Wait.ForAsync(async () => await fleet.Device("arm-01") is { } d && d["device"]!["telemetryRecords"]!.GetValue<long>() >= 20 ? d : null,
                TimeSpan.FromSeconds(120), () => $"fleet:\n{fleet.Output}\n--- arm64 agent:\n{agent.Output}");
            Assert.Equal("imbalance", device["device"]!["lastInference"]!["label"]!.GetValue<string>());
            Assert.Equal("raspberry-pi-5", device["device"]!["hardwareProfile"]!.GetValue<string>());
        }
        var (exit, output) = Run("buffer", "--config", config);
        Assert.True(exit == 0, output);
        Directory.Delete(dir, recursive: true);
    }
}
