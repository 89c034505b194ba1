using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli;

/// <summary>Device tags and groups: <c>devices tag</c>, <c>groups list|show|create|update|delete</c>.</summary>
public static class GroupCommands
{
    public static async Task<int> TagAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "device", "set", "remove", "json"]);
        var device = args.Require("device");
        if (args.Get("set") is null && args.Get("remove") is null)
            throw new UsageException("give --set k=v,... and/or --remove k,...");
        var request = new JsonObject { ["set"] = IdentityCommands.ParseTags(args.Get("set"), "set"), ["remove"] = List(args.Get("remove")) };
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PatchAsJsonAsync(Relative($"/api/devices/{Uri.EscapeDataString(device)}/tags"), request)).ConfigureAwait(false);
        if (args.Has("json"))
            Console.WriteLine(body);
        else
            Console.WriteLine($"{device}: {Tags(JsonNode.Parse(body)!["device"]!["tags"])}");
        return 0;
    }

    public static async Task<int> ListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(Relative("/api/groups"))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("GROUP", "KIND", "DEVICES", "SELECTOR / DESCRIPTION").Right(2);
        foreach (var g in JsonNode.Parse(body)!.AsArray())
            table.Add(g!["name"], g["kind"], g["memberCount"], g["selector"] ?? g["description"]);
        table.Write(Console.Out);
        return 0;
    }

    public static async Task<int> ShowAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "name", "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(Relative($"/api/groups/{Uri.EscapeDataString(args.Require("name"))}"))).ConfigureAwait(false);
        Print(args, body);
        return 0;
    }

    public static async Task<int> CreateAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "name", "selector", "devices", "description", "json"]);
        if (args.Get("selector") is not null && args.Get("devices") is not null)
            throw new UsageException("a group is dynamic (--selector) or static (--devices), not both");
        var request = new JsonObject
        {
            ["name"] = args.Require("name"),
            ["selector"] = args.Get("selector"),
            ["devices"] = List(args.Get("devices")),
            ["description"] = args.Get("description"),
        };
        using var http = FleetHttp.Create(args);
        Print(args, await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(Relative("/api/groups"), request)).ConfigureAwait(false));
        return 0;
    }

    public static async Task<int> UpdateAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "name", "selector", "add", "remove", "description", "json"]);
        var request = new JsonObject
        {
            ["selector"] = args.Get("selector"),
            ["add"] = List(args.Get("add")),
            ["remove"] = List(args.Get("remove")),
            ["description"] = args.Get("description"),
        };
        using var http = FleetHttp.Create(args);
        var name = Uri.EscapeDataString(args.Require("name"));
        Print(args, await FleetHttp.SendAsync(http, () => http.PatchAsJsonAsync(Relative($"/api/groups/{name}"), request)).ConfigureAwait(false));
        return 0;
    }

    public static async Task<int> DeleteAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "name"]);
        var name = args.Require("name");
        using var http = FleetHttp.Create(args);
        await FleetHttp.SendAsync(http, () => http.DeleteAsync(Relative($"/api/groups/{Uri.EscapeDataString(name)}"))).ConfigureAwait(false);
        Console.WriteLine($"deleted group {name} (its devices are untouched)");
        return 0;
    }

    private static void Print(CommandLine args, string body)
    {
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return;
        }
        var g = JsonNode.Parse(body)!;
        var rule = g["selector"] is { } s ? $"selector {s}" : "listed devices";
        Console.WriteLine($"{g["name"]} ({g["kind"]}, {rule}): {g["memberCount"]} device(s)");
        foreach (var member in g["members"]!.AsArray())
            Console.WriteLine($"  {member}");
    }

    internal static string Tags(JsonNode? tags) =>
        tags is JsonObject o && o.Count > 0 ? string.Join(',', o.Select(kv => $"{kv.Key}={kv.Value}")) : "-";

    private static JsonArray List(string? csv) =>
        [.. (csv ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v => (JsonNode)v)];

    private static Uri Relative(string path) => new(path, UriKind.Relative);
}
