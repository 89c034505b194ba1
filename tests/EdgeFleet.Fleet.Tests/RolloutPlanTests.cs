using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Tests;

/// <summary>The rollout's decisions without a fleet: order, phase sizes, outcomes, gates, phase completion.</summary>
public sealed class RolloutPlanTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    private static DeviceRecord Device(string id, string version = "1", OtaState ota = OtaState.Committed, OtaStatusMessage? last = null) => new()
    {
        Id = id,
        FirstSeen = T0,
        LastSeen = T0,
        HardwareProfile = "x86-64-generic",
        ActiveModel = new ModelRef { Name = "m", Version = version },
        Ota = ota,
        LastOta = last,
    };

    private static Rollout Rollout(params RolloutPhase[] phases) => new()
    {
        Id = "r1",
        ModelId = "m",
        Version = 2,
        Target = new RolloutTarget { Selector = "a=b" },
        Phases = [.. phases],
        Gates = new RolloutGates { MaxFailureRate = 0.1 },
        State = RolloutStates.Running,
        PhaseStartedAt = T0,
        CreatedAt = T0,
        CreatedBy = "test",
        Manifest = JsonDocument.Parse("{}").RootElement,
        KeySet = JsonDocument.Parse("{}").RootElement,
    };

    [Fact]
    public void Each_moved_device_s_delivery_is_kept_with_the_rollout_and_summed_in_its_view()
    {
        static OtaStatusMessage Last(string id, OtaState state, OtaTransport? transport, long? saved, long version = 2) => new()
        {
            DeviceId = id, ModelId = "m", Version = version, State = state, Transport = transport, BytesSaved = saved, At = T0,
        };
        var devices = new[]
        {
            Device("a", last: Last("a", OtaState.Downloading, OtaTransport.Mqtt, 4_000_000)),
            Device("b", last: Last("b", OtaState.WaitingForBudget, null, null)),
            Device("c", version: "2", last: Last("c", OtaState.Committed, OtaTransport.Http, 1_000_000)),
            Device("d", last: Last("d", OtaState.Committed, OtaTransport.Mqtt, 9, version: 1)), // another version's: not this rollout's
        };
        var rollout = Rollout(new RolloutPhase { Percent = 100 }) with
        {
            Devices = [.. devices.Select(d => new RolloutDevice { Id = d.Id, Phase = 0, AssignedAt = T0 })],
        };
        var step = RolloutPlan.Evaluate(rollout, devices, devices.ToDictionary(d => d.Id), T0.AddSeconds(1));
        var byId = step.Updated.ToDictionary(d => d.Id);
        Assert.Equal((OtaState.Downloading, OtaTransport.Mqtt, 4_000_000L), (byId["a"].Step, byId["a"].Transport, byId["a"].BytesSaved));
        Assert.Equal(OtaState.WaitingForBudget, byId["b"].Step);
        Assert.Null(byId["d"].Step);
        var view = RolloutsApi.View(rollout with { Devices = [.. step.Updated] }, withDevices: false);
        Assert.Equal(new RolloutDelivery(1, 1, 5_000_000), view.Delivery);
    }

    [Fact]
    public void The_order_is_stable_and_differs_between_rollouts()
    {
        var devices = Enumerable.Range(0, 100).Select(i => Device($"d{i}")).ToList();
        var once = RolloutPlan.Order("r1", devices).Select(d => d.Id).ToList();
        var shuffled = RolloutPlan.Order("r1", devices.AsEnumerable().Reverse()).Select(d => d.Id).ToList();
        Assert.Equal(once, shuffled);
        Assert.NotEqual(once, RolloutPlan.Order("r2", devices).Select(d => d.Id).ToList());
        // A device's rank does not depend on the others: devices that join keep the first ones' relative order,
        // so a device moved in an early phase stays ahead in later ones.
        var more = devices.Concat(Enumerable.Range(100, 50).Select(i => Device($"d{i}"))).ToList();
        Assert.Equal(once, RolloutPlan.Order("r1", more).Select(d => d.Id).Where(id => int.Parse(id[1..], System.Globalization.CultureInfo.InvariantCulture) < 100));
    }

    [Theory]
    [InlineData(1.0, null, 1000, 10)]
    [InlineData(1.0, null, 50, 1)]
    [InlineData(10.0, null, 7, 1)]
    [InlineData(100.0, null, 7, 7)]
    [InlineData(34.0, null, 3, 1)] // was 2 (67 %): a phase never moves more than its share...
    [InlineData(50.0, null, 3, 1)]
    [InlineData(67.0, null, 3, 2)]
    [InlineData(99.0, null, 3, 2)]
    [InlineData(70.0, null, 10, 7)]
    [InlineData(0.0, null, 10, 0)]
    [InlineData(5.0, null, 0, 0)]
    [InlineData(null, 25, 1000, 25)]
    [InlineData(null, 25, 10, 10)]
    public void Phase_sizes_round_down_to_at_least_one_device_and_never_exceed_the_target(double? percent, int? count, int eligible, int size) =>
        Assert.Equal(size, new RolloutPhase { Percent = percent, Count = count }.Size(eligible)); // ...unless it would be empty

    [Theory]
    [InlineData("running", 0, 2, "pause,promote,abort,rollback")]
    [InlineData("running", 1, 2, "pause,abort,rollback")] // the last phase: nothing to promote to
    [InlineData("paused", 0, 2, "resume,promote,abort,rollback")]
    [InlineData("draft", 0, 2, "approve,abort")]
    [InlineData("completed", 1, 2, "rollback")]
    [InlineData("aborted", 0, 2, "rollback")]
    [InlineData("rolled-back", 0, 2, "")]
    public void Each_state_allows_only_the_actions_that_can_work(string state, int phase, int phases, string allowed) =>
        Assert.Equal(allowed, string.Join(',', new[] { "approve", "pause", "resume", "promote", "abort", "rollback" }
            .Where(a => RolloutEngine.Allows(state, phase, phases, a))));

    [Fact]
    public void The_phases_sizes_and_progress_add_up_to_the_rollout_s()
    {
        // 34 % then 100 % of 3 devices, all installed: phase 1 added 1 device and phase 2 the other 2 (not "1 of 3").
        var rollout = new Rollout
        {
            Id = "r",
            ModelId = "m",
            Version = 2,
            Target = new RolloutTarget(),
            Phases = [new RolloutPhase { Percent = 34 }, new RolloutPhase { Percent = 100 }],
            State = RolloutStates.Completed,
            Eligible = 3,
            Phase = 1,
            PhaseStartedAt = DateTimeOffset.UnixEpoch,
            CreatedAt = DateTimeOffset.UnixEpoch,
            CreatedBy = "t",
            Manifest = default,
            KeySet = default,
            Devices =
            [
                new RolloutDevice { Id = "a", Phase = 0, AssignedAt = DateTimeOffset.UnixEpoch, Status = RolloutDeviceStatus.Installed },
                new RolloutDevice { Id = "b", Phase = 1, AssignedAt = DateTimeOffset.UnixEpoch, Status = RolloutDeviceStatus.Installed },
                new RolloutDevice { Id = "c", Phase = 1, AssignedAt = DateTimeOffset.UnixEpoch, Status = RolloutDeviceStatus.Installed },
            ],
        };
        var view = RolloutsApi.View(rollout, withDevices: false);
        Assert.Equal([(1, 1, 1), (2, 2, 3)], view.Phases.Select(p => (p.Size, p.Installed, p.Cumulative)));
        Assert.Equal(view.Tally.Installed, view.Phases.Sum(p => p.Installed));
        Assert.Equal(view.Eligible, view.Phases.Sum(p => p.Size));

        // The preview a draft shows moves the same devices per phase, in rank order.
        var devices = Enumerable.Range(0, 3).Select(i => Device($"d{i}")).ToList();
        var preview = RolloutPlan.Preview("r", devices, rollout.Phases);
        Assert.Equal([1, 3], preview.Select(p => p.Size));
        Assert.Equal(RolloutPlan.Order("r", devices).Select(d => d.Id), preview.SelectMany(p => p.Adds));
    }

    [Fact]
    public void A_phase_moves_the_next_ranked_devices_then_waits_for_reports_and_its_soak()
    {
        var devices = Enumerable.Range(0, 20).Select(i => Device($"d{i}")).ToList();
        var ordered = RolloutPlan.Order("r1", devices);
        var byId = devices.ToDictionary(d => d.Id);
        var rollout = Rollout(new RolloutPhase { Percent = 10, SoakSeconds = 60, MinReporting = 2 }, new RolloutPhase { Percent = 100 });

        var first = RolloutPlan.Evaluate(rollout, ordered, byId, T0);
        Assert.Equal(ordered.Take(2).Select(d => d.Id), first.Assign.Select(d => d.Id));
        Assert.False(first.PhaseDone);

        var moved = rollout with { Devices = [.. first.Assign.Select(d => new RolloutDevice { Id = d.Id, Phase = 0, AssignedAt = T0 })] };
        Assert.Empty(RolloutPlan.Evaluate(moved, ordered, byId, T0.AddSeconds(1)).Assign);
        Assert.False(RolloutPlan.Evaluate(moved, ordered, byId, T0.AddSeconds(120)).PhaseDone); // nobody reported yet

        foreach (var d in first.Assign)
            byId[d.Id] = d with { ActiveModel = new ModelRef { Name = "m", Version = "2" } };
        var soaking = RolloutPlan.Evaluate(moved, ordered, byId, T0.AddSeconds(30));
        Assert.Equal(2, soaking.Tally.Installed);
        Assert.False(soaking.PhaseDone);
        Assert.True(RolloutPlan.Evaluate(moved, ordered, byId, T0.AddSeconds(60)).PhaseDone);
    }

    [Fact]
    public void Failures_over_the_limit_fail_the_gate_once_enough_devices_reported()
    {
        var devices = Enumerable.Range(0, 10).Select(i => Device($"d{i}")).ToList();
        var byId = devices.ToDictionary(d => d.Id);
        var rollout = Rollout(new RolloutPhase { Percent = 100, MinReporting = 4 }) with
        {
            Devices = [.. devices.Select(d => new RolloutDevice { Id = d.Id, Phase = 0, AssignedAt = T0 })],
        };
        OtaStatusMessage Failed(string id) => new() { DeviceId = id, ModelId = "m", Version = 2, State = OtaState.RolledBack, Error = OtaError.HealthCheckFailed, At = T0 };
        byId["d0"] = byId["d0"] with { LastOta = Failed("d0"), Ota = OtaState.RolledBack };
        byId["d1"] = byId["d1"] with { ActiveModel = new ModelRef { Name = "m", Version = "2" } };
        var early = RolloutPlan.Evaluate(rollout, devices, byId, T0);
        Assert.Null(early.GateFailure); // 2 of the 4 reports needed
        Assert.Equal((1, 1, 8), (early.Tally.Installed, early.Tally.Failed, early.Tally.Pending));
        Assert.Equal("rolled back: health-check-failed", early.Updated.Single(d => d.Id == "d0").Reason);

        byId["d2"] = byId["d2"] with { ActiveModel = new ModelRef { Name = "m", Version = "2" } };
        byId["d3"] = byId["d3"] with { ActiveModel = new ModelRef { Name = "m", Version = "2" } };
        var judged = RolloutPlan.Evaluate(rollout, devices, byId, T0);
        Assert.Contains("1 of 4 reporting devices failed", judged.GateFailure, StringComparison.Ordinal);
        Assert.False(judged.PhaseDone);
    }

    /// <summary>
    /// A shadow phase moves its devices in shadow (they keep serving v1), counts a device installed when it reports
    /// v2 running in shadow and failed when it rejected it; the first phase after it makes the shadow devices serve
    /// v2 (not those that failed), and is not done in the step that does so.
    /// </summary>
    [Fact]
    public void A_shadow_phase_moves_devices_in_shadow_and_the_next_phase_makes_them_serve_the_version()
    {
        var devices = Enumerable.Range(0, 10).Select(i => Device($"d{i}")).ToList();
        var ordered = RolloutPlan.Order("r1", devices);
        var byId = devices.ToDictionary(d => d.Id);
        var rollout = Rollout(new RolloutPhase { Percent = 30, Shadow = true, MinReporting = 3 }, new RolloutPhase { Percent = 100 });
        var first = RolloutPlan.Evaluate(rollout, ordered, byId, T0);
        Assert.True(first.Shadow);
        Assert.Equal(3, first.Assign.Count);
        var moved = rollout with { Devices = [.. first.Assign.Select(d => new RolloutDevice { Id = d.Id, Phase = 0, AssignedAt = T0, Shadow = true, ShadowPhase = 0 })] };

        var (a, b, c) = (first.Assign[0].Id, first.Assign[1].Id, first.Assign[2].Id);
        byId[a] = byId[a] with { ShadowModel = new ModelRef { Name = "m", Version = "2" } };
        byId[b] = byId[b] with { ShadowModel = new ModelRef { Name = "m", Version = "2" } };
        byId[c] = byId[c] with { LastOta = new OtaStatusMessage { DeviceId = c, ModelId = "m", Version = 2, Shadow = true, State = OtaState.Rejected, Error = OtaError.HealthCheckFailed, At = T0 } };
        // A served install of v2 would have been a different status: the shadow's is read from the shadow report.
        Assert.Equal(RolloutDeviceStatus.Pending, RolloutPlan.Outcome("m", 2, byId[a]).Status);
        var shadowing = RolloutPlan.Evaluate(moved, ordered, byId, T0.AddSeconds(1));
        Assert.Equal((2, 1), (shadowing.Tally.Installed, shadowing.Tally.Failed));
        Assert.Equal("shadow rejected: health-check-failed", shadowing.Updated.Single(d => d.Id == c).Reason);
        Assert.Empty(shadowing.Promote);

        var next = moved with { Phase = 1, Devices = [.. shadowing.Updated] };
        var serving = RolloutPlan.Evaluate(next, ordered, byId, T0.AddSeconds(2));
        Assert.False(serving.Shadow);
        Assert.Equal(new[] { a, b }.Order(), serving.Promote.Select(d => d.Id).Order());
        Assert.All(serving.Promote, d => Assert.Equal((false, 1, RolloutDeviceStatus.Pending, 0), (d.Shadow, d.Phase, d.Status, d.ShadowPhase!.Value)));
        Assert.True(serving.Updated.Single(d => d.Id == c) is { Shadow: true, Status: RolloutDeviceStatus.Failed });
        Assert.Equal(7, serving.Assign.Count);
        Assert.False(serving.PhaseDone);
    }

    /// <summary>The shadow's figures are the windows' merged, checked here against sums done by hand.</summary>
    [Fact]
    public void A_shadow_reading_merges_windows_and_judges_agreement_first()
    {
        static TelemetryRecord Window(string version, long count, long agreements, double conf, double servedConf, long micros, long servedMicros, Dictionary<string, long> labels, Dictionary<string, long> served) => new()
        {
            Ts = T0,
            Kind = TelemetryKind.Shadow,
            Shadow = new ShadowWindow
            {
                Model = "m",
                Version = version,
                ServedVersion = "1",
                From = T0,
                Seconds = 60,
                Count = count,
                Agreements = agreements,
                Errors = 1,
                MeanConfidence = conf,
                ServedMeanConfidence = servedConf,
                P95Micros = micros,
                ServedP95Micros = servedMicros,
                Buckets = [[EdgeFleet.Shared.Stats.LatencyHistogram.IndexOf(micros), count]],
                ServedBuckets = [[EdgeFleet.Shared.Stats.LatencyHistogram.IndexOf(servedMicros), count]],
                Labels = labels,
                ServedLabels = served,
            },
        };
        var records = new[]
        {
            Window("2", 100, 95, 0.8, 0.9, 1000, 1000, new() { ["a"] = 50, ["b"] = 50 }, new() { ["a"] = 50, ["b"] = 50 }),
            Window("2", 300, 285, 0.6, 0.9, 1000, 1000, new() { ["a"] = 150, ["b"] = 150 }, new() { ["a"] = 150, ["b"] = 150 }),
            Window("3", 1000, 0, 0.1, 0.9, 9000, 1000, new() { ["c"] = 1000 }, new() { ["a"] = 1000 }), // another version: not read
        };
        var reading = ShadowReading.From(records, "m", "2");
        Assert.Equal(400, reading.Shadow.Samples);
        Assert.Equal(2, reading.Windows);
        Assert.Equal(380.0 / 400, reading.Agreement, 9);
        Assert.Equal((0.8 * 100 + 0.6 * 300) / 400, reading.Shadow.MeanConfidence, 9); // 0.65
        Assert.Equal(0.9, reading.Served.MeanConfidence, 9);
        Assert.Equal(2.0 / 402, reading.Shadow.ErrorRate, 9);

        // 95 % agreement passes the 90 % default; the confidence drop of 0.25 fails its 0.10 gate.
        var verdict = reading.Judge(new QualityGates { MinSamples = 300 });
        Assert.True(verdict.Judged);
        Assert.StartsWith("quality gate (shadow): mean confidence fell by 0.250", verdict.Failure, StringComparison.Ordinal);
        Assert.Contains("shadow agreed with the served model on 95.0 % of 400 inputs (2 windows)", verdict.Summary, StringComparison.Ordinal);
        Assert.StartsWith("quality gate (shadow): the top class agreed with the served model's on 95.0 %",
            reading.Judge(new QualityGates { MinSamples = 300, MinShadowAgreement = 0.96 }).Failure, StringComparison.Ordinal);
        Assert.Null(reading.Judge(new QualityGates { MinSamples = 300, MaxConfidenceDrop = 0.3 }).Failure);
        Assert.False(reading.Judge(new QualityGates { MinSamples = 500 }).Judged);
    }

    [Fact]
    public void A_pending_download_failure_is_not_a_failed_install()
    {
        var status = new OtaStatusMessage { DeviceId = "d", ModelId = "m", Version = 2, State = OtaState.Failed, Error = OtaError.DownloadFailed, At = T0 };
        Assert.Equal(RolloutDeviceStatus.Pending, RolloutPlan.Outcome("m", 2, Device("d", ota: OtaState.Failed, last: status)).Status);
        Assert.Equal(RolloutDeviceStatus.Installed, RolloutPlan.Outcome("m", 2, Device("d", version: "2")).Status);
        Assert.Equal(RolloutDeviceStatus.Pending, RolloutPlan.Outcome("m", 2, null).Status);
    }

    [Theory]
    [InlineData("[]", "1 to 20 phases")]
    [InlineData("""[{"percent": 10}]""", "last phase must reach the whole target")]
    [InlineData("""[{"percent": 10, "count": 3}, {"percent": 100}]""", "give a percent or a count")]
    [InlineData("""[{"percent": 0}, {"percent": 100}]""", "percent must be within")]
    [InlineData("""[{"count": 0}, {"percent": 100}]""", "count must be at least 1")]
    [InlineData("""[{"percent": 100, "soakSeconds": -1}]""", "cannot be negative")]
    [InlineData("""[{"percent": 10}, {"percent": 100, "shadow": true}]""", "last phase cannot be a shadow phase")]
    [InlineData("""[{"percent": 10}, {"percent": 20, "shadow": true}, {"percent": 100}]""", "shadow phases come first")]
    public void Bad_phases_are_refused_with_the_reason(string phases, string reason)
    {
        var parsed = JsonSerializer.Deserialize<List<RolloutPhase>>(phases, Web)!;
        Assert.Contains(reason, RolloutPlan.Check(Rollout() with { Phases = parsed }), StringComparison.Ordinal);
    }

    [Fact]
    public void A_request_that_names_some_settings_keeps_the_defaults_of_the_others()
    {
        // Source-generated JSON leaves init-only properties it does not see at default(T): these are settable.
        var request = JsonSerializer.Deserialize("""
            {"modelId": "m", "version": 2, "target": {"selector": "a=b"}, "phases": [{"percent": 100}], "gates": {"quality": {"minSamples": 300}}}
            """, EdgeFleet.Fleet.Devices.FleetApiJsonContext.Default.RolloutRequest)!;
        Assert.Equal(1, request.Phases[0].MinReporting);
        Assert.Equal(0.05, request.Gates!.MaxFailureRate);
        Assert.True(request.Gates.Quality.Enabled);
        Assert.Equal(300, request.Gates.Quality.MinSamples);
        Assert.Equal(1.5, request.Gates.Quality.MaxP95LatencyRatio);
        Assert.Equal(0.25, request.Gates.Quality.MaxOutputPsi);
    }

    [Fact]
    public void The_quality_verdict_names_the_gate_that_failed_or_why_it_was_not_judged()
    {
        static QualityReading Reading(long samples, long p95, double confidence, params (string, long)[] outputs) =>
            new(samples, p95, confidence, outputs.ToDictionary(o => o.Item1, o => o.Item2), 0, 0);
        var gates = new QualityGates();
        var control = Reading(1000, 400, 0.8, ("a", 500), ("b", 500));
        Assert.Null(QualityVerdict.Judge(Reading(1000, 420, 0.79, ("a", 480), ("b", 520)), control, gates).Failure);
        Assert.StartsWith("quality gate: p95 latency 3.00×", QualityVerdict.Judge(Reading(1000, 1200, 0.8, ("a", 500), ("b", 500)), control, gates).Failure, StringComparison.Ordinal);
        Assert.StartsWith("quality gate: mean confidence fell by 0.300", QualityVerdict.Judge(Reading(1000, 400, 0.5, ("a", 500), ("b", 500)), control, gates).Failure, StringComparison.Ordinal);
        Assert.StartsWith("quality gate: the predicted-class distribution shifted", QualityVerdict.Judge(Reading(1000, 400, 0.8, ("a", 950), ("b", 50)), control, gates).Failure, StringComparison.Ordinal);
        var notJudged = QualityVerdict.Judge(Reading(10, 9999, 0.1, ("c", 10)), control, gates);
        Assert.False(notJudged.Judged);
        Assert.Null(notJudged.Failure);
        Assert.Contains("10 inferences on the new version", notJudged.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void The_fallback_share_counts_other_versions_only_after_the_new_one_first_answered()
    {
        static TelemetryRecord Inference(long seq, string version) => new()
        {
            Seq = seq,
            Ts = T0,
            Kind = TelemetryKind.Inference,
            Inference = new InferenceSample { Model = "m", Version = version, Label = "a", Confidence = 0.9f, LatencyMicros = 100 },
        };
        // Device 1: three v1 answers before the update (not counted), then v2, v1 (fallback), v2, v2.
        IReadOnlyList<TelemetryRecord> one = [Inference(4, "2"), Inference(1, "1"), Inference(2, "1"), Inference(3, "1"), Inference(5, "1"), Inference(6, "2"), Inference(7, "2")];
        // Device 2: not updated yet: nothing counts.
        IReadOnlyList<TelemetryRecord> two = [Inference(1, "1"), Inference(2, "1")];
        Assert.Equal(0.25, QualityReading.FallbackShare([one, two], "m", "2"), 12);
        Assert.Equal(0, QualityReading.FallbackShare([two], "m", "2"));
    }

    [Fact]
    public void A_release_is_signed_for_well_formed_profiles_only_so_one_bad_record_cannot_fail_every_rollout()
    {
        // As a fleet may hold them from before profiles were checked at enrollment: a 100 KB script, 65 characters.
        DeviceRecord[] devices =
        [
            Device("a") with { HardwareProfile = "<script>" + new string('x', 100_000) + "</script>" },
            Device("b") with { HardwareProfile = new string('p', 65) },
            Device("c") with { HardwareProfile = "raspberry-pi-5" },
            Device("d"),
            Device("e") with { HardwareProfile = null },
        ];
        Assert.Equal(["raspberry-pi-5", "x86-64-generic"], RolloutsApi.SignableProfiles(devices));
    }
}
