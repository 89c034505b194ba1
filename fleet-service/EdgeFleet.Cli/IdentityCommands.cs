using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli;

/// <summary>Enrollment tokens, device revocation, API keys and the audit log.</summary>
public static class IdentityCommands
{
    public static async Task<int> EnrollTokenAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "uses", "hours", "tags", "note", "json"]);
        var request = new JsonObject
        {
            ["uses"] = args.GetInt("uses", 1),
            ["expiresInHours"] = args.GetDouble("hours", 24),
            ["note"] = args.Get("note"),
            ["tags"] = ParseTags(args.Get("tags")),
        };
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri("/api/enrollment-tokens", UriKind.Relative), request)).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var token = JsonNode.Parse(body)!;
        Console.WriteLine(token["token"]!.GetValue<string>());
        Console.Error.WriteLine($"enrollment token {token["id"]}: {token["uses"]} use(s), expires {TextTable.Time(token["expiresAt"])}. On the device: edgefleet-agent enroll --fleet {http.BaseAddress} --token TOKEN");
        return 0;
    }

    public static async Task<int> RevokeAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "device"]);
        var device = args.Require("device");
        using var http = FleetHttp.Create(args);
        await FleetHttp.SendAsync(http, () => http.PostAsync(new Uri($"/api/devices/{Uri.EscapeDataString(device)}/revoke", UriKind.Relative), null)).ConfigureAwait(false);
        Console.WriteLine($"revoked {device}: disconnected, and refused from now on");
        return 0;
    }

    public static async Task<int> ApiKeyCreateAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "name", "role", "json"]);
        var request = new JsonObject { ["name"] = args.Require("name"), ["role"] = args.Get("role") ?? "viewer" };
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri("/api/api-keys", UriKind.Relative), request)).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var key = JsonNode.Parse(body)!;
        Console.WriteLine(key["key"]!.GetValue<string>());
        Console.Error.WriteLine($"API key {key["id"]} ({key["role"]}) for {key["name"]}: shown once, keep it in a file readable only by you");
        return 0;
    }

    public static async Task<int> ApiKeyListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri("/api/api-keys", UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("ID", "ROLE", "CREATED", "REVOKED", "NAME");
        foreach (var k in JsonNode.Parse(body)!.AsArray())
            table.Add(k!["id"], k["role"], TextTable.Time(k["createdAt"]), TextTable.Time(k["revokedAt"]), k["name"]);
        table.Write(Console.Out);
        return 0;
    }

    public static async Task<int> ApiKeyRevokeAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "id"]);
        var id = args.Require("id");
        using var http = FleetHttp.Create(args);
        await FleetHttp.SendAsync(http, () => http.DeleteAsync(new Uri($"/api/api-keys/{Uri.EscapeDataString(id)}", UriKind.Relative))).ConfigureAwait(false);
        Console.WriteLine($"revoked API key {id}");
        return 0;
    }

    public static async Task<int> AuditAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "target", "limit", "json"]);
        using var http = FleetHttp.Create(args);
        var query = $"/api/audit?limit={args.GetInt("limit", 50)}" + (args.Get("target") is { } t ? "&target=" + Uri.EscapeDataString(t) : "");
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri(query, UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("TIME", "ACTOR", "ACTION", "TARGET", "AFTER");
        foreach (var e in JsonNode.Parse(body)!.AsArray())
            table.Add(TextTable.Time(e!["at"]), e["actor"], e["action"], e["target"], e["after"]);
        table.Write(Console.Out);
        return 0;
    }

    internal static JsonObject ParseTags(string? tags, string option = "tags")
    {
        var result = new JsonObject();
        if (string.IsNullOrWhiteSpace(tags))
            return result;
        foreach (var pair in tags.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                throw new UsageException($"--{option} wants name=value pairs separated by commas, not '{pair}'");
            result[pair[..eq]] = pair[(eq + 1)..];
        }
        return result;
    }
}
