using EdgeFleet.Fleet.Drift;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Fleet.Tests;

/// <summary>The leader's drift check on a real store: alerts open after N drifting windows, once; resolve when the drift ends; acknowledgements.</summary>
public sealed class DriftMonitorTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-driftmon-").FullName;
    private readonly LiteDbFleetStore _store;
    private readonly Recording _notified = new();
    private readonly ManualTime _time = new(T0.AddMinutes(10));

    private sealed class Recording : IDriftNotifier
    {
        public List<(string Change, DriftAlert Alert)> Changes { get; } = [];

        public Task NotifyAsync(string change, DriftAlert alert, CancellationToken ct)
        {
            Changes.Add((change, alert));
            return Task.CompletedTask;
        }
    }

    private sealed class ManualTime(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    public DriftMonitorTests()
    {
        _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));
        _store.CreateModelAsync(new RegisteredModel { Id = "m", CreatedAt = T0, CreatedBy = "test" }, default).GetAwaiter().GetResult();
        _store.AddModelVersionAsync(new ModelVersion
        {
            ModelId = "m",
            Version = 1,
            State = ApprovalStates.Approved,
            Card = new ModelCard { Owner = "o", IntendedUse = "u", FeatureBaselines = [new Models.FeatureBaseline("rms", [0, 1, 2, 3], [100, 100, 100])] },
            Artifacts = [],
            CreatedAt = T0,
            CreatedBy = "test",
        }, default).GetAwaiter().GetResult();
    }

    private DriftMonitor Monitor() => new(_store, new FleetOptions { Drift = new DriftOptions { WindowSeconds = 60, AlertWindows = 2, LookbackWindows = 10 } },
        new Scale.LeaderElection(new FleetOptions(), NullLogger<Scale.LeaderElection>.Instance), _notified, _time, NullLogger<DriftMonitor>.Instance);

    /// <summary>A window of 300 values from one device: on the baseline (100 per bin), or all in the last bin.</summary>
    private Task WindowAsync(int minute, bool drifting, string device = "d1")
    {
        var sketch = new FeatureSketch([0, 1, 2, 3]);
        for (var i = 0; i < 300; i++)
            sketch.Add(drifting ? 2.5 : i % 3 + 0.5);
        return _store.UpsertSketchesAsync([new StoredSketch(device, new SketchWindow { Model = "m", Version = "1", From = T0.AddMinutes(minute), Seconds = 60, Features = [sketch.ToData("rms")] })], default);
    }

    [Fact]
    public async Task An_alert_opens_after_consecutive_drifting_windows_once_and_resolves_when_the_drift_ends()
    {
        var monitor = Monitor();
        await WindowAsync(0, drifting: false);
        await WindowAsync(1, drifting: true);
        await monitor.CheckAsync(default);
        Assert.Empty(_notified.Changes); // one drifting window: not yet

        await WindowAsync(2, drifting: true);
        await monitor.CheckAsync(default);
        await monitor.CheckAsync(default); // again: no second alert for the same feature and segment
        var opened = Assert.Single(_notified.Changes);
        Assert.Equal(("opened", "rms", "*", 2, T0.AddMinutes(1)), (opened.Change, opened.Alert.Feature, opened.Alert.Segment, opened.Alert.Windows, opened.Alert.Since));
        Assert.True(opened.Alert.Psi > 1);

        var acked = await monitor.AcknowledgeAsync(opened.Alert.Id, "user:ada", default);
        Assert.Equal((DriftAlertStates.Acknowledged, "user:ada"), (acked!.State, acked.AcknowledgedBy));
        Assert.Null(await monitor.AcknowledgeAsync(opened.Alert.Id, "user:ada", default)); // only open alerts

        await WindowAsync(3, drifting: false);
        await monitor.CheckAsync(default);
        Assert.Equal(["opened", "acknowledged", "resolved"], _notified.Changes.Select(c => c.Change));
        Assert.Empty(await _store.ListDriftAlertsAsync(true, 10, default));
        var audit = await _store.GetAuditAsync(opened.Alert.Id, 10, default);
        Assert.Equal(["drift.alert.resolved", "drift.alert.acknowledge", "drift.alert.opened"], audit.Select(a => a.Action));
    }

    [Fact]
    public async Task The_alerts_of_a_version_no_device_runs_any_more_are_resolved()
    {
        var monitor = Monitor();
        await WindowAsync(0, drifting: true);
        await WindowAsync(1, drifting: true);
        await monitor.CheckAsync(default);
        Assert.Single(await _store.ListDriftAlertsAsync(true, 10, default));
        _time.Now = T0.AddMinutes(30); // the lookback (10 windows) holds no sketch of v1 any more: the devices moved on
        await monitor.CheckAsync(default);
        Assert.Empty(await _store.ListDriftAlertsAsync(true, 10, default));
        Assert.Equal(["opened", "resolved"], _notified.Changes.Select(c => c.Change));
    }

    /// <summary>The newest window is usually still filling: too few values neither end nor extend a run of alerting windows.</summary>
    [Fact]
    public async Task A_window_with_too_few_values_does_not_break_a_run_of_alerting_windows()
    {
        await WindowAsync(0, drifting: true);
        await WindowAsync(1, drifting: true);
        var sketch = new FeatureSketch([0, 1, 2, 3]);
        for (var i = 0; i < 10; i++)
            sketch.Add(0.5); // the next window has begun: 10 values, on the baseline
        await _store.UpsertSketchesAsync([new StoredSketch("d1", new SketchWindow { Model = "m", Version = "1", From = T0.AddMinutes(2), Seconds = 60, Features = [sketch.ToData("rms")] })], default);
        var (report, _) = await DriftReport.BuildAsync(_store, "m", "1", T0, T0.AddMinutes(10), null, 2, default);
        Assert.Equal("few", report!.Windows[^1].Cells.Single().Level);
        var alert = Assert.Single(report.Alerts);
        Assert.Equal((2, T0), (alert.Windows, alert.Since));
    }

    [Fact]
    public void The_webhook_signature_is_an_hmac_of_the_exact_body()
    {
        var alert = new DriftAlert { Id = "a", Model = "m", Version = "1", Feature = "rms", Segment = "*", State = "open", OpenedAt = T0, Since = T0, Psi = 1, Windows = 2 };
        var body = DriftNotifier.Body("opened", alert);
        Assert.StartsWith("{\"event\":\"drift.alert.opened\",\"alert\":{", System.Text.Encoding.UTF8.GetString(body), StringComparison.Ordinal);
        var signature = DriftNotifier.Signature("s3cret"u8.ToArray(), body);
        Assert.Equal("sha256=" + Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData("s3cret"u8.ToArray(), body)), signature);
        Assert.NotEqual(signature, DriftNotifier.Signature("other"u8.ToArray(), body));
    }

    public void Dispose()
    {
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
