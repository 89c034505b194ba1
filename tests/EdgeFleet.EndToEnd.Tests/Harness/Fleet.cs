using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>The fleet service as a process on loopback: embedded broker, or a client of an external one.</summary>
public sealed class Fleet : IDisposable
{
    private readonly ChildProcess _process;
    private readonly HttpClient _http;

    /// <param name="reuse">Another fleet's ports, to restart "the same" service on the same data.</param>
    /// <param name="postgres">A PostgreSQL connection string: the store is PostgreSQL instead of LiteDB.</param>
    /// <param name="adminKey">Another instance's admin key (instances sharing one PostgreSQL share their keys; only the first writes one).</param>
    /// <param name="mosquitto">An external Mosquitto: the fleet consumes through it and keeps its device accounts.</param>
    /// <param name="httpsPort">Also serve the API over HTTPS on this port (with Fleet:Tls set in <paramref name="extraArgs"/>).</param>
    /// <param name="httpAddress">The address the API listens on (a restart with <paramref name="reuse"/> keeps it); loopback by default.</param>
    public Fleet(string dataDirectory, Mosquitto? mosquitto = null, Fleet? reuse = null, string? postgres = null, string? adminKey = null,
        int? httpsPort = null, string? httpAddress = null, params string[] extraArgs)
    {
        HttpPort = reuse?.HttpPort ?? Repo.FreePort();
        HttpAddress = httpAddress ?? reuse?.HttpAddress ?? "127.0.0.1";
        BrokerPort = mosquitto?.Port ?? reuse?.BrokerPort ?? Repo.FreePort();
        List<string> args =
        [
            Repo.FleetDll,
            "--urls", $"http://{HttpAddress}:{HttpPort}" + (httpsPort is null ? "" : $";https://127.0.0.1:{httpsPort}"),
            "--Fleet:Broker:Port", BrokerPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--Fleet:Broker:Mode", mosquitto is null ? "Embedded" : "External",
            "--Fleet:Storage:Path", Path.Combine(dataDirectory, "fleet.db"),
            "--Fleet:Storage:ArtifactsPath", Path.Combine(dataDirectory, "artifacts"),
            "--Fleet:Security:AdminKeyPath", Path.Combine(dataDirectory, "admin.key"),
            .. extraArgs,
        ];
        var environment = new Dictionary<string, string>();
        if (mosquitto is not null)
        {
            args.AddRange(["--Fleet:Broker:Username", Mosquitto.AdminUser, "--Fleet:Broker:DeviceAccounts", "MosquittoDynamicSecurity"]);
            environment["Fleet__Broker__Password"] = mosquitto.AdminPassword;
        }
        if (postgres is not null)
        {
            args.AddRange(["--Fleet:Storage:Provider", "PostgreSql"]);
            environment["Fleet__Storage__ConnectionString"] = postgres; // as an operator would: not on the command line
        }
        _process = ChildProcess.Start("fleet", "dotnet", args, Path.GetDirectoryName(Repo.FleetDll), environment);
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HttpPort}"), Timeout = TimeSpan.FromSeconds(10) };
        Wait.Until(() => Health().Result?["brokerConnected"]?.GetValue<bool>() == true, TimeSpan.FromSeconds(60),
            () => "the fleet service did not become healthy:\n" + _process.Output);
        AdminKeyPath = Path.Combine(dataDirectory, "admin.key");
        AdminKey = adminKey ?? File.ReadAllText(AdminKeyPath).Trim();
        _http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminKey);
    }

    public string HttpAddress { get; }

    /// <summary>The admin API key the fleet wrote at its first start.</summary>
    public string AdminKey { get; }

    public string AdminKeyPath { get; }

    /// <summary>A fresh one-time enrollment token.</summary>
    public async Task<string> EnrollmentToken(int uses = 1, double hours = 1, JsonObject? tags = null)
    {
        var request = new JsonObject { ["uses"] = uses, ["expiresInHours"] = hours, ["tags"] = tags ?? [] };
        using var response = await _http.PostAsJsonAsync(new Uri("/api/enrollment-tokens", UriKind.Relative), request);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<JsonNode>())!["token"]!.GetValue<string>();
    }

    /// <summary>An API call with the admin key (or none with <paramref name="apiKey"/> = "").</summary>
    public async Task<HttpResponseMessage> Send(HttpMethod method, string path, JsonNode? body = null, string? apiKey = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (body is not null)
            request.Content = JsonContent.Create(body);
        var key = apiKey ?? AdminKey;
        if (key.Length > 0)
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        using var anonymous = new HttpClient { BaseAddress = _http.BaseAddress, Timeout = _http.Timeout };
        return await anonymous.SendAsync(request);
    }

    public int HttpPort { get; }

    public int BrokerPort { get; }

    public string Output => _process.Output;

    public bool Exited => _process.Exited;

    /// <summary>The service process's pid (for sampling its memory, descriptors and I/O).</summary>
    public int Pid => _process.Pid;

    public async Task<JsonNode?> Health()
    {
        try
        {
            return await _http.GetFromJsonAsync<JsonNode>("/api/health");
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    public async Task<JsonArray> Devices() => (await _http.GetFromJsonAsync<JsonArray>("/api/devices"))!;

    public async Task<JsonNode?> Device(string id)
    {
        var response = await _http.GetAsync(new Uri($"/api/devices/{id}", UriKind.Relative));
        return response.IsSuccessStatusCode ? await response.Content.ReadFromJsonAsync<JsonNode>() : null;
    }

    /// <summary>Every telemetry record the fleet stored for a device.</summary>
    public async Task<List<EdgeFleet.Shared.Wire.TelemetryRecord>> Telemetry(string deviceId)
    {
        using var response = await _http.GetAsync(new Uri($"/api/devices/{deviceId}/telemetry?limit=1000000", UriKind.Relative));
        response.EnsureSuccessStatusCode();
        var json = await response.Content.ReadAsByteArrayAsync();
        return System.Text.Json.JsonSerializer.Deserialize(json, EdgeFleet.Shared.Wire.WireJsonContext.Default.ListTelemetryRecord)!;
    }

    public string Url => $"http://127.0.0.1:{HttpPort}";

    /// <summary>An HTTP client for this fleet that carries the admin key.</summary>
    public HttpClient AdminClient() => new()
    {
        BaseAddress = new Uri(Url),
        Timeout = TimeSpan.FromSeconds(30),
        DefaultRequestHeaders = { Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminKey) },
    };

    /// <summary>Uploads a model file; returns its SHA-256.</summary>
    public async Task<string> UploadArtifact(byte[] content)
    {
        using var body = new ByteArrayContent(content);
        using var response = await _http.PostAsync(new Uri("/api/artifacts", UriKind.Relative), body);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonNode>())!["sha256"]!.GetValue<string>();
    }

    /// <summary>Sets a device's desired model from signed envelopes.</summary>
    public async Task SetDesired(string deviceId, byte[] manifest, byte[] keySet)
    {
        var desired = new JsonObject { ["manifest"] = JsonNode.Parse(manifest), ["keySet"] = JsonNode.Parse(keySet) };
        using var response = await _http.PutAsJsonAsync(new Uri($"/api/devices/{deviceId}/desired", UriKind.Relative), desired);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    public void Kill9() => _process.Kill9();

    public Task<HttpResponseMessage> Get(string path) => _http.GetAsync(new Uri(path, UriKind.Relative));

    public void Dispose()
    {
        _process.Dispose();
        _http.Dispose();
    }
}
