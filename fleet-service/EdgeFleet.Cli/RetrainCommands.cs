using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Shared.Demo;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeFleet.Cli;

/// <summary>
/// <c>retrain policy set|list|delete</c>, <c>retrain run|jobs|show|cancel</c>, <c>model examples|label</c> (feedback),
/// and <c>retrain worker</c>: the reference executor for the demo model.
/// </summary>
public static class RetrainCommands
{
    public static async Task<int> PolicySetAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "executor", "on-drift", "on-confidence-drop", "every-hours", "cooldown-hours", "timeout-minutes", "max-examples",
            "group", "selector", "devices", "phases", "quality", "disable", "json"]);
        var model = args.Require("model-id");
        var policy = new JsonObject
        {
            ["executor"] = args.Require("executor"),
            ["enabled"] = !args.Has("disable"),
            ["cooldownHours"] = Number(args.Get("cooldown-hours") ?? "24", "cooldown-hours"),
            ["timeoutMinutes"] = Number(args.Get("timeout-minutes") ?? "60", "timeout-minutes"),
            ["maxExamples"] = args.GetInt("max-examples", 5000),
            ["target"] = new JsonObject
            {
                ["group"] = args.Get("group"),
                ["selector"] = args.Get("selector"),
                ["devices"] = new JsonArray([.. (args.Get("devices") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(d => (JsonNode)d)]),
            },
            ["phases"] = RolloutCommands.ParsePhases(args.Get("phases") ?? "10%:600,100%"),
        };
        if (args.Get("on-drift") is { } drift)
        {
            var settings = Settings(drift, "on-drift", "features", "windows");
            policy["drift"] = new JsonObject { ["minFeatures"] = (int)settings.GetValueOrDefault("features", 1), ["minWindows"] = (int)settings.GetValueOrDefault("windows", 3) };
        }
        if (args.Get("on-confidence-drop") is { } drop)
        {
            var settings = Settings(drop.Contains('=', StringComparison.Ordinal) ? drop : $"drop={drop}", "on-confidence-drop", "drop", "windows");
            policy["confidence"] = new JsonObject { ["maxDrop"] = settings.GetValueOrDefault("drop", 0.1), ["windows"] = (int)settings.GetValueOrDefault("windows", 3) };
        }
        if (args.Get("every-hours") is { } every)
            policy["everyHours"] = Number(every, "every-hours");
        if (args.Get("quality") is { } quality)
            policy["gates"] = new JsonObject { ["quality"] = RolloutCommands.ParseQuality(quality) };
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PutAsJsonAsync(new Uri($"/api/retraining/policies/{Uri.EscapeDataString(model)}", UriKind.Relative), policy)).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? body : $"retraining policy of {model} set: {Describe(JsonNode.Parse(body)!)}");
        return 0;
    }

    public static async Task<int> PolicyListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri("/api/retraining/policies", UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        foreach (var p in JsonNode.Parse(body)!.AsArray())
            Console.WriteLine($"{p!["modelId"],-28} {Describe(p)}");
        return 0;
    }

    public static async Task<int> PolicyDeleteAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id"]);
        using var http = FleetHttp.Create(args);
        await FleetHttp.SendAsync(http, () => http.DeleteAsync(new Uri($"/api/retraining/policies/{Uri.EscapeDataString(args.Require("model-id"))}", UriKind.Relative))).ConfigureAwait(false);
        Console.WriteLine("policy deleted");
        return 0;
    }

    public static async Task<int> RunAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "reason", "json"]);
        using var http = FleetHttp.Create(args);
        var request = new JsonObject { ["modelId"] = args.Require("model-id"), ["reason"] = args.Require("reason") };
        var body = await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri("/api/retraining/jobs", UriKind.Relative), request)).ConfigureAwait(false);
        PrintJob(args, body);
        return 0;
    }

    public static async Task<int> JobsAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "limit", "json"]);
        using var http = FleetHttp.Create(args);
        var query = $"/api/retraining/jobs?limit={args.GetInt("limit", 20)}" + (args.Get("model-id") is { } m ? $"&model={Uri.EscapeDataString(m)}" : "");
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri(query, UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("JOB", "MODEL", "BASE", "STATE", "TRIGGER", "OUTPUT", "ROLLOUT", "CREATED");
        foreach (var j in JsonNode.Parse(body)!.AsArray())
        {
            table.Add(j!["id"], j["modelId"], "v" + j["baseVersion"], j["state"], j["trigger"], j["outputVersion"] is { } v ? "v" + v : null, j["rolloutId"],
                TextTable.Time(j["createdAt"]));
        }
        table.Write(Console.Out);
        return 0;
    }

    public static async Task<int> ShowAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "id", "json"]);
        using var http = FleetHttp.Create(args);
        PrintJob(args, await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri($"/api/retraining/jobs/{Uri.EscapeDataString(args.Require("id"))}", UriKind.Relative))).ConfigureAwait(false));
        return 0;
    }

    public static async Task<int> CancelAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "id", "json"]);
        using var http = FleetHttp.Create(args);
        PrintJob(args, await FleetHttp.SendAsync(http, () => http.PostAsync(new Uri($"/api/retraining/jobs/{Uri.EscapeDataString(args.Require("id"))}/cancel", UriKind.Relative), null)).ConfigureAwait(false));
        return 0;
    }

    /// <summary><c>drift alerts [--all] [--json]</c>: the active drift alerts (with <c>--all</c>, resolved ones too).</summary>
    public static async Task<int> DriftAlertsAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "all", "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri("/api/drift/alerts" + (args.Has("all") ? "?state=all" : ""), UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var alerts = JsonNode.Parse(body)!.AsArray();
        if (alerts.Count == 0)
        {
            Console.WriteLine("no drift alerts");
            return 0;
        }
        var table = new TextTable("ALERT", "MODEL", "FEATURE", "SEGMENT", "KIND", "PSI", "WINDOWS", "STATE", "DEVICES").Right(5, 6);
        foreach (var a in alerts)
        {
            var kind = $"{a!["kind"]?.GetValue<string>() ?? "drift"}: {a["severity"]?.GetValue<string>() ?? "alert"}";
            var devices = string.Join(",", a["devices"]?.AsArray().Select(d => d!["deviceId"]!.GetValue<string>()) ?? []);
            var psi = a["psi"]!.GetValue<double>().ToString("F3", CultureInfo.InvariantCulture);
            table.Add(a["id"], $"{a["model"]} v{a["version"]}", a["feature"], a["segment"], kind, psi, a["windows"], a["state"], devices);
        }
        table.Write(Console.Out);
        return 0;
    }

    /// <summary><c>model examples --model-id M [--device D] [--hours H] [--limit N] [--json]</c>: the hard examples devices uploaded.</summary>
    public static async Task<int> ExamplesAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "device", "hours", "limit", "json"]);
        using var http = FleetHttp.Create(args);
        var query = $"/api/models/{Uri.EscapeDataString(args.Require("model-id"))}/examples?limit={args.GetInt("limit", 50)}&hours={Number(args.Get("hours") ?? "24", "hours").ToString(CultureInfo.InvariantCulture)}"
            + (args.Get("device") is { } d ? $"&device={Uri.EscapeDataString(d)}" : "");
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri(query, UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("ID", "PREDICTED", "CONF", "LABEL", "TIME").Right(2);
        foreach (var e in JsonNode.Parse(body)!.AsArray())
        {
            table.Add(e!["id"], e["predicted"], e["confidence"]!.GetValue<double>().ToString("F3", CultureInfo.InvariantCulture), e["label"],
                TextTable.Time(e["ts"]));
        }
        table.Write(Console.Out);
        return 0;
    }

    /// <summary><c>model label --model-id M --label L (--ids a,b | --device D [--hours H])</c>: feedback on hard examples.</summary>
    public static async Task<int> LabelAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "label", "ids", "device", "hours", "json"]);
        var request = new JsonObject
        {
            ["label"] = args.Require("label"),
            ["ids"] = new JsonArray([.. (args.Get("ids") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(i => (JsonNode)i)]),
            ["device"] = args.Get("device"),
            ["hours"] = args.Get("hours") is { } h ? Number(h, "hours") : null,
        };
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri($"/api/models/{Uri.EscapeDataString(args.Require("model-id"))}/examples/label", UriKind.Relative), request)).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? body : $"labelled {JsonNode.Parse(body)!["labelled"]} hard examples '{args.Require("label")}'");
        return 0;
    }

    /// <summary>
    /// <c>retrain worker --kind demo [--job F] [--out DIR] [--seed N] [--weight W]</c>: the reference executor for the demo
    /// vibration classifier. It reads the job's inputs (<c>$EDGEFLEET_JOB_FILE</c>), retrains the classifier on the
    /// synthetic baseline data plus the hard examples that feedback labelled (each taken W times; unlabelled ones are
    /// counted, not guessed), holds out every fifth labelled example, and writes what the fleet's pipeline expects
    /// to <c>$EDGEFLEET_JOB_OUTPUT</c>: <c>model.onnx</c>, <c>data/</c> (held-out samples and labels), <c>card.json</c>
    /// and <c>result.json</c> (accuracies, before and after on the held-out feedback).
    /// </summary>
    public static int Worker(CommandLine args)
    {
        args.AllowOnly("kind", "job", "out", "seed", "weight", "json");
        if (args.Require("kind") != "demo")
            throw new UsageException("--kind is demo (the reference worker retrains the demo vibration classifier)");
        var jobFile = args.Get("job") ?? Environment.GetEnvironmentVariable("EDGEFLEET_JOB_FILE") ?? throw new UsageException("--job F or $EDGEFLEET_JOB_FILE is required");
        var output = args.Get("out") ?? Environment.GetEnvironmentVariable("EDGEFLEET_JOB_OUTPUT") ?? throw new UsageException("--out DIR or $EDGEFLEET_JOB_OUTPUT is required");
        var inputs = JsonNode.Parse(File.ReadAllText(jobFile)) ?? throw new CommandException($"{jobFile} is empty");
        var job = inputs["job"]!;
        var seed = args.GetInt("seed", 42);
        var examples = inputs["examples"]?.AsArray() ?? [];
        var labelled = new List<(float[] Features, int Label)>();
        var unusable = 0;
        foreach (var e in examples)
        {
            var values = e!["input"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
            if (values.Length != VibrationFeatures.Count)
            {
                unusable++;
                continue;
            }
            if (e["label"]?.GetValue<string>() is { } label && MachineConditions.TryParse(label, out var condition))
                labelled.Add((values, (int)condition));
        }
        var heldOut = labelled.Where((_, i) => i % 5 == 4).ToList();
        var learn = labelled.Where((_, i) => i % 5 != 4).ToList();
        // Each feedback example weighs like a few synthetic ones, so a handful of them can move the boundary.
        const int perClass = 600;
        var weight = args.GetInt("weight", learn.Count == 0 ? 1 : Math.Clamp(perClass / 2 / Math.Max(1, learn.Count), 1, 40));
        Console.WriteLine($"job {job["id"]}: {examples.Count} hard examples, {labelled.Count} labelled ({learn.Count} to learn, {heldOut.Count} held out), weight {weight}");
        var trained = DemoModelTrainer.Train(seed, perClass, extra: learn, extraWeight: weight);

        Directory.CreateDirectory(output);
        File.WriteAllBytes(Path.Combine(output, "model.onnx"), trained.OnnxBytes);
        var data = Path.Combine(output, "data");
        Directory.CreateDirectory(data);
        var holdout = DemoDataset.Generate(60, seed + 7);
        var rows = holdout.Features.Select((f, i) => (f, holdout.Labels[i])).Concat(heldOut).ToList();
        for (var i = 0; i < rows.Count; i++)
            Npy.Write(Path.Combine(data, $"{i:D5}.npy"), rows[i].Item1, 1, VibrationFeatures.Count);
        File.WriteAllLines(Path.Combine(data, "labels.txt"), rows.Select(r => r.Item2.ToString(CultureInfo.InvariantCulture)));

        var before = Environment.GetEnvironmentVariable("EDGEFLEET_BASE_MODEL") is { Length: > 0 } basePath && File.Exists(basePath) && heldOut.Count > 0
            ? Accuracy(File.ReadAllBytes(basePath), heldOut) : (double?)null;
        var after = heldOut.Count > 0 ? Accuracy(trained.OnnxBytes, heldOut) : (double?)null;
        var card = inputs["card"]?.DeepClone() as JsonObject ?? new JsonObject { ["labels"] = new JsonArray([.. MachineConditions.Labels.Select(l => (JsonNode)l)]) };
        card["trainingDataSha256"] = trained.TrainingDataSha256;
        var metrics = card["metrics"] as JsonObject ?? [];
        metrics["holdoutAccuracy"] = trained.HoldoutAccuracy;
        if (after is { } a)
            metrics["feedbackAccuracy"] = a;
        card["metrics"] = metrics;
        card.Remove("inputs");
        card.Remove("outputs");
        File.WriteAllText(Path.Combine(output, "card.json"), card.ToJsonString());
        var result = new JsonObject
        {
            ["worker"] = "edgefleet retrain worker --kind demo",
            ["hardExamples"] = examples.Count,
            ["labelled"] = labelled.Count,
            ["unlabelled"] = examples.Count - labelled.Count - unusable,
            ["unusable"] = unusable,
            ["learned"] = learn.Count,
            ["heldOut"] = heldOut.Count,
            ["weight"] = weight,
            ["trainAccuracy"] = trained.TrainAccuracy,
            ["holdoutAccuracy"] = trained.HoldoutAccuracy,
            ["feedbackAccuracyBefore"] = before,
            ["feedbackAccuracyAfter"] = after,
        };
        File.WriteAllText(Path.Combine(output, "result.json"), result.ToJsonString());
        Console.WriteLine(args.Has("json") ? result.ToJsonString()
            : $"trained: accuracy {trained.TrainAccuracy:P1} (train), {trained.HoldoutAccuracy:P1} (synthetic hold-out)"
              + (after is { } x ? $", {x:P1} on held-out feedback" + (before is { } b ? $" (base model {b:P1})" : "") : "") + $"; output in {output}");
        return 0;
    }

    private static double Accuracy(byte[] model, List<(float[] Features, int Label)> rows)
    {
        using var session = new InferenceSession(model);
        var input = session.InputMetadata.Keys.First();
        var right = 0;
        foreach (var (features, label) in rows)
        {
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(input, new DenseTensor<float>(features, [1, features.Length]))]);
            var p = results[0].AsEnumerable<float>().ToArray();
            right += Array.IndexOf(p, p.Max()) == label ? 1 : 0;
        }
        return (double)right / rows.Count;
    }

    private static void PrintJob(CommandLine args, string body)
    {
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return;
        }
        var j = JsonNode.Parse(body)!;
        Console.WriteLine($"job {j["id"]}: {j["modelId"]} from v{j["baseVersion"]}, {j["state"]} ({j["trigger"]}: {j["reason"]})");
        if (j["outputVersion"] is { } v)
            Console.WriteLine($"  output: v{v}, validation {j["verdict"]}" + (j["rolloutId"] is { } r ? $", draft rollout {r} (approve: edgefleet rollout approve --id {r})" : ""));
        if (j["error"] is { } error)
            Console.WriteLine($"  error: {error}");
        foreach (var e in j["events"]!.AsArray())
            Console.WriteLine($"  {TextTable.Time(e!["at"])} {e["state"],-11} {e["message"]}");
    }

    private static string Describe(JsonNode p)
    {
        var triggers = new List<string>();
        if (p["drift"] is { } d)
            triggers.Add($"drift on {d["minFeatures"]} feature(s) for {d["minWindows"]} windows");
        if (p["confidence"] is { } c)
            triggers.Add($"confidence drop > {c["maxDrop"]} over {c["windows"]} windows");
        if (p["everyHours"] is { } h)
            triggers.Add($"every {h} h");
        triggers.Add("manual");
        return $"executor {p["executor"]}, {(p["enabled"]!.GetValue<bool>() ? "enabled" : "disabled")}; triggers: {string.Join(", ", triggers)}; cooldown {p["cooldownHours"]} h, timeout {p["timeoutMinutes"]} min";
    }

    private static Dictionary<string, double> Settings(string text, string option, params string[] names)
    {
        var settings = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0 || !names.Contains(part[..eq]))
                throw new UsageException($"--{option} takes {string.Join(", ", names.Select(n => n + "=N"))}");
            settings[part[..eq]] = Number(part[(eq + 1)..], option);
        }
        return settings;
    }

    private static double Number(string text, string name) => CommandLine.ParseDouble(name, text);
}
