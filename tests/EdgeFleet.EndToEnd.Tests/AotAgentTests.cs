using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The NativeAOT agent binary as shipped: scripts/test.sh publishes it (packaging/publish-agent.sh) before
/// the tests run. These tests fail, rather than skip, when it is missing.
/// </summary>
[Collection("processes")]
public class AotAgentTests(DemoModel model) : IClassFixture<DemoModel>
{
    private static string Binary
    {
        get
        {
            Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
            return Repo.AotAgent;
        }
    }

    private static (int Code, string Out) Run(params string[] args)
    {
        using var process = ChildProcess.Start("aot", Binary, args);
        var code = process.WaitForExit(TimeSpan.FromSeconds(30));
        return (code, process.Output);
    }

    [Fact]
    public void Prints_its_version()
    {
        var (code, output) = Run("--version");
        Assert.Equal(0, code);
        Assert.StartsWith("edgefleet-agent 0.1.0", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Runs_infer_on_the_demo_model()
    {
        var input = Path.Combine(model.Directory, "input.json");
        File.WriteAllText(input, """{"inputs":{"features":{"shape":[1,8],"data":[0.8,1.3,1.6,1.5,0.6,0.001,0.001,0.05]}}}""");
        var (code, output) = Run("infer", "--model", model.Path, "--input", input);
        Assert.Equal(0, code);
        Assert.Contains("\"probabilities\":{\"shape\":[1,3]", output, StringComparison.Ordinal);
        var bad = Path.Combine(model.Directory, "bad.json");
        File.WriteAllText(bad, """{"inputs":{"features":{"shape":[1,3],"data":[1,2,3]}}}""");
        var (badCode, badOutput) = Run("infer", "--model", model.Path, "--input", bad);
        Assert.Equal(1, badCode);
        Assert.Contains("error: InputMismatch", badOutput, StringComparison.Ordinal);
        // Overflowing dimensions: a one-line refusal, exit 1, never an unhandled exception (exit 134).
        var huge = Path.Combine(model.Directory, "huge.json");
        File.WriteAllText(huge, """{"inputs":{"features":{"shape":[2305843009213693953,8],"data":[1]}}}""");
        var (hugeCode, hugeOutput) = Run("infer", "--model", model.Path, "--input", huge);
        Assert.Equal(1, hugeCode);
        Assert.Contains("more than 2147483647 elements", hugeOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", hugeOutput, StringComparison.Ordinal);
    }

    [Fact]
    public void Infers_and_benchmarks_a_model_whose_input_is_int64_token_ids()
    {
        // An embedding lookup on int64 ids. Before, bench refused any input but float32.
        var path = Path.Combine(model.Directory, "ids.onnx");
        EdgeFleet.Tests.Common.TokenIdsModel.Write(path);
        var input = Path.Combine(model.Directory, "ids.json");
        File.WriteAllText(input, """{"inputs":{"ids":{"shape":[1,4],"type":"int64","data":[2,0,1,2]}}}""");
        var (code, output) = Run("infer", "--model", path, "--input", input);
        Assert.True(code == 0, output);
        Assert.Contains("\"data\":[1,3,0.5,-1,2,0.25,1,3]", output, StringComparison.Ordinal);
        File.WriteAllText(input, """{"inputs":{"ids":{"shape":[1,4],"type":"int64","data":[2,0.5,1,2]}}}""");
        var (badCode, bad) = Run("infer", "--model", path, "--input", input);
        Assert.Equal(1, badCode);
        Assert.Contains("element 1 is 0.5, not a whole number", bad, StringComparison.Ordinal);
        var (benchCode, bench) = Run("bench", "--model", path, "--runs", "20", "--warmup", "2", "--json");
        Assert.True(benchCode == 0, bench);
        Assert.Contains("\"inputShapes\":{\"ids\":[1,4]}", bench, StringComparison.Ordinal);
    }

    [Fact]
    public void Detects_its_hardware_profile_and_falls_back_to_the_cpu_with_reasons()
    {
        var profiles = Path.Combine(Repo.Root, "hardware-profiles");
        var (code, output) = Run("profile", "detect", "--profiles", profiles, "--json");
        Assert.Equal(0, code);
        var report = System.Text.Json.Nodes.JsonNode.Parse(output)!;
        Assert.Equal("x86_64", report["architecture"]!.GetValue<string>());
        Assert.StartsWith("x86-64-", report["best"]!.GetValue<string>(), StringComparison.Ordinal);

        var (showCode, show) = Run("profile", "show", "--name", "jetson-orin-nano", "--model", model.Path, "--profiles", profiles);
        Assert.Equal(0, showCode);
        Assert.Contains("runs on CPU", show, StringComparison.Ordinal);
        Assert.Contains("CUDA not used: [ErrorCode:Fail] CUDA execution provider is not enabled in this build", show, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Runs_as_a_device_against_the_fleet()
    {
        _ = Binary;
        var dir = Directory.CreateTempSubdirectory("edgefleet-aot-").FullName;
        using var fleet = new Fleet(dir);
        using var agent = new Agent(dir, "aot-device", fleet, model.Path, "imbalance", aot: true);
        var device = await Wait.ForAsync(async () =>
        {
            var d = await fleet.Device("aot-device");
            return d?["device"]?["telemetryRecords"]?.GetValue<long>() >= 20 ? d : null;
        }, TimeSpan.FromSeconds(60), () => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}");
        Assert.Equal("imbalance", device["device"]!["lastInference"]!["label"]!.GetValue<string>());

        // The binary carries its fixed first-generation budget (4 MB, a runtime option compiled in): it collects
        // within seconds of starting, where the CPU-sized default on a large-cache server waits for minutes
        // while the resident set climbs. /metrics reports the collections and the resident set.
        using var http = EdgeFleet.TestServers.UnixHttp.Client(Path.Combine(agent.StateDirectory, "api.sock"));
        var metrics = await Wait.ForAsync(async () =>
        {
            var text = await http.GetStringAsync("/metrics");
            return text.Contains("dotnet_gc_collections_total{generation=\"0\"} 0\n", StringComparison.Ordinal) ? null : text;
        }, TimeSpan.FromSeconds(60), () => $"agent:\n{agent.Output}");
        long Gauge(string name) => long.Parse(metrics.Split('\n').Single(l => l.StartsWith(name + " ", StringComparison.Ordinal)).Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(Gauge("process_resident_memory_bytes"), 10_000_000, 150_000_000);
        // The GC reports its ceiling as max(6 MB, GCgen0size): 6 MB with the compiled-in 4 MB. Without the option
        // it follows the CPU's cache: 80 MB on the 260 MB-L3 machines this suite runs on.
        Assert.InRange(Gauge("dotnet_gc_gen0_budget_bytes"), 4L << 20, 8L << 20);
        Directory.Delete(dir, recursive: true);
    }
}
