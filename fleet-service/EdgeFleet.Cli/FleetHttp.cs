using System.Net.Http.Headers;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.Cli;

/// <summary>
/// The fleet's HTTP API as the CLI reaches it: <c>--fleet</c> (or <c>$EDGEFLEET_URL</c>) and an operator API
/// key from <c>--api-key-file</c> or <c>$EDGEFLEET_API_KEY</c> (never a command-line value, which would
/// land in shell history and process lists).
/// </summary>
public static class FleetHttp
{
    /// <summary>The options every command that talks to the fleet accepts.</summary>
    public static readonly string[] Options = ["fleet", "api-key-file"];

    public static HttpClient Create(CommandLine args, TimeSpan? timeout = null)
    {
        var fleet = args.Get("fleet") ?? Environment.GetEnvironmentVariable("EDGEFLEET_URL") ?? "http://127.0.0.1:5080";
        if (!Uri.TryCreate(fleet, UriKind.Absolute, out var uri))
            throw new UsageException($"--fleet '{fleet}' is not a URL");
        var http = new HttpClient { BaseAddress = uri, Timeout = timeout ?? TimeSpan.FromSeconds(30) };
        var key = args.Get("api-key-file") is { } file
            ? (File.Exists(file) ? File.ReadAllText(file).Trim() : throw new UsageException($"--api-key-file {file} does not exist"))
            : Environment.GetEnvironmentVariable("EDGEFLEET_API_KEY");
        if (!string.IsNullOrWhiteSpace(key))
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.Trim());
        return http;
    }

    /// <summary>Sends a request; a refusal or an unreachable fleet becomes a one-line <see cref="CommandException"/>.</summary>
    public static async Task<string> SendAsync(HttpClient http, Func<Task<HttpResponseMessage>> send)
    {
        try
        {
            using var response = await send().ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
                return body;
            throw new CommandException(response.StatusCode switch
            {
                System.Net.HttpStatusCode.Unauthorized when http.DefaultRequestHeaders.Authorization is null =>
                    $"{http.BaseAddress} needs an API key: give --api-key-file F or set $EDGEFLEET_API_KEY",
                System.Net.HttpStatusCode.Unauthorized =>
                    $"{http.BaseAddress} refused the API key (unknown, revoked or expired)",
                System.Net.HttpStatusCode.Forbidden =>
                    $"{http.BaseAddress} answered 403: this API key's role does not allow it" + Reason(body, prefix: " (", suffix: ")"),
                _ => $"{http.BaseAddress} answered {(int)response.StatusCode}" + Reason(body, prefix: ": ", suffix: ""),
            });
        }
        catch (HttpRequestException e)
        {
            var cause = e.InnerException is System.Security.Authentication.AuthenticationException tls
                ? $"TLS failed: {Innermost(tls).Message}"
                : Innermost(e).Message;
            throw new CommandException($"cannot reach the fleet service at {http.BaseAddress}: {cause}");
        }
    }

    /// <summary>
    /// The reason an error body gives: an API error's <c>reason</c> (with its code), a short text as it is, nothing
    /// for an empty body (so a refusal never ends in a dangling colon).
    /// </summary>
    public static string Reason(string body, string prefix, string suffix)
    {
        var text = body.Trim();
        if (text.Length == 0)
            return "";
        try
        {
            if (System.Text.Json.Nodes.JsonNode.Parse(text) is System.Text.Json.Nodes.JsonObject o && o["reason"] is { } reason)
                return prefix + reason.GetValue<string>() + (o["error"] is { } code ? $" [{code.GetValue<string>()}]" : "") + suffix;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            // Not an API error: shown as text.
        }
        return prefix + (text.Length > 300 ? text[..300] + "…" : text) + suffix;
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner)
            e = inner;
        return e;
    }
}
