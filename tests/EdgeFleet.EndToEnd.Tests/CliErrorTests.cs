using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// Each class of failure the operator's CLI meets says which one it is, in one sentence: no key, a refused key, a
/// role that does not allow the action, an unknown object, an unreachable fleet, a TLS failure, a mistyped option
/// or number. Never a raw JSON body, a dangling colon or a .NET exception's text.
/// </summary>
[Collection("processes")]
public sealed class CliErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-cli-errors-").FullName;
    private readonly Fleet _fleet;

    public CliErrorTests() => _fleet = new Fleet(Path.Combine(_dir, "fleet"));

    public void Dispose()
    {
        _fleet.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static string Cli(int expectedExit, string? apiKey, params string[] args)
    {
        var environment = new Dictionary<string, string> { ["EDGEFLEET_API_KEY"] = apiKey ?? "" };
        using var cli = ChildProcess.Start("cli", "dotnet", [Repo.CliDll, .. args], environment: environment);
        Assert.True(cli.WaitForExit(TimeSpan.FromSeconds(60)) == expectedExit, cli.Output);
        var output = cli.Output.Trim();
        Assert.DoesNotContain("Exception", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.False(output.EndsWith(':'), output);
        return output;
    }

    [Fact]
    public async Task Each_failure_class_reads_as_itself()
    {
        var fleet = _fleet.Url;
        Assert.Contains("needs an API key: give --api-key-file F or set $EDGEFLEET_API_KEY",
            Cli(1, null, "devices", "list", "--fleet", fleet), StringComparison.Ordinal);
        Assert.Contains("refused the API key (unknown, revoked or expired)",
            Cli(1, "efk_not-a-real-key", "devices", "list", "--fleet", fleet), StringComparison.Ordinal);

        using var created = await _fleet.Send(HttpMethod.Post, "/api/api-keys", new JsonObject { ["name"] = "watcher", ["role"] = "viewer" });
        var viewer = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["key"]!.GetValue<string>();
        Cli(0, viewer, "devices", "list", "--fleet", fleet);
        Assert.Contains("answered 403: this API key's role does not allow it",
            Cli(1, viewer, "rollout", "pause", "--id", "r-1", "--reason", "x", "--fleet", fleet), StringComparison.Ordinal);

        // An unknown object: the API's reason and code, not its JSON.
        var unknown = Cli(1, _fleet.AdminKey, "rollout", "status", "--id", "nope", "--fleet", fleet);
        Assert.Contains("answered 404: no rollout nope [UnknownRollout]", unknown, StringComparison.Ordinal);
        Assert.DoesNotContain("{", unknown, StringComparison.Ordinal);

        // Nothing listens on port 9; HTTPS spoken to the fleet's plain HTTP port fails its handshake.
        Assert.Contains("cannot reach the fleet service at http://127.0.0.1:9/",
            Cli(1, _fleet.AdminKey, "devices", "list", "--fleet", "http://127.0.0.1:9"), StringComparison.Ordinal);
        var tls = Cli(1, _fleet.AdminKey, "devices", "list", "--fleet", fleet.Replace("http://", "https://", StringComparison.Ordinal));
        Assert.Contains("TLS failed: ", tls, StringComparison.Ordinal);
        Assert.DoesNotContain("inner exception", tls, StringComparison.Ordinal);

        // Usage: an unknown option given last, a known one without its value, a number that is not one.
        Assert.Contains("unknown option --bogus for 'devices list'", Cli(2, _fleet.AdminKey, "devices", "list", "--fleet", fleet, "--bogus"),
            StringComparison.Ordinal);
        Assert.Contains("option --fleet needs a value", Cli(2, _fleet.AdminKey, "devices", "list", "--fleet"), StringComparison.Ordinal);
        Assert.Contains("--hours must be a number, got 'soon'",
            Cli(2, _fleet.AdminKey, "devices", "enroll-token", "--hours", "soon", "--fleet", fleet), StringComparison.Ordinal);
    }

    [Fact]
    public void Tables_keep_their_columns_in_line_and_times_read_to_the_second()
    {
        var fleet = _fleet.Url;
        var longName = "a-group-whose-name-is-longer-than-any-column-was";
        Cli(0, _fleet.AdminKey, "groups", "create", "--name", longName, "--selector", "site=north", "--fleet", fleet);
        Cli(0, _fleet.AdminKey, "groups", "create", "--name", "short", "--selector", "site=south", "--fleet", fleet);
        var lines = Cli(0, _fleet.AdminKey, "groups", "list", "--fleet", fleet).Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        Assert.StartsWith("GROUP", lines[0], StringComparison.Ordinal);
        // Every row's second column starts where the header's KIND does, however long the name before it.
        var kind = lines[0].IndexOf("KIND", StringComparison.Ordinal);
        Assert.All(lines.Skip(1), l => Assert.Equal("dynamic", l[kind..].Split(' ')[0]));
        Assert.Contains(lines, l => l.StartsWith(longName, StringComparison.Ordinal));

        var keys = Cli(0, _fleet.AdminKey, "api-keys", "list", "--fleet", fleet);
        Assert.Matches(@"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", keys);
        Assert.DoesNotMatch(@"\d\d:\d\d:\d\d\.\d", keys);
    }

    [Fact]
    public void A_command_s_help_is_that_command_s_usage()
    {
        var help = Cli(0, null, "rollout", "pause", "--help");
        Assert.Contains("edgefleet rollout pause|resume|approve --id R", help, StringComparison.Ordinal);
        Assert.DoesNotContain("model quantize", help, StringComparison.Ordinal);
        Assert.Contains("$EDGEFLEET_API_KEY", help, StringComparison.Ordinal);
        Assert.Contains("edgefleet model list | model show --model-id ID", Cli(0, null, "model", "show", "--help"), StringComparison.Ordinal);
        // A command the usage does not know gets the whole list.
        Assert.Contains("model quantize", Cli(0, null, "nothing", "--help"), StringComparison.Ordinal);
    }
}
