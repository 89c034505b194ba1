using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary><c>edgefleet-agent enroll</c> as a field engineer runs it: as root, against a real fleet.</summary>
[Collection("processes")]
public sealed class EnrollTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-enroll-").FullName;
    private readonly Fleet _fleet;
    private readonly string _state;
    private readonly string _config;

    public EnrollTests()
    {
        _fleet = new Fleet(Path.Combine(_dir, "fleet"));
        _state = Path.Combine(_dir, "state");
        Directory.CreateDirectory(_state);
        _config = Path.Combine(_dir, "agent.json");
        File.WriteAllText(_config, new JsonObject { ["deviceId"] = "field-7", ["stateDirectory"] = _state }.ToJsonString());
    }

    private (int Exit, string Output) Enroll(string token)
    {
        using var p = ChildProcess.Start("enroll", "dotnet", [Repo.AgentDll, "enroll", "--fleet", _fleet.Url, "--token", token, "--config", _config]);
        return (p.WaitForExit(TimeSpan.FromSeconds(60)), p.Output);
    }

    [Fact]
    public async Task Enrolls_once_keeps_its_key_on_a_retry_and_hands_its_files_to_the_service_user()
    {
        Assert.Equal("root", Environment.UserName); // the tests run as root, as apt and the field engineer do
        using (var chown = ChildProcess.Start("chown", "chown", ["nobody:nogroup", _state]))
            Assert.Equal(0, chown.WaitForExit(TimeSpan.FromSeconds(10)));

        var token = await _fleet.EnrollmentToken();
        var (exit, output) = Enroll(token);
        Assert.True(exit == 0, output);
        Assert.Contains("enrolled as field-7", output, StringComparison.Ordinal);
        var key = File.ReadAllText(Path.Combine(_state, "device.key"));
        foreach (var file in new[] { "device.key", "enrollment.json" })
        {
            using var stat = ChildProcess.Start("stat", "stat", ["-c", "%U %a", Path.Combine(_state, file)]);
            stat.WaitForExit(TimeSpan.FromSeconds(10));
            Assert.Equal("nobody 600", stat.Output.Trim());
        }
        var enrollment = JsonNode.Parse(File.ReadAllText(Path.Combine(_state, "enrollment.json")))!;
        Assert.Equal(_fleet.BrokerPort, enrollment["brokerPort"]!.GetValue<int>());
        Assert.Equal("127.0.0.1", enrollment["brokerHost"]!.GetValue<string>());

        // A retry with the same token (the answer was lost) succeeds and keeps the key. A new key under the
        // same id is someone else; another device with the used-up token is refused; each with the fleet's reason.
        (exit, output) = Enroll(token);
        Assert.True(exit == 0, output);
        Assert.Equal(key, File.ReadAllText(Path.Combine(_state, "device.key")));
        File.Delete(Path.Combine(_state, "device.key"));
        (exit, output) = Enroll(await _fleet.EnrollmentToken());
        Assert.Equal(1, exit);
        Assert.Contains("enrollment refused (409): device-id-taken", output, StringComparison.Ordinal);
        File.WriteAllText(_config, new JsonObject { ["deviceId"] = "field-8", ["stateDirectory"] = _state }.ToJsonString());
        (exit, output) = Enroll(token);
        Assert.Equal(1, exit);
        Assert.Contains("enrollment refused (403): token-used", output, StringComparison.Ordinal);
        (exit, output) = Enroll("efe_wrong");
        Assert.Equal(1, exit);
        Assert.Contains("invalid-token", output, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _fleet.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
