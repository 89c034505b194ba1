using System.Text.Json;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.IO;

namespace EdgeFleet.Agent.Identity;

/// <summary>
/// <c>edgefleet-agent enroll --fleet URL --token T|--token-file F [--ca-file F] [--config PATH] [--json]</c>: creates the
/// device key (once), registers its public key with the fleet using a one-time enrollment token, and writes
/// <c>enrollment.json</c>. Running it again with the same token after a lost response is safe.
/// </summary>
public static class EnrollCommand
{
    public static async Task<int> RunAsync(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("config", "fleet", "token", "token-file", "ca-file", "json");
        var fleet = args.Get("fleet") ?? throw new UsageException("enroll needs --fleet URL (the fleet service's address)");
        if (!Uri.TryCreate(fleet, UriKind.Absolute, out var fleetUri) || fleetUri.Scheme is not ("http" or "https"))
            throw new UsageException($"--fleet '{fleet}' is not an http(s) URL");
        var token = ReadToken(args);
        var config = AgentConfigLoader.Load(args.Get("config") ?? AgentConfigLoader.DefaultPath);
        Directory.CreateDirectory(config.StateDirectory);
        var deviceId = DeviceIdentity.Resolve(config);
        using var key = LoadOrCreateKey(config.StateDirectory);

        var request = new EnrollRequest
        {
            Token = token,
            DeviceId = deviceId,
            PublicKey = Convert.ToBase64String(key.PublicKeyBytes),
            HardwareProfile = config.HardwareProfile,
            AgentVersion = AgentRuntime.Version,
        };
        using var http = FleetTrust.From(args.Get("ca-file") ?? config.FleetCaFile).CreateHttpClient(TimeSpan.FromSeconds(30), fleetUri);
        HttpResponseMessage response;
        try
        {
            // Plain bytes rather than System.Net.Http.Json, which would add its own weight to the AOT binary.
            using var content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(request, IdentityJsonContext.Default.EnrollRequest));
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            response = await http.PostAsync(new Uri("api/enroll", UriKind.Relative), content).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            stderr.WriteLine($"error: cannot reach the fleet at {fleetUri}: {e.Message}");
            return 1;
        }
        using (response)
        {
            var body = await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                stderr.WriteLine($"error: enrollment refused ({(int)response.StatusCode}): {Reason(body)}");
                return 1;
            }
            EnrollResponse? enrolled;
            try
            {
                enrolled = JsonSerializer.Deserialize(body, IdentityJsonContext.Default.EnrollResponse);
            }
            catch (JsonException e)
            {
                stderr.WriteLine($"error: the fleet's answer is not an enrollment: {e.Message}");
                return 1;
            }
            if (enrolled is null || enrolled.DeviceId != deviceId)
            {
                stderr.WriteLine("error: the fleet's answer names another device");
                return 1;
            }
            var state = new EnrollmentState
            {
                DeviceId = deviceId,
                FleetUrl = fleetUri.GetLeftPart(UriPartial.Authority),
                BrokerHost = enrolled.BrokerHost,
                BrokerPort = enrolled.BrokerPort,
                BrokerTls = enrolled.BrokerTls,
                BrokerAuth = enrolled.BrokerAuth,
                BrokerPassword = enrolled.BrokerPassword,
                EnrolledAt = DateTimeOffset.UtcNow,
                Tags = enrolled.Tags,
            };
            // It may hold a broker password: owner-only from the first byte.
            AtomicFile.Write(DeviceCredentials.StatePath(config.StateDirectory), JsonSerializer.SerializeToUtf8Bytes(state, EnrollmentJsonContext.Default.EnrollmentState), privateFile: true);
            if (!GiveToStateOwner(config.StateDirectory, stderr))
                return 1;
            if (args.Has("json"))
                stdout.WriteLine(JsonSerializer.Serialize(state with { BrokerPassword = null }, EnrollmentJsonContext.Default.EnrollmentState));
            else
                stdout.WriteLine($"enrolled as {deviceId} (key {key.KeyId}); broker {enrolled.BrokerHost}:{enrolled.BrokerPort}. then (re)start the agent: systemctl restart edgefleet-agent");
            return 0;
        }
    }

    private static string ReadToken(CommandLine args)
    {
        var token = args.Get("token");
        if (args.Get("token-file") is { } file)
            token = File.Exists(file) ? File.ReadAllText(file).Trim() : throw new UsageException($"--token-file {file} does not exist");
        token ??= Environment.GetEnvironmentVariable("EDGEFLEET_ENROLL_TOKEN");
        return string.IsNullOrWhiteSpace(token)
            ? throw new UsageException("enroll needs --token T, --token-file F or $EDGEFLEET_ENROLL_TOKEN (from 'edgefleet devices enroll-token')")
            : token;
    }

    /// <summary>The key is made once: enrolling again (a retry, or another fleet) keeps the device's identity.</summary>
    private static SigningKey LoadOrCreateKey(string stateDirectory)
    {
        var path = DeviceCredentials.KeyPath(stateDirectory);
        try
        {
            if (File.Exists(path))
                return KeyFile.Read(path, passphrase: null);
            using (var fresh = SigningKey.Generate())
                KeyFile.Write(path, fresh, passphrase: null);
            return KeyFile.Read(path, passphrase: null);
        }
        catch (InvalidDataException e)
        {
            throw new ConfigException($"device key: {e.Message}");
        }
    }

    /// <summary>
    /// A field engineer runs enroll as root, but the service runs as the state directory's owner (the
    /// package's <c>edgefleet</c> user): the key and enrollment files are handed to that owner, or the service
    /// could not read its own key.
    /// </summary>
    private static bool GiveToStateOwner(string stateDirectory, TextWriter stderr)
    {
        if (Environment.UserName != "root")
            return true;
        using var chown = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("chown",
            ["--reference=" + stateDirectory, DeviceCredentials.KeyPath(stateDirectory), DeviceCredentials.StatePath(stateDirectory)])
        { RedirectStandardError = true });
        if (chown is null)
            return true;
        var error = chown.StandardError.ReadToEnd();
        chown.WaitForExit();
        if (chown.ExitCode == 0)
            return true;
        stderr.WriteLine($"error: enrolled, but could not give the key to the state directory's owner: {error.Trim()}");
        return false;
    }

    private static string Reason(byte[] body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var error = doc.RootElement.TryGetProperty("error", out var e) ? e.GetString() : null;
            var reason = doc.RootElement.TryGetProperty("reason", out var r) ? r.GetString() : null;
            return $"{error}: {reason}";
        }
        catch (JsonException)
        {
            return System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(body.Length, 200)));
        }
    }
}
