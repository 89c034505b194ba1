using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Signing;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Cli;

/// <summary><c>keys init|rotate</c>, <c>model sign|push</c> and <c>devices update</c>: the signing side of OTA.</summary>
public static class OtaCommands
{
    public static int KeysInit(CommandLine args)
    {
        args.AllowOnly("dir", "roots", "root-threshold", "signers", "threshold", "passphrase-file", "json");
        var store = new KeyStore(args.Require("dir"));
        var (root, keySet) = Run(() => store.Init(Options(args), DateTimeOffset.UtcNow));
        Report(args, store, root, keySet, $"created root v{root.Version} ({root.Threshold} of {root.Keys.Count} root keys) and key set v{keySet.Version} ({keySet.Threshold} of {keySet.Keys.Count} signing keys) in {store.Directory}\n" +
            $"pin {store.RootPath} on every device (trust.rootPath in agent.json); move root-keys/ offline");
        return 0;
    }

    public static int KeysRotate(CommandLine args)
    {
        args.AllowOnly("dir", "root", "roots", "root-threshold", "signers", "threshold", "passphrase-file", "json");
        var store = new KeyStore(args.Require("dir"));
        if (args.Has("root"))
        {
            var (root, keySet) = Run(() => store.RotateRoot(Options(args), DateTimeOffset.UtcNow));
            Report(args, store, root, keySet, $"issued root v{root.Version} (signed by the old and the new root keys) and key set v{keySet.Version}");
        }
        else
        {
            var keySet = Run(() => store.RotateKeySet(Options(args), DateTimeOffset.UtcNow));
            Report(args, store, store.CurrentRoot(), keySet, $"issued key set v{keySet.Version}; the previous signing keys are retired");
        }
        return 0;
    }

    public static int ModelSign(CommandLine args)
    {
        args.AllowOnly("model", "model-id", "model-version", "profile", "samples", "keys", "out", "tolerance", "latency-budget-ms",
            "rollout-id", "expires-days", "url", "passphrase-file", "json");
        var store = new KeyStore(args.Require("keys"));
        var request = new ManifestBuilder.Request
        {
            ModelPath = args.Require("model"),
            ModelId = args.Require("model-id"),
            Version = long.TryParse(args.Require("model-version"), CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException("--model-version must be an integer"),
            Profiles = args.Require("profile").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            Samples = ReadSamples(args.Require("samples")),
            Tolerance = Double(args, "tolerance", 1e-3),
            LatencyBudgetMs = Double(args, "latency-budget-ms", 100),
            RolloutId = args.Get("rollout-id"),
            Lifetime = TimeSpan.FromDays(Double(args, "expires-days", 30)),
            UrlTemplate = args.Get("url") ?? "/api/artifacts/{sha256}",
        };
        var output = args.Require("out");
        var manifest = Run(() => ManifestBuilder.Build(request, store.CurrentKeySet(), DateTimeOffset.UtcNow));
        var signers = Run(() => store.LoadSigners(Passphrase(args)));
        try
        {
            File.WriteAllBytes(output, ManifestBuilder.Sign(manifest, signers));
        }
        finally
        {
            foreach (var key in signers)
                key.Dispose();
        }
        var artifact = manifest.Artifacts.Values.First();
        Console.WriteLine(args.Has("json")
            ? new JsonObject { ["path"] = Path.GetFullPath(output), ["modelId"] = manifest.ModelId, ["version"] = manifest.Version, ["sha256"] = artifact.Sha256, ["length"] = artifact.Length, ["expires"] = manifest.Expires }.ToJsonString()
            : $"signed {manifest.ModelId} v{manifest.Version} ({artifact.Length} bytes, sha256 {artifact.Sha256[..12]}…) for {string.Join(", ", manifest.Artifacts.Keys)} with {signers.Count} key(s); expires {manifest.Expires:u}");
        return 0;
    }

    /// <summary>Uploads a model file to the fleet's artifact store.</summary>
    public static async Task<int> ModelPushAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model", "json"]);
        var path = args.Require("model");
        using var http = FleetHttp.Create(args, TimeSpan.FromMinutes(5));
        await using var file = File.OpenRead(path);
        using var content = new StreamContent(file);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var body = await FleetHttp.SendAsync(http, () => http.PostAsync(new Uri("/api/artifacts", UriKind.Relative), content)).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? body : $"uploaded {path}: {body}");
        return 0;
    }

    /// <summary>Sets a device's desired model: the signed manifest, the key set, and roots newer than v1.</summary>
    public static async Task<int> DevicesUpdateAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "device", "manifest", "keys", "json"]);
        var store = new KeyStore(args.Require("keys"));
        var desired = new JsonObject
        {
            ["manifest"] = JsonNode.Parse(File.ReadAllBytes(args.Require("manifest"))),
            ["keySet"] = JsonNode.Parse(File.ReadAllBytes(store.KeySetPath)),
            ["roots"] = new JsonArray(store.RootsAfter(1).Select(r => JsonNode.Parse(r)).ToArray()),
        };
        using var http = FleetHttp.Create(args, TimeSpan.FromMinutes(5));
        using var content = new StringContent(desired.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
        var device = args.Require("device");
        var body = await FleetHttp.SendAsync(http, () => http.PutAsync(new Uri($"/api/devices/{Uri.EscapeDataString(device)}/desired", UriKind.Relative), content)).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? body : $"desired state of {device} set: {body}");
        return 0;
    }

    /// <summary>Writes one health-check sample per demo class: the input file for <c>model sign --samples</c>.</summary>
    public static void WriteDemoSamples(string path)
    {
        var data = DemoDataset.Generate(perClass: 1, seed: 7);
        var samples = new JsonArray(data.Features.Select(f => (JsonNode)new JsonObject
        {
            ["features"] = new JsonObject { ["shape"] = new JsonArray(1, f.Length), ["data"] = new JsonArray(f.Select(x => (JsonNode)(double)x).ToArray()) },
        }).ToArray());
        File.WriteAllText(path, new JsonObject { ["samples"] = samples }.ToJsonString());
    }

    private static List<Dictionary<string, TensorValue>> ReadSamples(string path)
    {
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(path))?["samples"]?.AsArray() ?? throw new CommandException($"{path} has no \"samples\" array");
            return root.Select(s => s!.AsObject().ToDictionary(kv => kv.Key,
                kv => JsonSerializer.Deserialize(kv.Value!.ToJsonString(), OtaJsonContext.Default.TensorValue)!)).ToList();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or IOException)
        {
            throw new CommandException($"cannot read samples from {path}: {e.Message}");
        }
    }

    private static KeyStore.Options Options(CommandLine args) => new(
        Roots: args.GetInt("roots", 1), RootThreshold: args.GetInt("root-threshold", 1),
        Signers: args.GetInt("signers", 1), Threshold: args.GetInt("threshold", 1), Passphrase: Passphrase(args));

    /// <summary>From --passphrase-file or $EDGEFLEET_KEY_PASSPHRASE; never from the command line, where ps shows it.</summary>
    private static string? Passphrase(CommandLine args) =>
        args.Get("passphrase-file") is { } file ? File.ReadAllText(file).TrimEnd('\r', '\n')
        : Environment.GetEnvironmentVariable("EDGEFLEET_KEY_PASSPHRASE") is { Length: > 0 } env ? env : null;

    private static double Double(CommandLine args, string name, double fallback) =>
        args.Get(name) is not { } text ? fallback
        : double.TryParse(text, CultureInfo.InvariantCulture, out var value) ? value
        : throw new UsageException($"--{name} must be a number, got '{text}'");

    private static T Run<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            throw new CommandException(e.Message);
        }
    }

    private static void Report(CommandLine args, KeyStore store, RootDocument root, KeySetDocument keySet, string text) =>
        Console.WriteLine(args.Has("json")
            ? new JsonObject { ["dir"] = Path.GetFullPath(store.Directory), ["rootVersion"] = root.Version, ["keySetVersion"] = keySet.Version, ["rootPath"] = Path.GetFullPath(store.RootPath) }.ToJsonString()
            : text);
}
