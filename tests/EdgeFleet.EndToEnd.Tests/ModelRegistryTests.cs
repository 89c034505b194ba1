using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>The ML engineer's path through the CLI and the fleet: quantize, validate, register, push, approve; and the refusals.</summary>
[Collection("processes")]
public sealed class ModelRegistryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-registry-").FullName;
    private readonly Fleet _fleet;

    public ModelRegistryTests() => _fleet = new Fleet(Path.Combine(_dir, "fleet"));

    private string P(string name) => Path.Combine(_dir, name);

    private static readonly HashSet<string> LocalCommands = ["demo", "samples", "quantize", "validate"];

    private string Cli(int expectedExit, params string[] args)
    {
        string[] fleet = LocalCommands.Contains(args[1]) ? [] : ["--fleet", _fleet.Url];
        using var cli = ChildProcess.Start("cli", "dotnet", [Repo.CliDll, .. args, .. fleet], environment: new Dictionary<string, string> { ["EDGEFLEET_API_KEY"] = _fleet.AdminKey });
        Assert.True(cli.WaitForExit(TimeSpan.FromSeconds(120)) == expectedExit, cli.Output);
        return cli.Output;
    }

    private async Task<(HttpStatusCode Status, JsonNode? Body)> SendAsync(HttpMethod method, string path, JsonNode? body = null, string? apiKey = null)
    {
        using var response = await _fleet.Send(method, path, body, apiKey);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }

    private void WriteCard(string path, string owner = "vibration-ml") => File.WriteAllText(path, new JsonObject
    {
        ["owner"] = owner,
        ["intendedUse"] = "classify pump vibration as normal, imbalance or bearing wear",
        ["limitations"] = "trained on simulated sensors",
        ["trainingDataSha256"] = new string('0', 64),
        ["metrics"] = new JsonObject { ["holdoutAccuracy"] = 0.97 },
        ["labels"] = new JsonArray("normal", "imbalance", "bearing-wear"),
        ["featureBaselines"] = new JsonArray(new JsonObject { ["name"] = "rms", ["edges"] = new JsonArray(0, 0.5, 1, 2), ["counts"] = new JsonArray(10, 70, 20) }),
        ["thresholds"] = new JsonObject { ["minTop1Agreement"] = 0.98, ["maxLatencyRatio"] = null },
    }.ToJsonString());

    [Fact]
    public async Task A_quantized_and_validated_version_is_pushed_approved_and_audited()
    {
        Cli(0, "model", "demo", "--out", P("fp32.onnx"));
        Cli(0, "model", "samples", "--kind", "demo", "--count", "200", "--out", P("samples"));
        Cli(0, "model", "quantize", "--model", P("fp32.onnx"), "--mode", "dynamic", "--out", P("int8.onnx"));
        WriteCard(P("card.json"));
        var validate = Cli(0, "model", "validate", "--reference", P("fp32.onnx"), "--candidate", P("int8.onnx"), "--data", P("samples"),
            "--labels", P("samples/labels.txt"), "--card", P("card.json"), "--report-out", P("report.json"));
        Assert.Contains("verdict: accepted", validate, StringComparison.Ordinal);
        Assert.DoesNotContain("latencyRatio", validate, StringComparison.Ordinal);

        Cli(0, "model", "register", "--id", "vibration", "--description", "pump vibration classifier", "--owner", "vibration-ml");
        var pushed = JsonNode.Parse(Cli(0, "model", "push", "--model-id", "vibration", "--card", P("card.json"), "--fp32", P("fp32.onnx"), "--int8", P("int8.onnx"),
            "--report", P("report.json"), "--json"))!;
        Assert.Equal(1, pushed["version"]!.GetValue<long>());
        Assert.Equal("validated", pushed["state"]!.GetValue<string>());
        // The CLI filled the interface from the model file.
        Assert.Equal("features", pushed["card"]!["inputs"]![0]!["name"]!.GetValue<string>());

        var int8Sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(P("int8.onnx"))));
        Assert.Contains(pushed["artifacts"]!.AsArray(), a => a!["kind"]!.GetValue<string>() == "int8" && a["sha256"]!.GetValue<string>() == int8Sha);
        using (var artifact = await _fleet.Get($"/api/artifacts/{int8Sha}"))
            Assert.Equal(File.ReadAllBytes(P("int8.onnx")), await artifact.Content.ReadAsByteArrayAsync());

        Assert.Contains("is now approved", Cli(0, "model", "approve", "--model-id", "vibration", "--model-version", "1", "--reason", "canary ok"), StringComparison.Ordinal);
        var version = (await SendAsync(HttpMethod.Get, "/api/models/vibration/versions/1")).Body!;
        Assert.Equal(["draft", "validated", "approved"], version["history"]!.AsArray().Select(h => h!["to"]!.GetValue<string>()));
        Assert.Equal("accepted", version["validations"]![0]!["verdict"]!.GetValue<string>());
        var audit = (await SendAsync(HttpMethod.Get, "/api/audit?target=vibration@1")).Body!.AsArray().Select(a => a!["action"]!.GetValue<string>()).ToList();
        Assert.Contains("model.version.push", audit);
        Assert.Contains("model.version.approved", audit);
        Assert.Contains("vibration", Cli(0, "model", "list"), StringComparison.Ordinal);
        // This fleet has no signing keys: an approved version still cannot be rolled out, and it says why.
        var (rolloutStatus, rolloutBody) = await SendAsync(HttpMethod.Post, "/api/rollouts", new JsonObject
        {
            ["modelId"] = "vibration",
            ["version"] = 1,
            ["target"] = new JsonObject { ["selector"] = "site=x" },
            ["phases"] = new JsonArray(new JsonObject { ["percent"] = 100 }),
        });
        Assert.Equal(HttpStatusCode.Conflict, rolloutStatus);
        Assert.Equal("NoSigningKeys", rolloutBody!["error"]!.GetValue<string>());

        // Versions only grow; the next push gets v2 by default and an explicit v1 is refused.
        Assert.Contains("not above the latest", Cli(1, "model", "push", "--model-id", "vibration", "--model-version", "1", "--card", P("card.json"), "--fp32", P("fp32.onnx")), StringComparison.Ordinal);
        Assert.Equal(2, JsonNode.Parse(Cli(0, "model", "push", "--model-id", "vibration", "--card", P("card.json"), "--fp32", P("fp32.onnx"), "--json"))!["version"]!.GetValue<long>());
        // A draft cannot be approved; a retired version is final.
        Assert.Contains("attach an accepted validation report", Cli(1, "model", "approve", "--model-id", "vibration", "--model-version", "2"), StringComparison.Ordinal);
        Cli(0, "model", "retire", "--model-id", "vibration", "--model-version", "1", "--reason", "superseded");
        Assert.Contains("final", Cli(1, "model", "approve", "--model-id", "vibration", "--model-version", "1"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_gate_rejection_rejects_the_version_and_bad_requests_are_refused()
    {
        Cli(0, "model", "demo", "--out", P("fp32.onnx"));
        Cli(0, "model", "samples", "--kind", "demo", "--count", "50", "--out", P("samples"));
        // --size shapes the detector's samples only; elsewhere it is refused rather than ignored.
        Assert.Contains("--size applies to --kind ocr-det only",
            Cli(2, "model", "samples", "--kind", "demo", "--count", "1", "--size", "320", "--out", P("sized")), StringComparison.Ordinal);
        Assert.Contains("multiple of 32", Cli(2, "model", "samples", "--kind", "ocr-det", "--count", "1", "--size", "100", "--out", P("sized")),
            StringComparison.Ordinal);
        Assert.Contains("--channel-multiple is 1 (no padding) or more",
            Cli(2, "model", "quantize", "--model", P("fp32.onnx"), "--data", P("samples"), "--out", P("int8.onnx"), "--channel-multiple", "0"), StringComparison.Ordinal);
        Cli(0, "model", "quantize", "--model", P("fp32.onnx"), "--data", P("samples"), "--out", P("int8.onnx"), "--channel-multiple", "8");
        var strict = Cli(3, "model", "validate", "--reference", P("fp32.onnx"), "--candidate", P("int8.onnx"), "--data", P("samples"),
            "--max-relative-error", "0", "--report-out", P("report.json"));
        Assert.Contains("FAIL  relativeMeanError", strict, StringComparison.Ordinal);
        // Three probabilities per sample: too few values for a cosine to mean anything, so there is none.
        Assert.DoesNotContain("cosine", strict, StringComparison.Ordinal);
        Assert.Contains("reference itself, inputs ±½ 8-bit step: agreement", strict, StringComparison.Ordinal);
        WriteCard(P("card.json"));
        Cli(0, "model", "register", "--id", "vibration");
        var pushed = JsonNode.Parse(Cli(0, "model", "push", "--model-id", "vibration", "--card", P("card.json"), "--int8", P("int8.onnx"), "--report", P("report.json"), "--json"))!;
        Assert.Equal("rejected", pushed["state"]!.GetValue<string>());

        // A report about some other file, a card without an owner, an unknown model, a non-multipart body.
        Cli(0, "model", "quantize", "--model", P("fp32.onnx"), "--mode", "dynamic", "--out", P("other.onnx"));
        // A model ONNX Runtime cannot load (a tensor read that nothing makes) is refused in one sentence, and nothing is written.
        var dangling = EdgeFleet.ModelTools.Onnx.OnnxModel.Load(P("fp32.onnx"));
        dangling.Graph.Node[0].Output[0] += "_renamed";
        dangling.Save(P("dangling.onnx"));
        var refused = Cli(1, "model", "quantize", "--model", P("dangling.onnx"), "--mode", "dynamic", "--out", P("broken.onnx"));
        Assert.Contains("ONNX Runtime cannot load the model", refused, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", refused, StringComparison.Ordinal);
        Assert.False(File.Exists(P("broken.onnx")));
        Assert.Contains("not a file of this version", Cli(1, "model", "push", "--model-id", "vibration", "--card", P("card.json"), "--int8", P("other.onnx"), "--report", P("report.json")), StringComparison.Ordinal);
        WriteCard(P("bad-card.json"), owner: "");
        Assert.Contains("needs an owner", Cli(1, "model", "push", "--model-id", "vibration", "--card", P("bad-card.json"), "--int8", P("int8.onnx")), StringComparison.Ordinal);
        Assert.Contains("no model nothing", Cli(1, "model", "push", "--model-id", "nothing", "--card", P("card.json"), "--int8", P("int8.onnx")), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Post, "/api/models/vibration/versions", new JsonObject { ["card"] = "x" })).Status);

        // Rejecting needs a reason; a viewer may read the registry but not change it; strangers get nothing.
        Assert.Equal("ReasonRequired", (await SendAsync(HttpMethod.Post, "/api/models/vibration/versions/1/reject", new JsonObject())).Body!["error"]!.GetValue<string>());
        var viewer = (await SendAsync(HttpMethod.Post, "/api/api-keys", new JsonObject { ["name"] = "dashboard", ["role"] = "viewer" })).Body!["key"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/api/models", apiKey: viewer)).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/api/models", new JsonObject { ["id"] = "mine" }, apiKey: viewer)).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/api/models/vibration/versions/1/retire", new JsonObject(), apiKey: viewer)).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/api/models", apiKey: "")).Status);
        Assert.Equal("InvalidModelId", (await SendAsync(HttpMethod.Post, "/api/models", new JsonObject { ["id"] = "Not Valid!" })).Body!["error"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.Conflict, (await SendAsync(HttpMethod.Post, "/api/models", new JsonObject { ["id"] = "vibration" })).Status);
    }

    public void Dispose()
    {
        _fleet.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
