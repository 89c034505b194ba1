using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using MQTTnet;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// An attacker holding one enrollment token against the embedded broker: the fleet's own identities, memory
/// reserved before authentication, connections that never authenticate, oversized packets, bad profiles.
/// </summary>
[Collection("processes")]
public sealed class HostileBrokerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-hostile-").FullName;
    private readonly Fleet _fleet;

    public HostileBrokerTests() => _fleet = new Fleet(_dir, extraArgs: ["--Fleet:Broker:ConnectTimeoutSeconds", "2"]);

    private async Task<HttpResponseMessage> EnrollAsync(string deviceId, SigningKey key, string? profile = null)
    {
        var body = new JsonObject
        {
            ["token"] = await _fleet.EnrollmentToken(),
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        };
        if (profile is not null)
            body["hardwareProfile"] = profile;
        return await _fleet.Send(HttpMethod.Post, "/api/enroll", body, apiKey: "");
    }

    private static async Task AssertRefusedAsync(HttpResponseMessage response, HttpStatusCode status, string error)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{response.StatusCode}: {body}");
        Assert.Equal(error, JsonNode.Parse(body)!["error"]!.GetValue<string>());
    }

    private MqttClientOptions DeviceOptions(string id, SigningKey key) =>
        new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _fleet.BrokerPort).WithClientId(id)
            .WithCredentials(id, DeviceToken.Create(key, id, DateTimeOffset.UtcNow, TimeSpan.FromMinutes(5)))
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithTimeout(TimeSpan.FromSeconds(10)).Build();

    [Fact]
    public async Task No_device_can_enroll_under_the_fleets_own_identities()
    {
        using var key = SigningKey.Generate();
        var instance = (await _fleet.Health())!["instance"]!.GetValue<string>();
        foreach (var id in new[] { "edgefleet-service", "edgefleet-fleet", $"edgefleet-fleet-{instance}", "edgefleet", "edgefleet.x" })
        {
            var response = await EnrollAsync(id, key);
            await AssertRefusedAsync(response, HttpStatusCode.BadRequest, EnrollErrors.ReservedDeviceId);
        }
        Assert.Contains("reserved", await (await EnrollAsync("edgefleet-dynsec-1", key)).Content.ReadAsStringAsync(), StringComparison.Ordinal);
        // Nothing reached the registry, and the fleet's own client is still the one connected.
        Assert.DoesNotContain((await _fleet.Devices()).Select(d => d!["device"]!["id"]!.GetValue<string>()), id => id.StartsWith("edgefleet", StringComparison.Ordinal));
        var health = (await _fleet.Health())!;
        Assert.Equal("ok", health["status"]!.GetValue<string>());
        Assert.Equal(0, health["identityCollisions"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_device_cannot_connect_under_a_reserved_client_id_so_the_fleets_session_is_never_taken_over()
    {
        using var key = SigningKey.Generate();
        Assert.True((await EnrollAsync("pump-1", key)).IsSuccessStatusCode);
        var connects = Count(_fleet.Output, "Fleet service connected to broker");
        // An attacker tries client ids in the fleet's namespace, with a valid token of its own for each name:
        // refused at CONNECT, before MQTTnet would hand the name's session to the newcomer.
        for (var i = 0; i < 20; i++)
        {
            using var intruder = new MqttClientFactory().CreateMqttClient();
            var result = await intruder.ConnectAsync(DeviceOptions($"edgefleet-fleet-{i}", key));
            Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, result.ResultCode);
        }
        using var device = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await device.ConnectAsync(DeviceOptions("pump-1", key))).ResultCode);
        await Task.Delay(1500);
        Assert.True((await _fleet.Health())!["brokerConnected"]!.GetValue<bool>());
        Assert.Equal(connects, Count(_fleet.Output, "Fleet service connected to broker"));
        Assert.Contains("reserved namespace", _fleet.Output, StringComparison.Ordinal);
    }

    private static int Count(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
            n++;
        return n;
    }

    [Fact]
    public async Task A_flood_of_connects_announcing_256_MB_leaves_the_fleets_memory_flat_and_devices_still_connect()
    {
        var pid = FleetPid();
        // Warm up the accept path (JIT, the thread pool's first workers), then read the idle figures.
        var warmUp = new List<Socket>();
        await FloodAsync(50, warmUp);
        warmUp.ForEach(socket => socket.Dispose());
        await Task.Delay(1000);
        var (idleData, idleRss) = Memory(pid);
        var idleThreads = Threads(pid);
        var sockets = new List<Socket>();
        try
        {
            await FloodAsync(1000, sockets);
            await Task.Delay(1500);
            var (data, rss) = Memory(pid);
            Assert.True(data - idleData < 50 << 20, $"VmData grew by {(data - idleData) >> 20} MB under 1,000 half-open CONNECTs; {idleThreads} idle, {Threads(pid)} now");
            Assert.True(rss - idleRss < 50 << 20, $"VmRSS grew by {(rss - idleRss) >> 20} MB under 1,000 half-open CONNECTs");
            Assert.True((await _fleet.Health())!["brokerRefusedUnauthenticated"]!.GetValue<long>() >= 1000, "every hostile connection is counted");
            // A real device gets in meanwhile.
            using var key = SigningKey.Generate();
            Assert.True((await EnrollAsync("pump-2", key)).IsSuccessStatusCode);
            using var device = new MqttClientFactory().CreateMqttClient();
            Assert.Equal(MqttClientConnectResultCode.Success, (await device.ConnectAsync(DeviceOptions("pump-2", key))).ResultCode);
        }
        finally
        {
            foreach (var socket in sockets)
                socket.Dispose();
        }
    }

    [Fact]
    public async Task Without_tls_the_broker_listens_on_loopback_only_by_default()
    {
        Assert.Contains("loopback only", _fleet.Output, StringComparison.Ordinal);
        var outside = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == System.Net.NetworkInformation.OperationalStatus.Up)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(u => u.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
        if (outside is null)
            return; // a host with loopback only: nothing else to try
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(() => socket.ConnectAsync(outside, _fleet.BrokerPort));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Fact]
    public async Task A_connection_that_never_authenticates_is_closed_after_the_connect_timeout()
    {
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await silent.ConnectAsync(IPAddress.Loopback, _fleet.BrokerPort);
        using var trickle = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await trickle.ConnectAsync(IPAddress.Loopback, _fleet.BrokerPort);
        await trickle.SendAsync(new byte[] { 0x10, 0x40 }); // a CONNECT of 64 bytes, of which none ever comes
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (var socket in new[] { silent, trickle })
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                Assert.Equal(0, await socket.ReceiveAsync(new byte[16], SocketFlags.None, timeout.Token)); // closed by the fleet
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                // closed by the fleet with bytes unread
            }
        }
        Assert.InRange(clock.Elapsed.TotalSeconds, 1, 10);
    }

    [Fact]
    public async Task An_oversized_packet_from_an_authenticated_device_closes_its_connection_only()
    {
        using var key = SigningKey.Generate();
        Assert.True((await EnrollAsync("pump-3", key)).IsSuccessStatusCode);
        using var device = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await device.ConnectAsync(DeviceOptions("pump-3", key))).ResultCode);
        var big = new MqttApplicationMessageBuilder().WithTopic("ef/v1/pump-3/telemetry").WithPayload(new byte[2 << 20]).Build();
        try
        {
            await device.PublishAsync(big);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            // the broker closed the connection while the packet was on its way
        }
        Wait.Until(() => !device.IsConnected, TimeSpan.FromSeconds(10), () => "the device stayed connected after a 2 MB packet");
        Assert.True((await _fleet.Health())!["brokerConnected"]!.GetValue<bool>());
        using var again = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await again.ConnectAsync(DeviceOptions("pump-3", key))).ResultCode);
    }

    [Fact]
    public async Task Enrollment_refuses_a_hardware_profile_outside_the_schema()
    {
        // Anonymous, so its body is small: a 1 MB request is refused before it is read.
        using (var huge = new HttpClient())
        using (var body = new StringContent("{\"token\":\"" + new string('a', 1 << 20) + "\"}", System.Text.Encoding.UTF8, "application/json"))
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await huge.PostAsync(new Uri($"{_fleet.Url}/api/enroll"), body)).StatusCode);
        using var key = SigningKey.Generate();
        await AssertRefusedAsync(await EnrollAsync("pump-4", key, "<script>" + new string('x', 100_000) + "</script>"), HttpStatusCode.RequestEntityTooLarge, EnrollErrors.Malformed);
        await AssertRefusedAsync(await EnrollAsync("pump-4", key, "<script>alert(1)</script>"), HttpStatusCode.BadRequest, EnrollErrors.Malformed);
        await AssertRefusedAsync(await EnrollAsync("pump-4", key, new string('a', 65)), HttpStatusCode.BadRequest, EnrollErrors.Malformed);
        Assert.True((await EnrollAsync("pump-4", key, "raspberry-pi-5")).IsSuccessStatusCode);
    }

    /// <summary>Opens connections that each send only a CONNECT header announcing 256 MB.</summary>
    private async Task FloodAsync(int count, List<Socket> keep)
    {
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(IPAddress.Loopback, _fleet.BrokerPort);
                await socket.SendAsync(new byte[] { 0x10, 0xff, 0xff, 0xff, 0x7f });
            }
            catch (SocketException)
            {
                // closed on accept: over the pending limit
            }
            keep.Add(socket);
        }
    }

    [Fact]
    public async Task Roles_outside_the_enum_are_refused_wherever_a_role_is_taken()
    {
        foreach (JsonNode role in new JsonNode[] { 99, "99", -1 })
        {
            using var key = await _fleet.Send(HttpMethod.Post, "/api/api-keys", new JsonObject { ["name"] = "x", ["role"] = role.DeepClone() });
            Assert.Equal(HttpStatusCode.BadRequest, key.StatusCode);
            using var user = await _fleet.Send(HttpMethod.Post, "/api/users", new JsonObject { ["username"] = "eve", ["role"] = role.DeepClone(), ["password"] = "a-long-enough-password-1" });
            Assert.Equal(HttpStatusCode.BadRequest, user.StatusCode);
        }
        using var listed = await _fleet.Send(HttpMethod.Get, "/api/api-keys");
        Assert.DoesNotContain("\"x\"", await listed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Guessing_enrollment_tokens_is_throttled_per_address_and_audited()
    {
        using var key = SigningKey.Generate();
        var token = await _fleet.EnrollmentToken();
        for (var i = 0; i < 10; i++)
        {
            using var guess = await _fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
            {
                ["token"] = $"efe_guess{i}",
                ["deviceId"] = "cam-9",
                ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
            }, apiKey: "");
            Assert.Equal(HttpStatusCode.Forbidden, guess.StatusCode);
        }
        // The eleventh attempt is refused unchecked, even with a valid token, until the minute is over.
        using (var blocked = await _fleet.Send(HttpMethod.Post, "/api/enroll", new JsonObject
        {
            ["token"] = token,
            ["deviceId"] = "cam-9",
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        }, apiKey: ""))
        {
            await AssertRefusedAsync(blocked, HttpStatusCode.TooManyRequests, EnrollErrors.Throttled);
            Assert.NotNull(blocked.Headers.RetryAfter);
        }
        Assert.Null(await _fleet.Device("cam-9"));
        using var audit = await _fleet.Send(HttpMethod.Get, "/api/audit");
        Assert.Contains("enroll.throttled", await audit.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private int FleetPid()
    {
        // The fleet's process: the one whose command line names this test's data directory.
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                continue;
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(_dir, StringComparison.Ordinal))
                    return pid;
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        throw new InvalidOperationException("the fleet's process was not found");
    }

    private static string Threads(int pid) => File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Threads:", StringComparison.Ordinal));

    /// <summary>VmData and VmRSS of a process, in bytes.</summary>
    private static (long Data, long Rss) Memory(int pid)
    {
        long data = 0, rss = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmData:", StringComparison.Ordinal))
                data = Kb(line);
            else if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                rss = Kb(line);
        }
        return (data, rss);

        static long Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    public void Dispose()
    {
        _fleet.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
