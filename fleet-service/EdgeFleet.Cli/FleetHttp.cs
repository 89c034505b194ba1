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
            var hint = response.StatusCode switch
            {
                System.Net.HttpStatusCode.Unauthorized => " (give an API key: --api-key-file F or $EDGEFLEET_API_KEY)",
                System.Net.HttpStatusCode.Forbidden => " (this API key's role does not allow it)",
                _ => "",
            };
            throw new CommandException($"{http.BaseAddress} answered {(int)response.StatusCode}{hint}: {body}");
        }
        catch (HttpRequestException e)
        {
            throw new CommandException($"cannot reach the fleet service at {http.BaseAddress}: {e.Message}");
        }
    }
}
