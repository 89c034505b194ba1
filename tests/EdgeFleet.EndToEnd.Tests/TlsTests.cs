using System.Globalization;
using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using MQTTnet;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The fleet with a configured certificate: HTTPS API, MQTT over TLS on the embedded broker, mutual TLS with
/// device certificates, and a real agent that enrolls and syncs over TLS trusting only the fleet's private CA.
/// </summary>
[Collection("processes")]
public sealed class TlsTests(DemoModel model) : IClassFixture<DemoModel>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-tls-").FullName;
    private readonly int _httpsPort = Repo.FreePort();
    private readonly int _tlsPort = Repo.FreePort();
    private TestPki? _pki;
    private Fleet? _fleet;

    private Fleet StartFleet()
    {
        _pki = new TestPki(Path.Combine(_dir, "pki"));
        var (certificate, key) = _pki.Server();
        _fleet = new Fleet(Path.Combine(_dir, "fleet"), httpsPort: _httpsPort, extraArgs:
        [
            "--Fleet:Tls:CertificatePath", certificate, "--Fleet:Tls:KeyPath", key, "--Fleet:Tls:ClientCaPath", _pki.CaPath,
            "--Fleet:Broker:TlsPort", _tlsPort.ToString(CultureInfo.InvariantCulture), "--Fleet:Broker:PublicHost", "127.0.0.1",
        ]);
        // Kestrel binds its endpoints one after another: the plain one the harness waits on may answer first.
        Wait.Until(() =>
        {
            try
            {
                using var client = new System.Net.Sockets.TcpClient();
                client.Connect(IPAddress.Loopback, _httpsPort);
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(30), () => "the HTTPS endpoint did not open");
        return _fleet;
    }

    private HttpClient Https(bool trustCa)
    {
        var handler = new HttpClientHandler();
        if (trustCa)
            handler.ServerCertificateCustomValidationCallback = (_, certificate, _, _) => ChainsToCa(certificate!);
        return new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{_httpsPort}"), Timeout = TimeSpan.FromSeconds(10) };
    }

    private bool ChainsToCa(X509Certificate2 certificate)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_pki!.Ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }

    private MqttClientOptions Tls(string clientId, string? password, (string Certificate, string Key)? clientCertificate = null)
    {
        var builder = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _tlsPort).WithClientId(clientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithTimeout(TimeSpan.FromSeconds(10))
            .WithTlsOptions(o =>
            {
                o.UseTls().WithTargetHost("127.0.0.1").WithCertificateValidationHandler(e => ChainsToCa(new X509Certificate2(e.Certificate)));
                if (clientCertificate is { } c)
                    o.WithClientCertificates([X509Certificate2.CreateFromPemFile(c.Certificate, c.Key)]);
            });
        if (password is not null)
            builder = builder.WithCredentials(clientId, password);
        return builder.Build();
    }

    private static async Task<MqttClientConnectResultCode> ConnectAsync(MqttClientOptions options)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        return (await client.ConnectAsync(options)).ResultCode;
    }

    private async Task<SigningKey> EnrollAsync(HttpClient https, string deviceId)
    {
        var key = SigningKey.Generate();
        using var response = await https.PostAsync(new Uri("/api/enroll", UriKind.Relative), new StringContent(new JsonObject
        {
            ["token"] = await _fleet!.EnrollmentToken(),
            ["deviceId"] = deviceId,
            ["publicKey"] = Convert.ToBase64String(key.PublicKeyBytes),
        }.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.True(response.IsSuccessStatusCode, body.ToJsonString());
        Assert.True(body["brokerTls"]!.GetValue<bool>());
        Assert.Equal(_tlsPort, body["brokerPort"]!.GetValue<int>());
        return key;
    }

    [Fact]
    public async Task The_api_and_the_broker_speak_tls_with_the_configured_certificate_and_accept_device_certificates()
    {
        StartFleet();
        using var https = Https(trustCa: true);
        Assert.Equal(HttpStatusCode.OK, (await https.GetAsync(new Uri("/api/health", UriKind.Relative))).StatusCode);
        using (var untrusting = Https(trustCa: false))
            await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync(new Uri("/api/health", UriKind.Relative)));

        var key = await EnrollAsync(https, "cam-1");
        await EnrollAsync(https, "cam-2");
        // Token over TLS.
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(Tls("cam-1", DeviceToken.Create(key, "cam-1", DateTimeOffset.UtcNow, TimeSpan.FromMinutes(5)))));
        // Mutual TLS: the device's certificate is its credential; it must name the client id.
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(Tls("cam-1", null, _pki!.Device("cam-1"))));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectAsync(Tls("cam-1", null, _pki.Device("cam-2"))));
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectAsync(Tls("cam-9", null, _pki.Device("cam-9")))); // not enrolled
        // A certificate from another CA does not get through the handshake.
        using (var rogue = new TestPki(Path.Combine(_dir, "rogue"), "Rogue CA"))
        {
            var forged = rogue.Device("cam-1");
            await Assert.ThrowsAnyAsync<Exception>(() => ConnectAsync(Tls("cam-1", null, forged)));
        }
        // Revoked: refused even with a good certificate.
        Assert.Equal(HttpStatusCode.NoContent, (await _fleet!.Send(HttpMethod.Post, "/api/devices/cam-2/revoke")).StatusCode);
        Assert.Equal(MqttClientConnectResultCode.Banned, await ConnectAsync(Tls("cam-2", null, _pki.Device("cam-2"))));
        Wait.Until(() => _fleet.Output.Contains("client certificate is for 'cam-2', not this client id", StringComparison.Ordinal), TimeSpan.FromSeconds(5), () => _fleet.Output);
    }

    [Fact]
    public async Task An_agent_that_trusts_only_the_fleets_ca_enrolls_and_syncs_over_tls()
    {
        var fleet = StartFleet();
        using var agent = new Agent(Path.Combine(_dir, "agent"), "tls-unit", fleet, model.Path, "normal",
            configure: c =>
            {
                c["fleetCaFile"] = _pki!.CaPath;
                // The broker address, port and TLS as enrollment announces them (the harness pins the plain port).
                c["broker"]!.AsObject().Remove("host");
                c["broker"]!.AsObject().Remove("port");
            });
        await Wait.ForAsync(async () => await fleet.Device("tls-unit") is { } d && d["device"]!["telemetryRecords"]!.GetValue<long>() > 0 ? d : null,
            TimeSpan.FromSeconds(60), () => $"fleet:\n{fleet.Output}\n--- agent:\n{agent.Output}\n" + string.Join("\n", Directory.GetFiles(Path.Combine(_dir, "agent"), "*.json", SearchOption.AllDirectories).Select(f => f + ": " + File.ReadAllText(f))));
        Assert.Contains($"127.0.0.1:{_tlsPort}", agent.Output, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _fleet?.Dispose();
        _pki?.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
