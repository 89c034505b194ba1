using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.IO;

namespace EdgeFleet.Agent.Tests;

public class ConfigTests
{
    private static AgentConfig LoadText(TempDir dir, string json)
    {
        var path = dir.File("agent.json");
        File.WriteAllText(path, json);
        return AgentConfigLoader.Load(path);
    }

    [Fact]
    public void Defaults_fill_what_the_file_leaves_out_and_paths_resolve_beside_it()
    {
        using var dir = new TempDir();
        var config = LoadText(dir, """
            // comments are allowed
            { "stateDirectory": "state", "broker": { "port": 1884 }, "model": { "name": "m", "version": "1", "path": "m.onnx" }, }
            """);
        Assert.Equal(1884, config.Broker.EffectivePort);
        Assert.Null(config.Broker.Host); // unset: the enrollment's broker, else localhost
        Assert.Equal("localhost", config.Broker.EffectiveHost);
        Assert.Equal(0.5, config.Broker.MinReconnectSeconds);
        Assert.Equal(dir.File("state"), config.StateDirectory);
        Assert.Equal(dir.File("m.onnx"), config.Model!.Path);
        Assert.Equal(InputKind.DemoVibration, config.Input.Kind);
    }

    [Fact]
    public void An_enrollment_fills_the_broker_and_fleet_url_the_file_leaves_out_and_must_match_a_configured_id()
    {
        using var dir = new TempDir();
        var config = LoadText(dir, """{ "stateDirectory": "state", "broker": { "port": 1884 } }""");
        Directory.CreateDirectory(config.StateDirectory);
        using (var key = EdgeFleet.Shared.Ota.SigningKey.Generate())
            EdgeFleet.Shared.Ota.KeyFile.Write(Path.Combine(config.StateDirectory, "device.key"), key, passphrase: null);
        File.WriteAllText(Path.Combine(config.StateDirectory, "enrollment.json"), """
            {"deviceId":"cam-9","fleetUrl":"http://fleet:5080","brokerHost":"mqtt.fleet","brokerPort":8883,"brokerAuth":"token","enrolledAt":"2026-11-23T00:00:00Z"}
            """);
        using var credentials = EdgeFleet.Agent.Identity.DeviceCredentials.Load(config.StateDirectory);
        var applied = credentials.Apply(config);
        Assert.Equal(("cam-9", "mqtt.fleet", 1884, "http://fleet:5080"), (applied.DeviceId, applied.Broker.EffectiveHost, applied.Broker.EffectivePort, applied.Ota.FleetUrl));
        Assert.StartsWith("eft1.", credentials.BrokerPassword(DateTimeOffset.UtcNow), StringComparison.Ordinal);
        Assert.Throws<ConfigException>(() => credentials.Apply(config with { DeviceId = "someone-else" }));
        File.WriteAllText(Path.Combine(config.StateDirectory, "enrollment.json"), "{broken");
        Assert.Contains("enroll again", Assert.Throws<ConfigException>(() => EdgeFleet.Agent.Identity.DeviceCredentials.Load(config.StateDirectory)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "deviceId": "Bad/Id" }""", "deviceId")]
    [InlineData("""{ "broker": { "port": 70000 } }""", "broker.port")]
    [InlineData("""{ "hardwareProfile": "Jetson Orin" }""", "hardwareProfile")]
    [InlineData("""{ "ota": { "downloadStallSeconds": 0 } }""", "ota.downloadStallSeconds")]
    [InlineData("""{ "telemetry": { "commitWindowSeconds": -1 } }""", "telemetry.commitWindowSeconds")]
    [InlineData("""{ "telemetry": { "commitWindowSeconds": 3600 } }""", "telemetry.commitWindowSeconds")]
    [InlineData("""{ "input": { "condition": "on-fire" } }""", "input.condition")]
    [InlineData("""{ "input": { "kind": "jsonLines" } }""", "input.path")]
    [InlineData("""{ "input": { "driftAfterSeconds": -1 } }""", "input.driftAfterSeconds")]
    [InlineData("""{ "input": { "driftAfterSeconds": 60, "driftGain": 0 } }""", "input.driftGain")]
    [InlineData("""{ "brokr": {} }""", "brokr")]
    [InlineData("""{ "input": { "kind": "carrierPigeon" } }""", "agent.json")]
    [InlineData("""{ "telemetry": { "maxBatchRecords": 0 } }""", "maxBatchRecords")]
    [InlineData("""{ "telemetry": { "maxBufferRecords": 5 } }""", "maxBufferRecords")]
    [InlineData("""{ "telemetry": { "maxBatchBytes": 100 } }""", "maxBatchBytes")]
    [InlineData("""{ "telemetry": { "budgetReservePercent": 100 } }""", "budgetReservePercent")]
    [InlineData("""{ "telemetry": { "ttlHours": { "inferrence": 1 } } }""", "inferrence")]
    [InlineData("""{ "telemetry": { "ttlHours": { "health": -1 } } }""", "ttlHours.health")]
    [InlineData("""{ "logLevel": "Chatty" }""", "agent.json")]
    [InlineData("{", "agent.json")]
    [InlineData("""{ "fleetCaFile": "no-such-ca.pem" }""", "fleetCaFile")]
    [InlineData("""{ "broker": { "clientCertificateFile": "device.crt" } }""", "clientKeyFile go together")]
    public void Rejects_bad_configuration_with_the_reason(string json, string mentions)
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ConfigException>(() => LoadText(dir, json));
        Assert.Contains(mentions, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_file_is_a_clear_error()
    {
        var e = Assert.Throws<ConfigException>(() => AgentConfigLoader.Load("/nonexistent/agent.json"));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Generated_device_id_is_kept_across_restarts()
    {
        using var dir = new TempDir();
        var config = new AgentConfig { StateDirectory = dir.File("state") };
        var first = DeviceIdentity.Resolve(config);
        Assert.True(EdgeFleet.Shared.Wire.DeviceId.IsValid(first));
        Assert.Equal(first, DeviceIdentity.Resolve(config));
        Assert.Equal("fixed-1", DeviceIdentity.Resolve(config with { DeviceId = "fixed-1" }));
    }

    [Fact]
    public void Atomic_write_replaces_content_and_leaves_no_temp_file()
    {
        using var dir = new TempDir();
        var path = dir.File("pointer");
        AtomicFile.Write(path, "one"u8);
        AtomicFile.Write(path, "two"u8);
        Assert.Equal("two", File.ReadAllText(path));
        Assert.False(File.Exists(path + ".tmp"));
    }
}
