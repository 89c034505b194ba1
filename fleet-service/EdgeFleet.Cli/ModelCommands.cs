using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.ModelTools.Samples;
using EdgeFleet.ModelTools.Validation;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Shared.Demo;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.Cli;

/// <summary>
/// The ML engineer's side: <c>model samples|quantize|validate</c> (local, no fleet needed) and
/// <c>model register|push|list|show|approve|reject|retire</c> (the fleet's model registry).
/// </summary>
public static class ModelCommands
{
    /// <summary>Exit status of <c>model validate</c> when the gate rejects the candidate.</summary>
    public const int Rejected = 3;

    public static int Samples(CommandLine args)
    {
        args.AllowOnly("kind", "count", "out", "seed", "size", "condition", "json");
        var kind = args.Require("kind");
        int? condition = args.Get("condition") is { } c
            ? MachineConditions.TryParse(c, out var parsed) ? (int)parsed : throw new UsageException($"--condition is one of {string.Join(", ", MachineConditions.Labels)}")
            : null;
        var count = args.GetInt("count", 100);
        var output = args.Require("out");
        var random = new Random(args.GetInt("seed", 1));
        // Only the detector's input has a free size; the others are fixed by their models.
        if (args.Get("size") is not null && kind != "ocr-det")
            throw new UsageException($"--size applies to --kind ocr-det only ({kind} samples have the fixed shape their model takes)");
        var size = args.GetInt("size", 640);
        if (size < 32 || size % 32 != 0)
            throw new UsageException("--size is a positive multiple of 32 (the detector scales its input down by 32)");
        Directory.CreateDirectory(output);
        var labels = new List<int>();
        for (var i = 0; i < count; i++)
        {
            var path = Path.Combine(output, $"{i:D5}.npy");
            switch (kind)
            {
                case "demo":
                    var data = DemoDataset.Generate(perClass: 1, seed: random.Next());
                    // One sample of each condition per draw: a condition given picks its own.
                    var pick = condition is { } wanted ? Array.IndexOf(data.Labels, wanted) : random.Next(data.Count);
                    Npy.Write(path, data.Features[pick], 1, VibrationFeatures.Count);
                    labels.Add(data.Labels[pick]);
                    break;
                case "ocr-cls":
                    Npy.Write(path, TextImages.ClassifierInput(random, out var upsideDown), 1, 3, 48, 192);
                    labels.Add(upsideDown ? 1 : 0);
                    break;
                case "ocr-det":
                    Npy.Write(path, TextImages.DetectorInput(random, size), 1, 3, size, size);
                    break;
                default:
                    throw new UsageException("--kind is demo, ocr-cls or ocr-det");
            }
        }
        if (labels.Count > 0)
            File.WriteAllLines(Path.Combine(output, "labels.txt"), labels.Select(l => l.ToString(CultureInfo.InvariantCulture)));
        Console.WriteLine(args.Has("json")
            ? new JsonObject { ["directory"] = Path.GetFullPath(output), ["count"] = count, ["labels"] = labels.Count > 0 ? Path.Combine(Path.GetFullPath(output), "labels.txt") : null }.ToJsonString()
            : $"wrote {count} {kind} samples to {output}" + (labels.Count > 0 ? " (labels in labels.txt)" : ""));
        return 0;
    }

    /// <summary>
    /// <c>model baseline --model M --data DIR [--bins 10] [--card C] [--out F] [--json]</c>: feature baselines for
    /// drift from representative inputs; with <c>--card</c>, the card with its <c>featureBaselines</c> replaced.
    /// </summary>
    public static int Baseline(CommandLine args)
    {
        args.AllowOnly("model", "data", "bins", "max-samples", "card", "out", "json");
        var baselines = Run(() => EdgeFleet.ModelTools.Drift.BaselineBuilder.Build(args.Require("model"), args.Require("data"), args.GetInt("bins", 10), args.GetInt("max-samples", int.MaxValue)));
        var list = new JsonArray([.. baselines.Select(b => (JsonNode)new JsonObject
        {
            ["name"] = b.Name,
            ["source"] = b.Source,
            ["edges"] = new JsonArray([.. b.Edges.Select(e => (JsonNode)JsonValue.Create(e))]),
            ["counts"] = new JsonArray([.. b.Counts.Select(n => (JsonNode)JsonValue.Create(n))]),
        })]);
        JsonNode result = list;
        if (args.Get("card") is { } cardPath)
        {
            var card = JsonNode.Parse(File.ReadAllText(cardPath)) as JsonObject ?? throw new UsageException($"{cardPath} is not a JSON object");
            card["featureBaselines"] = list;
            result = card;
        }
        var text = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var output = args.Get("out");
        if (output is not null)
            File.WriteAllText(output, text);
        if (args.Has("json") || output is null)
            Console.WriteLine(text);
        else
            Console.WriteLine($"{baselines.Count} feature baselines ({string.Join(", ", baselines.Select(b => b.Name))}) written to {output}");
        return 0;
    }

    public static int Quantize(CommandLine args)
    {
        args.AllowOnly("model", "out", "mode", "data", "method", "percentile", "activations", "per-tensor", "channel-multiple", "exclude-nodes", "exclude-ops", "max-samples", "threads", "json");
        var mode = args.Get("mode") ?? "static";
        var options = new QuantizationOptions
        {
            Mode = mode switch { "static" => QuantizationMode.Static, "dynamic" => QuantizationMode.Dynamic, _ => throw new UsageException("--mode is static or dynamic") },
            Method = (args.Get("method") ?? "minmax") switch
            {
                "minmax" => CalibrationMethod.MinMax,
                "percentile" => CalibrationMethod.Percentile,
                "mse" => CalibrationMethod.Mse,
                _ => throw new UsageException("--method is minmax, percentile or mse"),
            },
            Percentile = args.Get("percentile") is { } p ? Number(p, "percentile") : 99.999,
            Activations = (args.Get("activations") ?? "uint8") switch
            {
                "uint8" => ActivationType.UInt8,
                "int8" => ActivationType.Int8,
                _ => throw new UsageException("--activations is uint8 or int8"),
            },
            PerChannel = !args.Has("per-tensor"),
            DepthwiseChannelMultiple = args.GetInt("channel-multiple", 16) is var multiple and >= 1 ? multiple : throw new UsageException("--channel-multiple is 1 (no padding) or more"),
            ExcludeNodes = List(args.Get("exclude-nodes")),
            ExcludeOpTypes = List(args.Get("exclude-ops")),
            MaxSamples = args.Get("max-samples") is null ? null : args.GetInt("max-samples", 0),
            Threads = args.GetInt("threads", Environment.ProcessorCount),
        };
        var input = args.Require("model");
        var output = args.Require("out");
        var (model, report) = Run(() =>
        {
            var fp32 = OnnxModel.Load(input);
            using var session = OpenInput(input);
            var data = args.Get("data");
            var samples = data is null ? null : SampleSet.Open(data, session.InputMetadata);
            if (options.Mode == QuantizationMode.Dynamic)
                return DynamicQuantizer.Quantize(fp32, options, samples?.Read(0));
            return QdqQuantizer.Quantize(fp32, samples
                ?? throw new UsageException("static quantization needs --data DIR (calibration samples); without data use --mode dynamic"), options);
        });
        model.Save(output);
        var size = new FileInfo(output).Length;
        Console.WriteLine(args.Has("json")
            ? new JsonObject
            {
                ["out"] = Path.GetFullPath(output),
                ["mode"] = report.Mode,
                ["quantizedNodes"] = report.QuantizedNodes,
                ["byOpType"] = new JsonObject(report.QuantizedByOpType.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["excludedNodes"] = report.ExcludedNodes,
                ["calibrationSamples"] = report.CalibrationSamples,
                ["inputBytes"] = report.InputBytes,
                ["outputBytes"] = size,
                ["keptFloat"] = new JsonArray([.. report.KeptFloat.Select(k => (JsonNode?)k)]),
            }.ToJsonString()
            : $"quantized {report.QuantizedNodes} nodes ({string.Join(", ", report.QuantizedByOpType.Select(kv => $"{kv.Key} {kv.Value}"))}) {report.Mode}"
              + (report.CalibrationSamples > 0 ? $" from {report.CalibrationSamples} calibration samples" : "")
              + $"; {report.InputBytes:N0} → {size:N0} bytes ({(double)size / report.InputBytes:P0}) in {output}"
              + string.Concat(report.KeptFloat.Select(k => "\n  " + k)));
        return 0;
    }

    public static int Validate(CommandLine args)
    {
        args.AllowOnly("reference", "candidate", "data", "labels", "threads", "output", "card", "max-samples", "runs",
            "min-agreement", "min-cosine", "max-accuracy-drop", "max-latency-ratio", "max-size-ratio", "max-mean-abs-error", "max-relative-error", "report-out", "json");
        var thresholds = args.Get("card") is { } card ? CardThresholds(card) : new ValidationThresholds();
        thresholds = thresholds with
        {
            MinTop1Agreement = Override(args, "min-agreement", thresholds.MinTop1Agreement),
            MinCosine = Override(args, "min-cosine", thresholds.MinCosine),
            MaxAccuracyDrop = Override(args, "max-accuracy-drop", thresholds.MaxAccuracyDrop),
            MaxLatencyRatio = Override(args, "max-latency-ratio", thresholds.MaxLatencyRatio),
            MaxSizeRatio = Override(args, "max-size-ratio", thresholds.MaxSizeRatio),
            MaxMeanAbsError = Override(args, "max-mean-abs-error", thresholds.MaxMeanAbsError),
            MaxRelativeMeanError = Override(args, "max-relative-error", thresholds.MaxRelativeMeanError),
        };
        var report = Run(() => ValidationGate.Run(new ValidationGate.Request
        {
            Reference = args.Require("reference"),
            Candidate = args.Require("candidate"),
            DataDirectory = args.Require("data"),
            Labels = args.Get("labels") is { } labels ? ReadLabels(labels) : null,
            Output = args.Get("output"),
            Threads = args.GetInt("threads", 1),
            MaxSamples = args.GetInt("max-samples", int.MaxValue),
            LatencyRuns = args.GetInt("runs", 30),
            Thresholds = thresholds,
        }));
        var json = JsonSerializer.Serialize(report, ValidationJsonContext.Default.ValidationReport);
        if (args.Get("report-out") is { } path)
            File.WriteAllText(path, json);
        if (args.Has("json"))
        {
            Console.WriteLine(json);
        }
        else
        {
            Console.WriteLine($"{report.Samples} samples at {report.Threads} thread(s), output {report.Output}:");
            if (report.Top1Agreement is { } agreement)
                Console.WriteLine($"  top-1 agreement   {agreement:P2}");
            if (report.ReferenceAccuracy is { } ra && report.CandidateAccuracy is { } ca)
                Console.WriteLine($"  accuracy          {ra:P2} → {ca:P2}");
            var cosine = report.Cosine is { } cos ? $"cosine {cos:F5}   " : "";
            Console.WriteLine($"  {cosine}max |err| {report.MaxAbsError:G4}   mean |err| {report.MeanAbsError:G4}"
                + (report.RelativeMeanAbsError is { } rel ? $" ({rel:P2} of the reference's spread {report.ReferenceSpread:G4})" : ""));
            if (report.ReferenceStability is { } stable)
            {
                Console.WriteLine("  reference itself, inputs ±½ 8-bit step: " + string.Join(", ",
                    new[] { stable.Top1Agreement is { } a ? $"agreement {a:P2}" : null, stable.Cosine is { } c ? $"cosine {c:F5}" : null }.OfType<string>()));
            }
            Console.WriteLine($"  latency p50 / p95 {report.ReferenceLatency.P50Ms:F2} / {report.ReferenceLatency.P95Ms:F2} ms → "
                + $"{report.CandidateLatency.P50Ms:F2} / {report.CandidateLatency.P95Ms:F2} ms (ratio {report.LatencyRatio:F3}"
                + (report.LatencyRatioInterval is { } ri ? $"; paired {ri.Estimate:F3}, 99.9 % {ri.Low:F3}–{ri.High:F3} over {ri.Pairs} runs)" : ")"));
            Console.WriteLine($"  size              {report.ReferenceBytes:N0} → {report.CandidateBytes:N0} bytes (ratio {report.SizeRatio:F3})");
            foreach (var check in report.Checks)
                Console.WriteLine($"  {(check.Passed ? "pass" : "FAIL")}  {check.Name} {check.Value:G5} {check.Comparison} {check.Threshold:G5}"
                    + (check.Note is { } note ? $" ({note})" : ""));
            Console.WriteLine($"verdict: {report.Verdict}");
        }
        return report.Accepted ? 0 : Rejected;
    }

    public static async Task<int> RegisterAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "id", "description", "owner", "json"]);
        var body = new JsonObject { ["id"] = args.Require("id"), ["description"] = args.Get("description"), ["owner"] = args.Get("owner") };
        using var http = FleetHttp.Create(args);
        using var content = new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
        var reply = await FleetHttp.SendAsync(http, () => http.PostAsync(new Uri("/api/models", UriKind.Relative), content)).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? reply : $"registered model {args.Require("id")}");
        return 0;
    }

    /// <summary>
    /// <c>model push --model-id ID --card C [--fp32 F] [--int8 F] [--variant PROFILE=F,…] [--report R] [--model-version N]</c>
    /// uploads a version to the registry; <c>model push --model F</c> alone uploads a bare artifact, as before.
    /// </summary>
    public static async Task<int> PushAsync(CommandLine args)
    {
        if (args.Get("model-id") is null)
            return await OtaCommands.ModelPushAsync(args).ConfigureAwait(false);
        args.AllowOnly([.. FleetHttp.Options, "model-id", "model-version", "card", "fp32", "int8", "variant", "report", "json"]);
        var id = args.Require("model-id");
        var files = new List<(string Part, string Path)>();
        if (args.Get("fp32") is { } fp32)
            files.Add(("fp32", fp32));
        if (args.Get("int8") is { } int8)
            files.Add(("int8", int8));
        foreach (var variant in (args.Get("variant") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            files.Add(variant.Split('=', 2) is [var profile, var path] ? ($"variant.{profile}", path) : throw new UsageException("--variant is PROFILE=FILE[,PROFILE=FILE]"));
        if (files.Count == 0)
            throw new UsageException("give at least one of --fp32, --int8, --variant");
        var card = JsonNode.Parse(ReadText(args.Require("card")))?.AsObject() ?? throw new CommandException("the card is not a JSON object");
        FillSchema(card, files.FirstOrDefault(f => f.Part == "fp32").Path ?? files[0].Path);

        using var form = new MultipartFormDataContent();
        form.Add(new StringContent(card.ToJsonString()), "card");
        if (args.Get("model-version") is { } version)
            form.Add(new StringContent(version), "version");
        if (args.Get("report") is { } report)
            form.Add(new StringContent(ReadText(report)), "report");
        var streams = new List<FileStream>();
        try
        {
            foreach (var (part, path) in files)
            {
                var stream = File.OpenRead(path);
                streams.Add(stream);
                var content = new StreamContent(stream);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                form.Add(content, part, Path.GetFileName(path));
            }
            using var http = FleetHttp.Create(args, TimeSpan.FromMinutes(30));
            var reply = await FleetHttp.SendAsync(http, () => http.PostAsync(new Uri($"/api/models/{Uri.EscapeDataString(id)}/versions", UriKind.Relative), form)).ConfigureAwait(false);
            var node = JsonNode.Parse(reply);
            Console.WriteLine(args.Has("json") ? reply : $"pushed {id} v{node?["version"]} ({node?["state"]}): {string.Join(", ", files.Select(f => f.Part))}");
        }
        finally
        {
            foreach (var s in streams)
                await s.DisposeAsync().ConfigureAwait(false);
        }
        return 0;
    }

    public static async Task<int> ListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "json"]);
        using var http = FleetHttp.Create(args);
        var reply = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri("/api/models", UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(reply);
            return 0;
        }
        var table = new TextTable("MODEL", "VERSIONS", "LATEST").Right(1);
        foreach (var m in JsonNode.Parse(reply)!.AsArray())
        {
            var versions = m!["versions"]!.AsArray();
            table.Add(m["model"]!["id"], versions.Count, versions.Count > 0 ? $"v{versions[0]!["version"]} {versions[0]!["state"]}" : null);
        }
        table.Write(Console.Out);
        return 0;
    }

    public static async Task<int> ShowAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "model-version", "json"]);
        var id = Uri.EscapeDataString(args.Require("model-id"));
        var path = args.Get("model-version") is { } v ? $"/api/models/{id}/versions/{Uri.EscapeDataString(v)}" : $"/api/models/{id}";
        using var http = FleetHttp.Create(args);
        var reply = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri(path, UriKind.Relative))).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? reply : JsonNode.Parse(reply)!.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    /// <summary><c>model approve|reject|retire --model-id ID --model-version N [--reason R]</c>.</summary>
    public static async Task<int> MoveAsync(CommandLine args, string action)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "model-version", "reason", "json"]);
        var id = args.Require("model-id");
        var version = args.Require("model-version");
        using var http = FleetHttp.Create(args);
        using var content = new StringContent(new JsonObject { ["reason"] = args.Get("reason") }.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
        var reply = await FleetHttp.SendAsync(http, () => http.PostAsync(new Uri($"/api/models/{Uri.EscapeDataString(id)}/versions/{Uri.EscapeDataString(version)}/{action}", UriKind.Relative), content)).ConfigureAwait(false);
        Console.WriteLine(args.Has("json") ? reply : $"{id} v{version} is now {JsonNode.Parse(reply)?["state"]}");
        return 0;
    }

    /// <summary>Fills the card's input and output schema from the model file when the card leaves them out.</summary>
    private static void FillSchema(JsonObject card, string modelPath)
    {
        if (card["inputs"] is JsonArray { Count: > 0 } && card["outputs"] is JsonArray { Count: > 0 })
            return;
        using var session = Run(() => new InferenceSession(modelPath));
        static JsonArray Schema(IReadOnlyDictionary<string, NodeMetadata> nodes) => new([.. nodes.Select(kv => (JsonNode)new JsonObject
        {
            ["name"] = kv.Key,
            ["type"] = kv.Value.ElementDataType.ToString().ToLowerInvariant(),
            ["shape"] = new JsonArray([.. kv.Value.Dimensions.Select(d => (JsonNode)(long)d)]),
        })]);
        card["inputs"] ??= Schema(session.InputMetadata);
        card["outputs"] ??= Schema(session.OutputMetadata);
    }

    private static ValidationThresholds CardThresholds(string path)
    {
        var card = JsonNode.Parse(ReadText(path));
        var thresholds = card?["thresholds"];
        return thresholds is null ? new ValidationThresholds()
            : Run(() => JsonSerializer.Deserialize(thresholds.ToJsonString(), ValidationJsonContext.Default.ValidationThresholds)) ?? new ValidationThresholds();
    }

    private static double? Override(CommandLine args, string name, double? current) =>
        args.Get(name) is not { } text ? current : text == "none" ? null : Number(text, name);

    private static List<int> ReadLabels(string path)
    {
        var text = ReadText(path).Trim();
        try
        {
            return text.StartsWith('[')
                ? JsonSerializer.Deserialize(text, ValidationCliJsonContext.Default.ListInt32) ?? []
                : [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(l => int.Parse(l, CultureInfo.InvariantCulture))];
        }
        catch (Exception e) when (e is FormatException or JsonException or OverflowException)
        {
            throw new CommandException($"{path}: labels are one class index per line, or a JSON array of them ({e.Message})");
        }
    }

    private static HashSet<string> List(string? text) => [.. (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    private static double Number(string text, string name) => CommandLine.ParseDouble(name, text);

    private static string ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandException($"cannot read {path}: {e.Message}");
        }
    }

    /// <summary>The model to quantize, in ONNX Runtime: one that cannot load there is refused before any work.</summary>
    private static InferenceSession OpenInput(string path)
    {
        try
        {
            return new InferenceSession(path);
        }
        catch (OnnxRuntimeException e)
        {
            throw new QuantizationException($"ONNX Runtime cannot load the model {path}: {ModelPreprocessor.FirstLine(e.Message)}");
        }
    }

    /// <summary>Turns the model toolchain's clear errors into the CLI's one-line failures.</summary>
    private static T Run<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is OnnxFormatException or QuantizationException or SampleDataException or ValidationException or OnnxRuntimeException or JsonException)
        {
            throw new CommandException(e.Message.Split('\n')[0]);
        }
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(List<int>))]
internal sealed partial class ValidationCliJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
