using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;
using MQTTnet;

namespace EdgeFleet.Cli.Sim;

public sealed record SimOptions
{
    public int Devices { get; init; } = 100;

    /// <summary>Telemetry records per second per device (0: connected and idle).</summary>
    public double Rate { get; init; } = 1;

    /// <summary>Records per batch; a device sends a batch every <c>BatchRecords / Rate</c> seconds.</summary>
    public int BatchRecords { get; init; } = 50;

    /// <summary>Device ids are <c>{Prefix}-{n}</c>; a fresh prefix per run keeps runs apart.</summary>
    public string Prefix { get; init; } = "sim";

    public double OtaFailureRate { get; init; }

    /// <summary>How each model version behaves on the devices (latency, outputs); versions not named behave alike.</summary>
    public IReadOnlyDictionary<long, SimModelBehaviour> Behaviours { get; init; } = new Dictionary<long, SimModelBehaviour>();

    /// <summary>The model versions <see cref="OtaFailureRate"/> applies to; empty: every version.</summary>
    public IReadOnlySet<long> FailingVersions { get; init; } = new HashSet<long>();

    /// <summary>The model every device runs at start; null: the demo's factory model (vibration-classifier 1.0.0).</summary>
    public EdgeFleet.Shared.Wire.ModelRef? InitialModel { get; init; }

    /// <summary>Enrollments and connects in flight at once.</summary>
    public int Concurrency { get; init; } = 64;

    /// <summary>
    /// Ping every device from one loop (each once per 60 s, spread over the period) instead of a keep-alive
    /// loop per MQTT client: for thousands of devices on the embedded broker (see <see cref="SimulatedDevice.SharedKeepAlive"/>).
    /// </summary>
    public bool SharedKeepAlive { get; init; }
}

/// <summary>
/// Many <see cref="SimulatedDevice"/>s in one process: enrolled through the fleet's API with one multi-use
/// enrollment token, connected to the broker the fleet names, and driven by one scheduler that sends each
/// device's batches on time (a device whose previous batch is still in flight skips a turn rather than
/// piling up). With <see cref="SimOptions.SharedKeepAlive"/>, one loop pings every connected device once a
/// minute instead of a timer per MQTT client.
/// </summary>
public sealed class SimulatedFleet : IAsyncDisposable
{
    private readonly List<SimulatedDevice> _devices;
    private readonly SimOptions _options;
    private readonly MqttClientFactory _factory = new();

    private readonly CancellationTokenSource _stopping = new();
    private Task? _keepAlive;
    private long _pingsFailed;

    private SimulatedFleet(List<SimulatedDevice> devices, SimOptions options)
    {
        _devices = devices;
        _options = options;
    }

    /// <summary>Pings that got no answer (the connection had dropped).</summary>
    public long PingsFailed => Interlocked.Read(ref _pingsFailed);

    public IReadOnlyList<SimulatedDevice> Devices => _devices;

    public long Sent => _devices.Sum(d => d.Sent);

    public long Acked => _devices.Sum(d => d.Acked);

    public int ConnectedCount => _devices.Count(d => d.Connected);

    private long _skippedTurns;

    /// <summary>Batches not sent because the device's previous one was still in flight (the fleet fell behind).</summary>
    public long SkippedTurns => Interlocked.Read(ref _skippedTurns);

    /// <summary>Enrolls <see cref="SimOptions.Devices"/> devices; <paramref name="api"/> carries an operator API key.</summary>
    public static async Task<SimulatedFleet> EnrollAsync(HttpClient api, SimOptions options, CancellationToken ct)
    {
        using var tokenResponse = await api.PostAsJsonAsync(new Uri("/api/enrollment-tokens", UriKind.Relative),
            new JsonObject { ["uses"] = options.Devices, ["expiresInHours"] = 1, ["note"] = "edgefleet sim", ["tags"] = new JsonObject { ["simulated"] = "true" } }, ct).ConfigureAwait(false);
        var tokenBody = await tokenResponse.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
        if (!tokenResponse.IsSuccessStatusCode)
            throw new CommandException($"cannot create an enrollment token ({(int)tokenResponse.StatusCode}): {tokenBody} (sim needs an operator API key)");
        var token = JsonNode.Parse(tokenBody)!["token"]!.GetValue<string>();
        var devices = new SimulatedDevice[options.Devices];
        await Parallel.ForEachAsync(Enumerable.Range(0, options.Devices), new ParallelOptions { MaxDegreeOfParallelism = options.Concurrency, CancellationToken = ct }, async (i, ct) =>
        {
            var id = $"{options.Prefix}-{i:D5}";
            var key = SigningKey.Generate();
            using var response = await api.PostAsJsonAsync(new Uri("/api/enroll", UriKind.Relative), new EnrollRequest
            {
                Token = token,
                DeviceId = id,
                PublicKey = Convert.ToBase64String(key.PublicKeyBytes),
                HardwareProfile = "x86-64-generic",
                AgentVersion = "sim",
            }, IdentityJsonContext.Default.EnrollRequest, ct).ConfigureAwait(false);
            var body = await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                throw new CommandException($"enrollment of {id} refused ({(int)response.StatusCode}): {System.Text.Encoding.UTF8.GetString(body)}");
            var enrolled = System.Text.Json.JsonSerializer.Deserialize(body, IdentityJsonContext.Default.EnrollResponse)!;
            devices[i] = new SimulatedDevice(id, key, enrolled.BrokerHost, enrolled.BrokerPort, options.OtaFailureRate)
            {
                FailingVersions = options.FailingVersions,
                Behaviours = options.Behaviours,
                SharedKeepAlive = options.SharedKeepAlive,
                InitialModel = options.InitialModel ?? new EdgeFleet.Shared.Wire.ModelRef { Name = "vibration-classifier", Version = "1.0.0" },
                BrokerPassword = enrolled.BrokerAuth == "password" ? enrolled.BrokerPassword : null,
            };
        }).ConfigureAwait(false);
        return new SimulatedFleet([.. devices], options);
    }

    public async Task ConnectAsync(CancellationToken ct)
    {
        await Parallel.ForEachAsync(_devices, new ParallelOptions { MaxDegreeOfParallelism = _options.Concurrency, CancellationToken = ct },
            async (device, ct) => await device.ConnectAsync(_factory, ct).ConfigureAwait(false)).ConfigureAwait(false);
        if (_options.SharedKeepAlive)
            _keepAlive ??= KeepAliveAsync(_stopping.Token);
    }

    /// <summary>Disconnects every device cleanly; <see cref="ConnectAsync"/> connects them again (same ids, keys and streams).</summary>
    public async Task DisconnectAsync(CancellationToken ct) =>
        await Parallel.ForEachAsync(_devices, new ParallelOptions { MaxDegreeOfParallelism = _options.Concurrency, CancellationToken = ct },
            async (device, _) => await device.DisconnectAsync().ConfigureAwait(false)).ConfigureAwait(false);

    private async Task KeepAliveAsync(CancellationToken ct)
    {
        // One tick per 100 ms, each pinging the next slice of devices: every device once per period.
        var tick = TimeSpan.FromMilliseconds(100);
        var slices = (int)(TimeSpan.FromSeconds(60) / tick);
        using var timer = new PeriodicTimer(tick);
        var slice = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                for (var i = slice; i < _devices.Count; i += slices)
                    _ = PingAsync(_devices[i], ct);
                slice = (slice + 1) % slices;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task PingAsync(SimulatedDevice device, CancellationToken ct)
    {
        if (device.Connected && !await device.PingAsync(ct).ConfigureAwait(false) && !ct.IsCancellationRequested)
            Interlocked.Increment(ref _pingsFailed);
    }

    /// <summary>Sends telemetry for <paramref name="duration"/>; returns the records sent in that time.</summary>
    public async Task<long> RunAsync(TimeSpan duration, CancellationToken ct)
    {
        var before = Sent;
        if (_options.Rate <= 0)
        {
            await Task.Delay(duration, ct).ConfigureAwait(false);
            return 0;
        }
        var interval = TimeSpan.FromSeconds(_options.BatchRecords / _options.Rate);
        var inFlight = new Task?[_devices.Count];
        var clock = Stopwatch.StartNew();
        // Devices start spread over one interval, as a real fleet's clocks are.
        var due = _devices.Select((_, i) => interval * ((double)i / _devices.Count)).ToArray();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        while (clock.Elapsed < duration && await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
        {
            var now = clock.Elapsed;
            for (var i = 0; i < _devices.Count; i++)
            {
                if (due[i] > now)
                    continue;
                due[i] += interval;
                if (inFlight[i] is { IsCompleted: false } || !_devices[i].Connected)
                {
                    Interlocked.Increment(ref _skippedTurns);
                    continue;
                }
                inFlight[i] = _devices[i].SendBatchAsync(_options.BatchRecords, ct);
            }
        }
        await Task.WhenAll(inFlight.Where(t => t is not null)!).ConfigureAwait(false);
        return Sent - before;
    }

    /// <summary>
    /// Waits until the fleet has acknowledged everything sent, or the timeout passes; returns whether it did.
    /// When acknowledgements stop coming for <paramref name="resendAfter"/> (3 s by default), devices still
    /// waiting send their unacknowledged records again, as agents do.
    /// </summary>
    public async Task<bool> DrainAsync(TimeSpan timeout, CancellationToken ct, TimeSpan? resendAfter = null)
    {
        var clock = Stopwatch.StartNew();
        var lastAcked = Acked;
        var lastProgress = clock.Elapsed;
        while (clock.Elapsed < timeout)
        {
            if (_devices.All(d => d.Acked >= d.Sent))
                return true;
            await Task.Delay(100, ct).ConfigureAwait(false);
            var acked = Acked;
            if (acked != lastAcked)
                (lastAcked, lastProgress) = (acked, clock.Elapsed);
            else if (clock.Elapsed - lastProgress > (resendAfter ?? TimeSpan.FromSeconds(3)))
            {
                await Parallel.ForEachAsync(_devices.Where(d => d.Acked < d.Sent && d.Connected), ct,
                    async (d, ct) => await d.ResendUnackedAsync(_options.BatchRecords, ct).ConfigureAwait(false)).ConfigureAwait(false);
                lastProgress = clock.Elapsed;
            }
        }
        return false;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_keepAlive is not null)
            await _keepAlive.ConfigureAwait(false);
        _stopping.Dispose();
        await Parallel.ForEachAsync(_devices, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (d, _) => await d.DisposeAsync().ConfigureAwait(false)).ConfigureAwait(false);
    }
}
