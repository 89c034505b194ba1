using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// Per-device accounts on an external Mosquitto, kept by the fleet service through Mosquitto's
/// dynamic-security plugin (<c>$CONTROL/dynamic-security/v1</c>). Mosquitto cannot check device tokens, so
/// enrollment gives each device a random broker password (shown to the device once, stored only as
/// Mosquitto's salted hash) and a role that lets it publish only its own device-to-fleet topics and subscribe
/// only under <c>ef/v1/{id}/</c>; client id and user name must both be the device id. Revoking a device
/// disables its account, which also disconnects it. The fleet's own account (created by
/// <c>mosquitto_ctrl dynsec init</c>) is given the role it needs to consume and answer device topics.
/// </summary>
public sealed partial class MosquittoDynamicSecurity : IAsyncDisposable
{
    public const string ServiceRole = "edgefleet-service";
    private const string CommandTopic = "$CONTROL/dynamic-security/v1";
    private const string ResponseTopic = CommandTopic + "/response";
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);

    private readonly BrokerOptions _options;
    private readonly ILogger<MosquittoDynamicSecurity> _log;
    private readonly IMqttClient _client;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConcurrentDictionary<string, TaskCompletionSource<JsonArray>> _pending = new();
    private readonly string _clientId = "edgefleet-dynsec-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));

    public MosquittoDynamicSecurity(BrokerOptions options, DeviceRevocation revocation, ILogger<MosquittoDynamicSecurity> log)
    {
        _options = options;
        _log = log;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnResponseAsync;
        _client.DisconnectedAsync += e =>
        {
            foreach (var waiter in _pending.Values)
                waiter.TrySetException(new ConnectionLostException($"Mosquitto closed the connection ({e.Reason})"));
            return Task.CompletedTask;
        };
        revocation.Subscribe(DisableDeviceAsync);
    }

    public static string DeviceRole(string deviceId) => "edgefleet-device-" + deviceId;

    /// <summary>Gives the fleet's own account the rights to consume device topics (idempotent).</summary>
    public async Task EnsureServiceAccessAsync(CancellationToken ct)
    {
        var user = _options.Username!;
        JsonObject[] acls =
        [
            Acl("publishClientSend", Topics.Root + "#"),
            Acl("publishClientReceive", Topics.Root + "#"),
            Acl("subscribePattern", Topics.Root + "#"),
            Acl("subscribePattern", $"$share/{_options.SharedGroup}/{Topics.Root}#"),
        ];
        await RunAsync([
            Command("createRole", ("rolename", ServiceRole)),
            .. acls.Select(a => With(Command("addRoleACL", ("rolename", ServiceRole)), a)),
        ], ["already exists"], ct).ConfigureAwait(false);
        var client = (await RunAsync([Command("getClient", ("username", user))], [], ct).ConfigureAwait(false))[0];
        var roles = client?["data"]?["client"]?["roles"]?.AsArray() ?? [];
        if (roles.Any(r => r?["rolename"]?.GetValue<string>() == ServiceRole))
            return;
        try
        {
            await RunAsync([Command("addClientRole", ("username", user), ("rolename", ServiceRole))], [], ct).ConfigureAwait(false);
        }
        catch (ConnectionLostException)
        {
            // Mosquitto disconnects every session of an account whose roles change, ours included: expected once.
        }
        Log.ServiceRoleAdded(_log, user, ServiceRole);
    }

    /// <summary>
    /// Creates (or, for a device enrolling again after a lost response, re-keys) the device's account and
    /// returns its new broker password.
    /// </summary>
    public async Task<string> ProvisionDeviceAsync(string deviceId, CancellationToken ct)
    {
        CheckDeviceAccount(deviceId);
        var password = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var role = DeviceRole(deviceId);
        var commands = new List<JsonObject> { Command("createRole", ("rolename", role)) };
        foreach (var kind in Enum.GetValues<TopicKind>().Where(Topics.IsFromDevice))
            commands.Add(With(Command("addRoleACL", ("rolename", role)), Acl("publishClientSend", Topics.For(deviceId, kind))));
        commands.Add(With(Command("addRoleACL", ("rolename", role)), Acl("subscribePattern", Topics.DevicePrefix(deviceId) + "#")));
        var create = Command("createClient", ("username", deviceId), ("clientid", deviceId), ("password", password));
        create["roles"] = new JsonArray(new JsonObject { ["rolename"] = role });
        commands.Add(create);
        var responses = await RunAsync(commands, ["already exists"], ct).ConfigureAwait(false);
        if (responses[^1]?["error"] is not null)
        {
            // The account exists: a device enrolling again after a lost response. It gets a new password, but only
            // if the account is that device's: never the fleet's own or an account the operator made by hand.
            await EnsureDeviceAccountAsync(deviceId, ct).ConfigureAwait(false);
            await RunAsync([Command("setClientPassword", ("username", deviceId), ("password", password))], [], ct).ConfigureAwait(false);
        }
        Log.Provisioned(_log, deviceId);
        return password;
    }

    /// <summary>Devices whose role this process has brought up to date (<see cref="EnsureDeviceAclsAsync"/>).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _aclsChecked = new(StringComparer.Ordinal);

    /// <summary>
    /// Gives a device's role every publish ACL of the current protocol, once per device and process: a device
    /// enrolled by an older fleet lacks the topics added since (<c>ota/chunk/get</c>). Mosquitto refuses an ACL that
    /// exists, and applies one it adds to the device's open connection.
    /// </summary>
    public async Task EnsureDeviceAclsAsync(string deviceId, CancellationToken ct)
    {
        if (!DeviceId.IsAssignable(deviceId) || string.Equals(deviceId, _options.Username, StringComparison.OrdinalIgnoreCase)
            || !_aclsChecked.TryAdd(deviceId, true))
            return;
        var role = DeviceRole(deviceId);
        var commands = Enum.GetValues<TopicKind>().Where(Topics.IsFromDevice)
            .Select(kind => With(Command("addRoleACL", ("rolename", role)), Acl("publishClientSend", Topics.For(deviceId, kind)))).ToList();
        try
        {
            var responses = await RunAsync(commands, ["already exists", "not found"], ct).ConfigureAwait(false);
            var added = responses.Count(r => r?["error"] is null);
            if (added > 0)
                Log.AclsAdded(_log, deviceId, added);
        }
        catch (Exception e) when (e is BrokerAccountException or IOException or InvalidOperationException or TimeoutException)
        {
            _aclsChecked.TryRemove(deviceId, out _); // tried again at its next hello
            Log.AclsNotChecked(_log, deviceId, e.Message);
        }
    }

    /// <summary>Disables a revoked device's account; Mosquitto disconnects it at once.</summary>
    public async Task DisableDeviceAsync(string deviceId, CancellationToken ct)
    {
        CheckDeviceAccount(deviceId);
        if (!await EnsureDeviceAccountAsync(deviceId, ct).ConfigureAwait(false))
            return;
        await RunAsync([Command("disableClient", ("username", deviceId))], ["not found"], ct).ConfigureAwait(false);
        Log.Disabled(_log, deviceId);
    }

    /// <summary>Refuses, before asking Mosquitto, an id that can never be a device's account.</summary>
    private void CheckDeviceAccount(string deviceId)
    {
        if (!DeviceId.IsAssignable(deviceId) || string.Equals(deviceId, _options.Username, StringComparison.OrdinalIgnoreCase))
            throw new NotADeviceAccountException($"'{LogText.Sanitize(deviceId)}' is not a device account name (reserved for the fleet, or its broker account); the fleet will not change it");
    }

    /// <summary>
    /// True when Mosquitto holds the device's account with the device's role; false when there is no account;
    /// throws when the account exists but is not an EdgeFleet device account.
    /// </summary>
    private async Task<bool> EnsureDeviceAccountAsync(string deviceId, CancellationToken ct)
    {
        var response = (await RunAsync([Command("getClient", ("username", deviceId))], ["not found"], ct).ConfigureAwait(false))[0];
        if (response?["error"] is not null)
            return false;
        var roles = response?["data"]?["client"]?["roles"]?.AsArray() ?? [];
        if (roles.Any(r => r?["rolename"]?.GetValue<string>() == DeviceRole(deviceId)))
            return true;
        throw new NotADeviceAccountException($"the Mosquitto account '{LogText.Sanitize(deviceId)}' exists and is not an EdgeFleet device account (it lacks the role {DeviceRole(deviceId)}); the fleet will not change it");
    }

    /// <summary>
    /// Disables the accounts of every revoked device, for revocations made while the broker was unreachable
    /// (run when the fleet connects).
    /// </summary>
    public async Task ReconcileRevokedAsync(IFleetStore store, CancellationToken ct)
    {
        foreach (var device in await store.ListDevicesAsync(ct).ConfigureAwait(false))
        {
            if (device.RevokedAt is null)
                continue;
            try
            {
                await DisableDeviceAsync(device.Id, ct).ConfigureAwait(false);
            }
            catch (NotADeviceAccountException e)
            {
                Log.NotADeviceAccount(_log, LogText.Sanitize(device.Id), e.Message);
            }
        }
    }

    /// <summary>
    /// Sends commands in one message and returns their responses, in order; an error that does not contain one
    /// of the <paramref name="tolerate"/> texts throws.
    /// </summary>
    private async Task<JsonArray> RunAsync(IReadOnlyList<JsonObject> commands, string[] tolerate, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await EnsureConnectedAsync(ct).ConfigureAwait(false);
            var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
            for (var i = 0; i < commands.Count; i++)
                commands[i]["correlationData"] = $"{id}.{i}";
            var waiter = new TaskCompletionSource<JsonArray>(TaskCreationOptions.RunContinuationsAsynchronously);
            _pending[id] = waiter;
            try
            {
                var payload = new JsonObject { ["commands"] = new JsonArray([.. commands]) }.ToJsonString();
                await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(CommandTopic).WithPayload(payload)
                    .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct).ConfigureAwait(false);
                var responses = await waiter.Task.WaitAsync(CommandTimeout, ct).ConfigureAwait(false);
                foreach (var response in responses)
                {
                    if (response?["error"]?.GetValue<string>() is { } error && !tolerate.Any(t => error.Contains(t, StringComparison.OrdinalIgnoreCase)))
                        throw new BrokerAccountException($"Mosquitto refused {response["command"]}: {error}");
                }
                return responses;
            }
            catch (TimeoutException)
            {
                throw new BrokerAccountException($"Mosquitto did not answer a dynamic-security command within {CommandTimeout.TotalSeconds:0} s (is the plugin loaded, and is {_options.Username} its admin?)");
            }
            finally
            {
                _pending.TryRemove(id, out _);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task EnsureConnectedAsync(CancellationToken ct)
    {
        if (_client.IsConnected)
            return;
        try
        {
            var options = new MqttClientOptionsBuilder().WithTcpServer(_options.Host, _options.Port).WithClientId(_clientId)
                .WithCredentials(_options.Username, _options.Password).WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
                .WithCleanStart(true).WithTimeout(TimeSpan.FromSeconds(10)).Build();
            var result = await _client.ConnectAsync(options, ct).ConfigureAwait(false);
            if (result.ResultCode != MqttClientConnectResultCode.Success)
                throw new BrokerAccountException($"Mosquitto refused the fleet's account {_options.Username}: {result.ResultCode}");
            var subscribed = await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(ResponseTopic, MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct).ConfigureAwait(false);
            if (subscribed.Items.Any(i => (int)i.ResultCode > 2))
                throw new BrokerAccountException($"the fleet's account {_options.Username} may not use {CommandTopic}: it must be the dynamic-security admin");
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Adapter.MqttConnectingFailedException
            or IOException or System.Net.Sockets.SocketException)
        {
            throw new BrokerAccountException($"cannot reach Mosquitto at {_options.Host}:{_options.Port}: {e.Message}");
        }
    }

    private Task OnResponseAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        if (e.ApplicationMessage.Topic != ResponseTopic)
            return Task.CompletedTask;
        try
        {
            var responses = JsonNode.Parse(Encoding.UTF8.GetString(e.ApplicationMessage.Payload))?["responses"]?.AsArray();
            var correlation = responses?.FirstOrDefault()?["correlationData"]?.GetValue<string>();
            if (responses is not null && correlation?.Split('.')[0] is { } id && _pending.TryGetValue(id, out var waiter))
            {
                // In the order the commands were sent (their correlation data ends in the index).
                waiter.TrySetResult([.. responses.OrderBy(r => int.Parse(r?["correlationData"]?.GetValue<string>()?.Split('.')[^1] ?? "0",
                    System.Globalization.CultureInfo.InvariantCulture)).Select(r => r?.DeepClone())]);
            }
        }
        catch (System.Text.Json.JsonException)
        {
            Log.UnreadableResponse(_log);
        }
        return Task.CompletedTask;
    }

    private static JsonObject Command(string name, params (string Key, string Value)[] fields)
    {
        var command = new JsonObject { ["command"] = name };
        foreach (var (key, value) in fields)
            command[key] = value;
        return command;
    }

    private static JsonObject Acl(string type, string topic) => new() { ["acltype"] = type, ["topic"] = topic, ["allow"] = true };

    private static JsonObject With(JsonObject command, JsonObject fields)
    {
        foreach (var (key, value) in fields)
            command[key] = value?.DeepClone();
        return command;
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
            await _client.DisconnectAsync().ConfigureAwait(false);
        _client.Dispose();
        _gate.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(3101, LogLevel.Information, "Mosquitto account for device {DeviceId} created or re-keyed")]
        public static partial void Provisioned(ILogger logger, string deviceId);

        [LoggerMessage(3102, LogLevel.Information, "Mosquitto account of revoked device {DeviceId} disabled")]
        public static partial void Disabled(ILogger logger, string deviceId);

        [LoggerMessage(3104, LogLevel.Information, "Gave the fleet's Mosquitto account {User} the role {Role}")]
        public static partial void ServiceRoleAdded(ILogger logger, string user, string role);

        [LoggerMessage(3105, LogLevel.Error, "Revoked device {DeviceId} was not disabled on Mosquitto: {Reason}")]
        public static partial void NotADeviceAccount(ILogger logger, string deviceId, string reason);

        [LoggerMessage(3106, LogLevel.Information, "Mosquitto role of device {DeviceId}: added {Count} topic rights of the current protocol")]
        public static partial void AclsAdded(ILogger logger, string deviceId, int count);

        [LoggerMessage(3107, LogLevel.Warning, "Could not check the Mosquitto role of device {DeviceId}: {Reason}")]
        public static partial void AclsNotChecked(ILogger logger, string deviceId, string reason);

        [LoggerMessage(3103, LogLevel.Warning, "Unreadable dynamic-security response from Mosquitto")]
        public static partial void UnreadableResponse(ILogger logger);
    }
}

/// <summary>The external broker would not (or could not) carry out an account change.</summary>
public class BrokerAccountException(string message) : Exception(message);

/// <summary>The account named is not a device's (the fleet's own, or one the operator made): the fleet leaves it alone.</summary>
public sealed class NotADeviceAccountException(string message) : BrokerAccountException(message);

/// <summary>The broker closed the connection before answering.</summary>
public sealed class ConnectionLostException(string message) : BrokerAccountException(message);
