using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli;

/// <summary>
/// <c>users create|list|set</c>: the web console's users, through the admin API. The first admin is made with
/// the fleet's bootstrap admin API key; passwords come from a file or standard input, never from arguments
/// (which other local users can read in the process list).
/// </summary>
public static class UserCommands
{
    public static async Task<int> CreateAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "username", "role", "password-file", "json"]);
        var request = new JsonObject { ["username"] = args.Require("username"), ["role"] = args.Get("role") ?? "viewer", ["password"] = ReadPassword(args) };
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri("/api/users", UriKind.Relative), request)).ConfigureAwait(false);
        Print(args, body);
        return 0;
    }

    public static async Task<int> ListAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "json"]);
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.GetAsync(new Uri("/api/users", UriKind.Relative))).ConfigureAwait(false);
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return 0;
        }
        var table = new TextTable("USER", "ROLE", "LAST LOGIN", "STATE");
        foreach (var u in JsonNode.Parse(body)!.AsArray())
        {
            var state = u!["disabledAt"] is not null ? "disabled" : u["lockedUntil"] is { } l ? $"locked until {TextTable.Time(l)}" : "active";
            table.Add(u["username"], u["role"], u["lastLoginAt"] is { } at ? TextTable.Time(at) : "never", state);
        }
        table.Write(Console.Out);
        return 0;
    }

    /// <summary><c>users set --username U [--role R] [--password-file F|-] [--disable|--enable]</c>.</summary>
    public static async Task<int> SetAsync(CommandLine args)
    {
        args.AllowOnly([.. FleetHttp.Options, "username", "role", "password-file", "disable", "enable", "json"]);
        var request = new JsonObject();
        if (args.Get("role") is { } role)
            request["role"] = role;
        if (args.Get("password-file") is not null)
            request["password"] = ReadPassword(args);
        if (args.Has("disable") || args.Has("enable"))
            request["disabled"] = args.Has("disable");
        if (request.Count == 0)
            throw new UsageException("users set: give --role, --password-file, --disable or --enable");
        using var http = FleetHttp.Create(args);
        var body = await FleetHttp.SendAsync(http, () => http.PostAsJsonAsync(new Uri($"/api/users/{Uri.EscapeDataString(args.Require("username"))}", UriKind.Relative), request)).ConfigureAwait(false);
        Print(args, body);
        return 0;
    }

    /// <summary>The password from <c>--password-file F</c>, or standard input (<c>-</c> or no option): its first line.</summary>
    private static string ReadPassword(CommandLine args)
    {
        var file = args.Get("password-file") ?? "-";
        var text = file == "-" ? Console.In.ReadLine() : File.ReadLines(file).FirstOrDefault();
        return string.IsNullOrEmpty(text) ? throw new UsageException("no password: give it on standard input or in --password-file F (first line)") : text;
    }

    private static void Print(CommandLine args, string body)
    {
        if (args.Has("json"))
        {
            Console.WriteLine(body);
            return;
        }
        var u = JsonNode.Parse(body)!;
        Console.WriteLine($"user {u["username"]} ({u["role"]}){(u["disabledAt"] is null ? "" : ", disabled")}");
    }
}
