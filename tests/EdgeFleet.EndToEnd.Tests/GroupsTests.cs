using System.Net;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>Tags, static and dynamic groups, filtering and their audit trail, through the API and the CLI.</summary>
[Collection("processes")]
public sealed class GroupsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-groups-").FullName;
    private readonly Fleet _fleet;

    public GroupsTests() => _fleet = new Fleet(_dir);

    private async Task EnrollAsync(string deviceId, JsonObject tags)
    {
        var token = await _fleet.EnrollmentToken(tags: tags);
        using var response = await _fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
        {
            ["token"] = token,
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(SigningKey.Generate().PublicKeyBytes),
        }, apiKey: "");
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    private async Task<JsonNode> OkAsync(HttpMethod method, string path, JsonNode? body = null, string? apiKey = null)
    {
        using var response = await _fleet.Send(method, path, body, apiKey);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {path}: {response.StatusCode} {text}");
        return JsonNode.Parse(text.Length == 0 ? "null" : text) ?? new JsonObject();
    }

    private async Task<string[]> DeviceIdsAsync(string query) =>
        [.. (await OkAsync(HttpMethod.Get, "/api/devices" + query)).AsArray().Select(v => v!["device"]!["id"]!.GetValue<string>())];

    private async Task ExpectErrorAsync(HttpMethod method, string path, JsonNode? body, HttpStatusCode status, string error, string? apiKey = null)
    {
        using var response = await _fleet.Send(method, path, body, apiKey);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{method} {path}: {response.StatusCode} {text}");
        if (error.Length > 0)
            Assert.Equal(error, JsonNode.Parse(text)!["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task Operators_tag_devices_group_them_statically_and_by_selector_and_every_change_is_audited()
    {
        await EnrollAsync("cam-berlin-1", new JsonObject { ["site"] = "berlin", ["region"] = "eu" });
        await EnrollAsync("cam-berlin-2", new JsonObject { ["site"] = "berlin", ["region"] = "eu" });
        await EnrollAsync("cam-austin-1", new JsonObject { ["site"] = "austin", ["region"] = "us" });

        Assert.Equal(["cam-berlin-1", "cam-berlin-2"], await DeviceIdsAsync("?selector=" + Uri.EscapeDataString("region in (eu)")));

        var dynamic = await OkAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "eu-canary", ["selector"] = "region=eu,canary=yes" });
        Assert.Equal("dynamic", dynamic["kind"]!.GetValue<string>());
        Assert.Equal(0, dynamic["memberCount"]!.GetValue<int>());
        // Tagging a device moves it into the dynamic group at once.
        var tagged = await OkAsync(HttpMethod.Patch, "/api/devices/cam-berlin-2/tags", new JsonObject { ["set"] = new JsonObject { ["canary"] = "yes" } });
        Assert.Equal("yes", tagged["device"]!["tags"]!["canary"]!.GetValue<string>());
        Assert.Equal(["cam-berlin-2"], await DeviceIdsAsync("?group=eu-canary"));

        await OkAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "night-shift", ["devices"] = new JsonArray("cam-austin-1", "cam-berlin-1") });
        await OkAsync(HttpMethod.Patch, "/api/groups/night-shift", new JsonObject { ["remove"] = new JsonArray("cam-berlin-1"), ["add"] = new JsonArray("cam-berlin-2") });
        Assert.Equal(["cam-austin-1", "cam-berlin-2"], await DeviceIdsAsync("?group=night-shift"));
        Assert.Equal(["cam-berlin-2"], await DeviceIdsAsync("?group=night-shift&selector=site%3Dberlin"));
        var groups = (await OkAsync(HttpMethod.Get, "/api/groups")).AsArray();
        Assert.Equal(["eu-canary", "night-shift"], groups.Select(g => g!["name"]!.GetValue<string>()));

        // The audit log has who, what, and the state before and after.
        var tagAudit = (await OkAsync(HttpMethod.Get, "/api/audit?target=cam-berlin-2")).AsArray().First(e => e!["action"]!.GetValue<string>() == "device.tags")!;
        Assert.StartsWith("key:", tagAudit["actor"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.DoesNotContain("canary", tagAudit["before"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("\"canary\":\"yes\"", tagAudit["after"]!.GetValue<string>(), StringComparison.Ordinal);
        var groupAudit = (await OkAsync(HttpMethod.Get, "/api/audit?target=group:night-shift")).AsArray();
        Assert.Equal(["group.update", "group.create"], groupAudit.Select(e => e!["action"]!.GetValue<string>()));
        Assert.Contains("cam-berlin-1", groupAudit[0]!["before"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.DoesNotContain("cam-berlin-1", groupAudit[0]!["after"]!.GetValue<string>(), StringComparison.Ordinal);

        await OkAsync(HttpMethod.Delete, "/api/groups/eu-canary");
        Assert.Equal("group.delete", (await OkAsync(HttpMethod.Get, "/api/audit?target=group:eu-canary")).AsArray()[0]!["action"]!.GetValue<string>());
        Assert.Equal("yes", (await _fleet.Device("cam-berlin-2"))!["device"]!["tags"]!["canary"]!.GetValue<string>()); // devices untouched
    }

    [Fact]
    public async Task Bad_group_and_tag_requests_get_clear_errors_and_viewers_cannot_change_anything()
    {
        await EnrollAsync("cam-1", new JsonObject { ["site"] = "a" });
        await ExpectErrorAsync(HttpMethod.Get, "/api/devices?selector=" + Uri.EscapeDataString("site in x"), null, HttpStatusCode.BadRequest, "InvalidSelector");
        await ExpectErrorAsync(HttpMethod.Get, "/api/devices?group=nope", null, HttpStatusCode.NotFound, "UnknownGroup");
        await ExpectErrorAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "Bad Name" }, HttpStatusCode.BadRequest, "InvalidGroupName");
        await ExpectErrorAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "g", ["selector"] = "site=a", ["devices"] = new JsonArray("cam-1") },
            HttpStatusCode.BadRequest, "InvalidGroup");
        await ExpectErrorAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "g", ["devices"] = new JsonArray("cam-1", "ghost") }, HttpStatusCode.NotFound, "UnknownDevice");
        await OkAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "g", ["selector"] = "site=a" });
        await ExpectErrorAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "g", ["selector"] = "site=b" }, HttpStatusCode.Conflict, "GroupExists");
        await ExpectErrorAsync(HttpMethod.Patch, "/api/groups/g", new JsonObject { ["add"] = new JsonArray("cam-1") }, HttpStatusCode.BadRequest, "InvalidGroup");
        await ExpectErrorAsync(HttpMethod.Patch, "/api/devices/ghost/tags", new JsonObject { ["set"] = new JsonObject { ["a"] = "b" } }, HttpStatusCode.NotFound, "UnknownDevice");
        await ExpectErrorAsync(HttpMethod.Patch, "/api/devices/cam-1/tags", new JsonObject { ["set"] = new JsonObject { ["no spaces"] = "b" } }, HttpStatusCode.BadRequest, "InvalidTags");
        var many = new JsonObject();
        for (var i = 0; i < 40; i++)
            many[$"k{i}"] = "v";
        await ExpectErrorAsync(HttpMethod.Patch, "/api/devices/cam-1/tags", new JsonObject { ["set"] = many }, HttpStatusCode.BadRequest, "InvalidTags");

        var viewer = (await OkAsync(HttpMethod.Post, "/api/api-keys", new JsonObject { ["name"] = "watcher", ["role"] = "viewer" }))["key"]!.GetValue<string>();
        await ExpectErrorAsync(HttpMethod.Patch, "/api/devices/cam-1/tags", new JsonObject { ["set"] = new JsonObject { ["a"] = "b" } }, HttpStatusCode.Forbidden, "", viewer);
        await ExpectErrorAsync(HttpMethod.Post, "/api/groups", new JsonObject { ["name"] = "v" }, HttpStatusCode.Forbidden, "", viewer);
        await ExpectErrorAsync(HttpMethod.Delete, "/api/groups/g", null, HttpStatusCode.Forbidden, "", viewer);
        Assert.Single((await OkAsync(HttpMethod.Get, "/api/groups", apiKey: viewer)).AsArray());
        Assert.Equal(["a"], (await _fleet.Device("cam-1"))!["device"]!["tags"]!.AsObject().Select(kv => kv.Value!.GetValue<string>()));
    }

    [Fact]
    public async Task The_cli_tags_devices_and_manages_groups()
    {
        await EnrollAsync("cam-1", new JsonObject { ["site"] = "a" });
        await EnrollAsync("cam-2", new JsonObject { ["site"] = "b" });
        Assert.Contains("cam-1: line=3,site=a", Cli("devices", "tag", "--device", "cam-1", "--set", "line=3"), StringComparison.Ordinal);
        Assert.Contains("line3 (dynamic, selector line=3): 1 device(s)", Cli("groups", "create", "--name", "line3", "--selector", "line=3"), StringComparison.Ordinal);
        Assert.Contains("pilot (static, listed devices): 2 device(s)", Cli("groups", "create", "--name", "pilot", "--devices", "cam-1,cam-2"), StringComparison.Ordinal);
        Assert.Contains("pilot (static, listed devices): 1 device(s)", Cli("groups", "update", "--name", "pilot", "--remove", "cam-1"), StringComparison.Ordinal);
        var listed = Cli("devices", "list", "--group", "line3");
        Assert.Contains("cam-1", listed, StringComparison.Ordinal);
        Assert.DoesNotContain("cam-2", listed, StringComparison.Ordinal);
        Assert.Contains("deleted group pilot", Cli("groups", "delete", "--name", "pilot"), StringComparison.Ordinal);
        Assert.Contains("no group 'pilot'", Cli(1, "groups", "show", "--name", "pilot"), StringComparison.Ordinal);
    }

    private string Cli(params string[] args) => Cli(0, args);

    private string Cli(int expectedExit, params string[] args)
    {
        using var cli = ChildProcess.Start("cli", "dotnet", [Repo.CliDll, .. args, "--fleet", _fleet.Url], environment: new Dictionary<string, string> { ["EDGEFLEET_API_KEY"] = _fleet.AdminKey });
        Assert.True(cli.WaitForExit(TimeSpan.FromSeconds(30)) == expectedExit, cli.Output);
        return cli.Output;
    }

    public void Dispose()
    {
        _fleet.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
