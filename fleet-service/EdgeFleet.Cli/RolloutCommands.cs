using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli;

/// <summary><c>rollout create|list|status|pause|resume|abort|rollback|promote</c>.</summary>
public static class RolloutCommands
{
    /// <summary>
    /// <c>--phases 1%:600:5,10%:600:20,50%:600,100%</c>: each phase is SIZE[:SOAK_SECONDS[:MIN_REPORTING]][:shadow],
    /// SIZE a percentage of the target (<c>10%</c>) or a device count (<c>25</c>); <c>shadow</c> makes it a shadow
    /// phase (its devices run the new version beside the old one and keep serving the old).
    /// </summary>
    public static JsonArray ParsePhases(string text)
    {
        var phases = new JsonArray();
        foreach (var p in PhaseGrammar.Parse(text))
        {
            var phase = new JsonObject();
            if (p.Shadow)
                phase["shadow"] = true;
            if (p.Percent is { } percent)
                phase["percent"] = percent;
            if (p.Count is { } count)
                phase["count"] = count;
            if (p.SoakSeconds is { } soak)
                phase["soakSeconds"] = soak;
            if (p.MinReporting is { } min)
                phase["minReporting"] = min;
            phases.Add(phase);
        }
        return phases;
    }

    public static async Task<int> CreateAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "model-id", "model-version", "group", "selector", "devices", "phases", "max-failure-rate", "quality", "on-failure", "urgent", "id", "json"]);
        var request = new JsonObject
        {
            ["id"] = args.Get("id"),
            ["modelId"] = args.Require("model-id"),
            ["version"] = long.TryParse(args.Require("model-version"), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException("--model-version is a whole number"),
            ["target"] = new JsonObject
            {
                ["group"] = args.Get("group"),
                ["selector"] = args.Get("selector"),
                ["devices"] = new JsonArray([.. (args.Get("devices") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(d => (JsonNode)d)]),
            },
            ["phases"] = ParsePhases(args.Get("phases") ?? "1%:600,10%:600,50%:600,100%"),
            ["onGateFailure"] = args.Get("on-failure") ?? "pause",
            ["urgent"] = args.Has("urgent"),
        };
        var gates = new JsonObject();
        if (args.Get("max-failure-rate") is { } rate)
            gates["maxFailureRate"] = double.TryParse(rate, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) ? r : throw new UsageException("--max-failure-rate is a number in [0, 1]");
        if (args.Get("quality") is { } quality)
            gates["quality"] = ParseQuality(quality);
        if (gates.Count > 0)
            request["gates"] = gates;
        using var http = FleetHttp.Create(args);
        Print(args, await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri("/api/rollouts", UriKind.Relative), request)).ConfigureAwait(false));
        return 0;
    }

    /// <summary><c>--quality off</c>, or settings such as <c>minSamples=300,maxP95LatencyRatio=1.3,maxOutputPsi=0.2</c>.</summary>
    public static JsonObject ParseQuality(string text)
    {
        if (text == "off")
            return new JsonObject { ["enabled"] = false };
        string[] known = ["minSamples", "maxP95LatencyRatio", "maxConfidenceDrop", "maxOutputPsi", "maxFallbackRate", "maxErrorRate", "maxHardExampleRatio", "minShadowAgreement", "recordsPerDevice", "devicesPerGroup"];
        var quality = new JsonObject();
        foreach (var pair in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var (key, value) = pair.Split('=', 2) is [var k, var v] ? (k, v) : throw new UsageException($"--quality '{pair}': KEY=VALUE");
            if (!known.Contains(key))
                throw new UsageException($"--quality: unknown setting '{key}' (settings: {string.Join(", ", known)}; or off)");
            quality[key] = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) ? number : throw new UsageException($"--quality {key}: '{value}' is not a number");
        }
        return quality;
    }

    public static async Task<int> ListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri("/api/rollouts", UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("ROLLOUT", "MODEL", "STATE", "PHASE", "INSTALLED", "FAILED", "PENDING").Right(3, 4, 5, 6);
        foreach (var r in JsonNode.Parse(body)!.AsArray())
        {
            table.Add(r!["id"], $"{r["modelId"]} v{r["version"]}", r["state"], $"{r["phase"]}/{r["phaseCount"]}", r["tally"]!["installed"],
                r["tally"]!["failed"], r["tally"]!["pending"]);
        }
        table.Write(Console.Out);
        return 0;
    }

    public static async Task<int> StatusAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "id", "json"]);
        using var http = FleetHttp.Create(args);
        Print(args, await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri($"/api/rollouts/{Uri.EscapeDataString(args.Require("id"))}", UriKind.Relative))).ConfigureAwait(false));
        return 0;
    }

    public static async Task<int> ActAsync(CommandLine args, string action)
    {
        args.AllowOnly([.. FleetHttp.Options, "id", "reason", "json"]);
        using var http = FleetHttp.Create(args);
        var request = new JsonObject { ["reason"] = args.Get("reason") };
        Print(args, await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri($"/api/rollouts/{Uri.EscapeDataString(args.Require("id"))}/{action}", UriKind.Relative), request)).ConfigureAwait(false));
        return 0;
    }

    /// <summary>The rollout's state, each phase's progress bar and counts, and its last events.</summary>
    private static void Print(CommandLine args, string body)
    {
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return;
        }
        var r = JsonNode.Parse(body)!;
        Console.WriteLine($"rollout {r["id"]}: {r["modelId"]} v{r["version"]}, {r["state"]}, phase {r["phase"]} of {r["phaseCount"]}, {r["eligible"]} eligible devices, on gate failure: {r["onGateFailure"]}");
        foreach (var p in r["phases"]!.AsArray())
        {
            var size = p!["size"]!.GetValue<int>();
            var installed = p["installed"]!.GetValue<int>();
            var bar = size == 0 ? "" : new string('#', (int)Math.Round(20.0 * installed / size)).PadRight(20, '.');
            var share = p["percent"] is { } pct ? $"{pct}%" : $"{p["count"]}";
            var shadow = p["shadow"]?.GetValue<bool>() == true;
            Console.WriteLine($"  phase {p["phase"]} ({share,5}){(shadow ? " shadow" : "")} [{bar}] {installed}/{size} {(shadow ? "ran it in shadow" : "installed")}, {p["failed"]} failed, {p["pending"]} pending");
        }
        foreach (var e in r["events"]!.AsArray().TakeLast(5))
            Console.WriteLine($"  {TextTable.Time(e!["at"])} {e["by"]}: {e["action"]} (phase {e["phase"]!.GetValue<int>() + 1}){(e["reason"] is { } reason ? $": {reason}" : "")}");
    }
}
