using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli;

public sealed class CommandException(string message) : Exception(message);

public static class Commands
{
    public static int ModelDemo(CommandLine args)
    {
        args.AllowOnly("out", "seed", "samples-out", "json");
        var output = args.Require("out");
        var seed = args.GetInt("seed", 42);
        var result = DemoModelTrainer.Train(seed);
        var folder = Path.GetDirectoryName(Path.GetFullPath(output))!;
        Directory.CreateDirectory(folder);
        var temp = output + ".tmp";
        File.WriteAllBytes(temp, result.OnnxBytes);
        File.Move(temp, output, overwrite: true);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(result.OnnxBytes));
        if (args.Get("samples-out") is { } samples)
            OtaCommands.WriteDemoSamples(samples);
        if (args.Has("json"))
        {
            var json = new JsonObject
            {
                ["path"] = Path.GetFullPath(output),
                ["bytes"] = result.OnnxBytes.Length,
                ["sha256"] = sha,
                ["seed"] = seed,
                ["trainAccuracy"] = result.TrainAccuracy,
                ["holdoutAccuracy"] = result.HoldoutAccuracy,
                ["trainingDataSha256"] = result.TrainingDataSha256,
            };
            Console.WriteLine(json.ToJsonString());
        }
        else
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {output} ({result.OnnxBytes.Length} bytes, sha256 {sha[..12]}…): train accuracy {result.TrainAccuracy:P1}, hold-out accuracy {result.HoldoutAccuracy:P1}"));
        }
        return 0;
    }

    public static async Task<int> DevicesListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "group", "selector", "json"]);
        using var http = FleetHttp.Create(args);
        var query = string.Join('&', new[] { ("group", args.Get("group")), ("selector", args.Get("selector")) }
            .Where(q => q.Item2 is not null).Select(q => $"{q.Item1}={Uri.EscapeDataString(q.Item2!)}"));
        var path = query.Length == 0 ? "/api/devices" : "/api/devices?" + query;
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri(path, UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var devices = JsonNode.Parse(body)?.AsArray() ?? throw new CommandException("the fleet service sent no device list");
        var table = new TextTable("DEVICE", "ONLINE", "DRIFT", "PROFILE", "MODEL", "RECORDS", "LAST RESULT", "TAGS").Right(2, 5);
        foreach (var view in devices)
        {
            var d = view!["device"]!;
            var model = d["activeModel"] is { } m ? $"{m["name"]} {m["version"]}" : null;
            var last = d["lastInference"] is { } i
                ? string.Create(CultureInfo.InvariantCulture, $"{i["label"]} ({i["confidence"]!.GetValue<double>():P0})")
                : null;
            var drift = view["drift"]?.AsArray().Count ?? 0;
            table.Add(d["id"], (bool)view["online"]! ? "yes" : "no", drift > 0 ? drift : null, d["hardwareProfile"], model, d["telemetryRecords"], last,
                GroupCommands.Tags(d["tags"]));
        }
        table.Write(Console.Out);
        return 0;
    }
}
