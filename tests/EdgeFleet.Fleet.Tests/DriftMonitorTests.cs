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

    private DriftMonitor Monitor(int resolveWindows = 2) => new(_store, new FleetOptions
    {
        Drift = new DriftOptions { WindowSeconds = 60, AlertWindows = 2, LookbackWindows = 10, ResolveWindows = resolveWindows, UnservedWindows = 3 },
    }, new Scale.LeaderElection(new FleetOptions(), NullLogger<Scale.LeaderElection>.Instance), _notified, _time, NullLogger<DriftMonitor>.Instance);

    /// <summary>
    /// A window of 300 values from one device: on the baseline (100 per bin), all in the last bin, or all NaN; the
    /// monitor's clock moves to the end of that window, when its sketches have arrived.
    /// </summary>
    private Task WindowAsync(int minute, bool drifting, string device = "d1", bool nan = false)
    {
        var sketch = new FeatureSketch([0, 1, 2, 3]);
        for (var i = 0; i < 300; i++)
            sketch.Add(nan ? double.NaN : drifting ? 2.5 : i % 3 + 0.5);
        _time.Now = Max(_time.Now, T0.AddMinutes(minute + 1));
        return _store.UpsertSketchesAsync([new StoredSketch(device, new SketchWindow
        {
            Model = "m", Version = "1", From = T0.AddMinutes(minute), Seconds = 60, Features = [sketch.ToData("rms")],
        })], default);
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    private async Task<DriftAlert> OnlyAlertAsync() => Assert.Single(await _store.ListDriftAlertsAsync(false, 10, default));

    [Fact]
    public async Task An_alert_opens_after_consecutive_drifting_windows_once_and_resolves_after_calm_windows_in_a_row()
    {
        _time.Now = T0;
        var monitor = Monitor();
        await WindowAsync(0, drifting: false);
        await WindowAsync(1, drifting: true);
        await monitor.CheckAsync(default);
        Assert.Empty(_notified.Changes); // one drifting window: not yet

        await WindowAsync(2, drifting: true);
        await monitor.CheckAsync(default);
        await monitor.CheckAsync(default); // again: no second alert, and the same windows are not counted twice
        var opened = Assert.Single(_notified.Changes);
        Assert.Equal(("opened", "rms", "*", 2, T0.AddMinutes(1)), (opened.Change, opened.Alert.Feature, opened.Alert.Segment, opened.Alert.Windows, opened.Alert.Since));
        Assert.Equal(("drift", "alert", 2), (opened.Alert.Kind, opened.Alert.Severity, (await OnlyAlertAsync()).Windows));
        Assert.True(opened.Alert.Psi > 1);
        Assert.Equal("d1", Assert.Single(opened.Alert.Devices).DeviceId);

        var acked = await monitor.AcknowledgeAsync(opened.Alert.Id, "user:ada", default);
        Assert.Equal((DriftAlertStates.Acknowledged, "user:ada"), (acked!.State, acked.AcknowledgedBy));
        Assert.Null(await monitor.AcknowledgeAsync(opened.Alert.Id, "user:ada", default)); // only open alerts

        await WindowAsync(3, drifting: true);
        await monitor.CheckAsync(default);
        Assert.Equal(3, (await OnlyAlertAsync()).Windows); // each drifting window counted once

        await WindowAsync(4, drifting: false);
        await monitor.CheckAsync(default);
        Assert.Single(await _store.ListDriftAlertsAsync(true, 10, default)); // one calm window does not resolve (hysteresis)
        Assert.Equal(3, (await OnlyAlertAsync()).Windows);

        await WindowAsync(5, drifting: false);
        await monitor.CheckAsync(default);
        Assert.Equal(["opened", "acknowledged", "resolved"], _notified.Changes.Select(c => c.Change));
        Assert.Empty(await _store.ListDriftAlertsAsync(true, 10, default));
        Assert.Contains("below the warning level for 2 windows", (await OnlyAlertAsync()).Resolution, StringComparison.Ordinal);
        var audit = await _store.GetAuditAsync(opened.Alert.Id, 10, default);
        Assert.Equal(["drift.alert.resolved", "drift.alert.acknowledge", "drift.alert.opened"], audit.Select(a => a.Action));
    }

    [Fact]
    public async Task A_drift_that_comes_back_reopens_its_alert_and_keeps_its_count()
    {
        _time.Now = T0;
        var monitor = Monitor(resolveWindows: 1);
        foreach (var (minute, drifting) in new[] { (0, true), (1, true), (2, false), (3, true), (4, true) })
        {
            await WindowAsync(minute, drifting);
            await monitor.CheckAsync(default);
        }
        Assert.Equal(["opened", "resolved", "reopened"], _notified.Changes.Select(c => c.Change));
        var alert = await OnlyAlertAsync(); // the same alert, not a second one
        Assert.Equal((DriftAlertStates.Open, 1, 4, T0.AddMinutes(3)), (alert.State, alert.Reopened, alert.Windows, alert.Since));
        Assert.Null(alert.ResolvedAt);
    }

    [Fact]
    public async Task The_alerts_of_a_version_no_device_runs_any_more_are_resolved()
    {
        _time.Now = T0;
        var monitor = Monitor();
        await WindowAsync(0, drifting: true);
        await WindowAsync(1, drifting: true);
        await monitor.CheckAsync(default);
        Assert.Single(await _store.ListDriftAlertsAsync(true, 10, default));
        _time.Now = T0.AddMinutes(4); // two windows without a sketch: still served
        await monitor.CheckAsync(default);
        Assert.Single(await _store.ListDriftAlertsAsync(true, 10, default));
        _time.Now = T0.AddMinutes(6); // three windows (UnservedWindows) without a sketch of v1: the devices moved on
        await monitor.CheckAsync(default);
        Assert.Empty(await _store.ListDriftAlertsAsync(true, 10, default));
        Assert.Equal(["opened", "resolved"], _notified.Changes.Select(c => c.Change));
        Assert.Contains("no device has served v1", (await OnlyAlertAsync()).Resolution, StringComparison.Ordinal);
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
        var few = report!.Windows[^1].Cells.Single();
        Assert.Equal("few", few.Level);
        Assert.Null(few.Psi); // not judged, so no divergence is shown
        var alert = Assert.Single(report.Alerts);
        Assert.Equal((2, T0), (alert.Windows, alert.Since));
    }

    /// <summary>A window in which nothing arrived is a gap: the windows on either side are not "in a row".</summary>
    [Fact]
    public async Task A_window_in_which_nothing_arrived_breaks_a_run()
    {
        await WindowAsync(0, drifting: true);
        await WindowAsync(2, drifting: true);
        var (report, _) = await DriftReport.BuildAsync(_store, "m", "1", T0, T0.AddMinutes(10), null, 2, default);
        Assert.Empty(report!.Alerts);
        await WindowAsync(3, drifting: true);
        (report, _) = await DriftReport.BuildAsync(_store, "m", "1", T0, T0.AddMinutes(10), null, 2, default);
        Assert.Equal((2, T0.AddMinutes(2)), (Assert.Single(report!.Alerts).Windows, report.Alerts[0].Since));
    }

    /// <summary>A feature that turns to NaN has no value to judge drift on: it raises a data-quality alert instead of going quiet.</summary>
    [Fact]
    public async Task A_feature_that_turns_to_nan_opens_a_data_quality_alert()
    {
        _time.Now = T0;
        var monitor = Monitor();
        await WindowAsync(0, drifting: false);
        await WindowAsync(1, drifting: false, nan: true);
        await WindowAsync(2, drifting: false, nan: true);
        await monitor.CheckAsync(default);
        var alert = await OnlyAlertAsync();
        Assert.Equal(("quality", "invalid", DriftAlertStates.Open, 2), (alert.Kind, alert.Severity, alert.State, alert.Windows));
        var (report, _) = await DriftReport.BuildAsync(_store, "m", "1", T0, T0.AddMinutes(10), null, 2, default);
        Assert.Equal(("empty", "invalid", 300L), (report!.Windows[^1].Cells[0].Level, report.Windows[^1].Cells[0].Quality, report.Windows[^1].Cells[0].Invalid));

        await WindowAsync(3, drifting: false);
        await WindowAsync(4, drifting: false);
        await monitor.CheckAsync(default);
        Assert.Equal(DriftAlertStates.Resolved, (await OnlyAlertAsync()).State);
    }

    /// <summary>
    /// Three unlike machines whose mix matches the baseline (each fills one bin); then pump-01's readings move into
    /// pump-02's bin. The fleet's alert names pump-01, the device that changed, and not the others, though each of
    /// them always differed from the rest; and segments by device are allowed.
    /// </summary>
    [Fact]
    public async Task A_fleet_alert_names_the_device_that_changed_not_the_ones_that_always_differed()
    {
        _time.Now = T0;
        var monitor = Monitor();
        Task Device(string id, int minute, double value)
        {
            var sketch = new FeatureSketch([0, 1, 2, 3]);
            for (var i = 0; i < 100; i++)
                sketch.Add(value);
            _time.Now = Max(_time.Now, T0.AddMinutes(minute + 1));
            return _store.UpsertSketchesAsync([new StoredSketch(id, new SketchWindow
            {
                Model = "m", Version = "1", From = T0.AddMinutes(minute), Seconds = 60, Features = [sketch.ToData("rms")],
            })], default);
        }
        for (var minute = 0; minute < 4; minute++)
        {
            await Device("pump-02", minute, 0.5);
            await Device("fan-03", minute, 1.5);
            await Device("pump-01", minute, minute < 2 ? 2.5 : 0.5); // its sensor changes at minute 2
        }
        await monitor.CheckAsync(default);
        var alert = await OnlyAlertAsync();
        var named = Assert.Single(alert.Devices);
        Assert.Equal("pump-01", named.DeviceId);
        Assert.True(named.Psi > 1);
        // The devices list and device page show a drift badge for pump-01 only.
        var badges = await Devices.DeviceView.DriftByDeviceAsync(_store, default);
        Assert.Equal(["pump-01"], badges.Select(g => g.Key));

        var (byDevice, error) = await DriftReport.BuildAsync(_store, "m", "1", T0, T0.AddMinutes(10), "device", 2, default);
        Assert.Null(error);
        // Per device against the fleet's baseline each machine differs, as it always did: that is what segments by device show.
        Assert.Equal(["fan-03", "pump-01", "pump-02"], byDevice!.Alerts.Select(a => a.Segment).Order());
    }

    /// <summary>Segmented by device: the drifting device moves to a retrained version while the others stay on v1; its v1 alert ends.</summary>
    [Fact]
    public async Task An_alert_of_a_segment_whose_devices_moved_to_another_version_is_resolved()
    {
        _time.Now = T0;
        var monitor = new DriftMonitor(_store, new FleetOptions
        {
            Drift = new DriftOptions { WindowSeconds = 60, AlertWindows = 2, LookbackWindows = 10, SegmentBy = "device", UnservedWindows = 3 },
        }, new Scale.LeaderElection(new FleetOptions(), NullLogger<Scale.LeaderElection>.Instance), _notified, _time, NullLogger<DriftMonitor>.Instance);
        for (var minute = 0; minute < 8; minute++)
        {
            await WindowAsync(minute, drifting: false, device: "pump-02");
            if (minute < 2)
                await WindowAsync(minute, drifting: true, device: "pump-01"); // then it runs v2
            await monitor.CheckAsync(default);
            Assert.Equal(minute is >= 1 and < 5 ? 1 : 0, (await _store.ListDriftAlertsAsync(true, 10, default)).Count);
        }
        var alert = await OnlyAlertAsync();
        Assert.Equal(["opened", "resolved"], _notified.Changes.Select(c => c.Change)); // its old drifting windows do not reopen it
        Assert.Equal("pump-01", alert.Segment);
        Assert.Contains("no device in segment pump-01 has served v1", alert.Resolution, StringComparison.Ordinal);
    }

    /// <summary>
    /// A retrained version whose executor kept the base's baselines: its input baselines come from the base version's
    /// field sketches of the devices its rollout reaches, since the drift began; its output baselines stay.
    /// </summary>
    [Fact]
    public async Task A_retrained_version_is_judged_on_its_inputs_against_the_field_it_was_retrained_for()
    {
        foreach (var (id, site) in new[] { ("pump-01", "b"), ("pump-02", "a") })
        {
            await _store.RecordHelloAsync(new HelloMessage
            {
                DeviceId = id, AgentVersion = "0.1.0", HardwareProfile = "x86-64-generic", BootId = "b", StartedAt = T0, Models = [],
            }, T0, default);
            await _store.ChangeTagsAsync(id, new Devices.TagPatch(new Dictionary<string, string> { ["site"] = site }, []), default);
        }
        await WindowAsync(0, drifting: false, device: "pump-01"); // before the drift: not part of the field it answers
        foreach (var minute in new[] { 1, 2 })
        {
            await WindowAsync(minute, drifting: true, device: "pump-01");
            await WindowAsync(minute, drifting: false, device: "pump-02"); // another site: not in the retrained version's target
        }
        var baseVersion = (await _store.GetModelVersionAsync("m", 1, default))!;
        var card = baseVersion.Card with
        {
            FeatureBaselines =
            [
                baseVersion.Card.FeatureBaselines[0] with { Source = "input:0" },
                new Models.FeatureBaseline("confidence", [0, 0.5, 1], [10, 90]) { Source = "confidence" },
            ],
        };
        baseVersion = baseVersion with { Card = card };
        var alert = new DriftAlert
        {
            Id = "a", Model = "m", Version = "1", Feature = "rms", Segment = "b", State = "open", OpenedAt = T0, Since = T0.AddMinutes(1), Psi = 2, Windows = 2,
        };
        var job = new Retraining.RetrainingJob
        {
            Id = "j", ModelId = "m", BaseVersion = 1, State = "processing", Trigger = "drift", Reason = "r", Executor = "demo", CreatedAt = T0.AddMinutes(3),
            CreatedBy = "t", Deadline = T0.AddHours(1), TokenHash = "", Snapshot = new Retraining.JobSnapshot { From = T0, To = T0.AddMinutes(3), Alerts = [alert] },
        };
        var target = new Rollouts.RolloutTarget { Selector = "site=b" };

        var (rebuilt, note) = await Retraining.FieldBaselines.RebuildAsync(_store, job, baseVersion, card, target, default);
        Assert.Equal([0L, 0, 600], rebuilt.FeatureBaselines[0].Counts); // pump-01's two drifting windows, on v1's bins
        // Outputs: from the retrained version's own first windows in the field, not judged until then.
        Assert.Equal([0L, 0], rebuilt.FeatureBaselines[1].Counts);
        Assert.Equal((3, true), (rebuilt.FeatureBaselines[1].ReferenceWindows, rebuilt.FeatureBaselines[1].Pending));
        Assert.Contains("rms", note, StringComparison.Ordinal);
        Assert.Null(rebuilt.Problem());

        // v2 runs on pump-01: its first three complete windows become the confidence baseline.
        await _store.AddModelVersionAsync(new ModelVersion
        {
            ModelId = "m", Version = 2, State = ApprovalStates.Approved, Card = rebuilt, Artifacts = [], CreatedAt = T0.AddMinutes(5), CreatedBy = "test",
        }, default);
        var monitor = Monitor();
        for (var minute = 5; minute < 10; minute++)
        {
            var sketch = new FeatureSketch([0, 0.5, 1]);
            for (var i = 0; i < 100; i++)
                sketch.Add(i < 30 ? 0.3 : 0.8);
            await _store.UpsertSketchesAsync([new StoredSketch("pump-01", new SketchWindow
            {
                Model = "m", Version = "2", From = T0.AddMinutes(minute), Seconds = 60, Features = [sketch.ToData("confidence")],
            })], default);
            _time.Now = T0.AddMinutes(minute + 1);
            await monitor.CheckAsync(default);
            var confidence = (await _store.GetModelVersionAsync("m", 2, default))!.Card.FeatureBaselines[1];
            // Windows 5, 6 and 7 are complete once window 8 has arrived.
            Assert.Equal(minute < 8 ? [0L, 0] : [90L, 210], confidence.Counts);
        }
        Assert.Contains(await _store.GetAuditAsync("m@2", 10, default), a => a.Action == "model.baseline.reference");

        // Rolled out to both sites, the baseline is both pumps' field; a canary window of pump-01 alone is judged
        // against pump-01's own field, not the mix (against which it would drift).
        var (both, _) = await Retraining.FieldBaselines.RebuildAsync(_store, job, baseVersion, card, new Rollouts.RolloutTarget(), default);
        Assert.Equal([200L, 200, 800], both.FeatureBaselines[0].Counts);
        await _store.AddModelVersionAsync(new ModelVersion
        {
            ModelId = "m", Version = 3, State = ApprovalStates.Approved, Card = both, Artifacts = [], CreatedAt = T0.AddMinutes(5), CreatedBy = "test",
        }, default);
        var canary = new FeatureSketch([0, 1, 2, 3]);
        for (var i = 0; i < 300; i++)
            canary.Add(2.5);
        await _store.UpsertSketchesAsync([new StoredSketch("pump-01", new SketchWindow
        {
            Model = "m", Version = "3", From = T0.AddMinutes(6), Seconds = 60, Features = [canary.ToData("rms"), new FeatureSketch([0, 0.5, 1]).ToData("confidence")],
        })], default);
        var (v3, _) = await DriftReport.BuildAsync(_store, "m", "3", T0, T0.AddMinutes(10), null, 2, default);
        Assert.Equal("ok", v3!.Windows.Single().Cells.Single(c => c.Feature == "rms").Level);

        // An executor that wrote its own baselines is left alone.
        var own = card with { FeatureBaselines = [new Models.FeatureBaseline("rms", [0, 1, 2, 3], [1, 2, 3])] };
        Assert.Same(own, (await Retraining.FieldBaselines.RebuildAsync(_store, job, baseVersion, own, target, default)).Card);
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
