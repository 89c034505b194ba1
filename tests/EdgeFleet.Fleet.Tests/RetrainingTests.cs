using System.Net;
using System.Text;
using System.Text.Json;
using EdgeFleet.Fleet.Drift;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Retraining;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.ModelTools.Demo;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.Shared.Demo;
using EdgeFleet.Shared.Stats;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Fleet.Tests;

/// <summary>
/// Retraining on a real store: the policy rules, a simulated fleet where one segment drifts (one job, for that segment),
/// command and webhook executors, and the pipeline that turns an executor's output into a validated version and a draft rollout.
/// </summary>
public sealed class RetrainingTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-retrain-").FullName;
    private readonly LiteDbFleetStore _store;
    private readonly ManualTime _time = new(T0.AddMinutes(10));
    private readonly ArtifactStore _artifacts;

    private sealed class ManualTime(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private sealed class Silent : IDriftNotifier
    {
        public Task NotifyAsync(string change, DriftAlert alert, CancellationToken ct) => Task.CompletedTask;
    }

    public RetrainingTests()
    {
        _store = new LiteDbFleetStore(Path.Combine(_dir, "fleet.db"));
        _artifacts = new ArtifactStore(Path.Combine(_dir, "artifacts"));
        File.WriteAllText(Path.Combine(_dir, "hook.secret"), "s\n");
        _store.CreateModelAsync(new RegisteredModel { Id = "m", CreatedAt = T0, CreatedBy = "test" }, default).GetAwaiter().GetResult();
        _store.AddModelVersionAsync(new ModelVersion
        {
            ModelId = "m",
            Version = 1,
            State = ApprovalStates.Approved,
            Card = new ModelCard
            {
                Owner = "o",
                IntendedUse = "u",
                Labels = [.. MachineConditions.Labels],
                FeatureBaselines = [new Models.FeatureBaseline("rms", [0, 1, 2, 3], [100, 100, 100]), new Models.FeatureBaseline("peak", [0, 1, 2, 3], [100, 100, 100])],
                // The demo model is tiny: INT8 is not faster on it, so the gate's latency check is relaxed as the demo's card does.
                Thresholds = JsonDocument.Parse("""{"maxLatencyRatio": 100}""").RootElement.Clone(),
            },
            Artifacts = [],
            CreatedAt = T0,
            CreatedBy = "test",
        }, default).GetAwaiter().GetResult();
    }

    private FleetOptions Options(Dictionary<string, RetrainingExecutorOptions>? executors = null, string? callback = null) => new()
    {
        Drift = new DriftOptions { WindowSeconds = 60, AlertWindows = 2, LookbackWindows = 10, SegmentBy = "tag:site" },
        Retraining = new RetrainingOptions { WorkPath = Path.Combine(_dir, "work"), Executors = executors ?? new() { ["demo"] = new() { Url = "http://127.0.0.1:9/", SecretFile = Path.Combine(_dir, "hook.secret") } }, CallbackUrl = callback ?? "http://fleet.example" },
    };

    private RetrainingPipeline Pipeline(FleetOptions options) =>
        new(_store, _artifacts, new RolloutSigner(options, _artifacts, _time), _time, NullLogger<RetrainingPipeline>.Instance);

    private (RetrainingScheduler Scheduler, RetrainingExecutors Executors) Scheduler(FleetOptions options)
    {
        var executors = new RetrainingExecutors(options, _store, _artifacts, Pipeline(options), _time, NullLogger<RetrainingExecutors>.Instance);
        return (new RetrainingScheduler(_store, options, new Scale.LeaderElection(new FleetOptions(), NullLogger<Scale.LeaderElection>.Instance), executors, _time,
            NullLogger<RetrainingScheduler>.Instance), executors);
    }

    private static DriftAlert Alert(string id, string feature, int windows, string segment = "b") => new()
    {
        Id = id,
        Model = "m",
        Version = "1",
        Feature = feature,
        Segment = segment,
        State = DriftAlertStates.Open,
        OpenedAt = T0,
        Since = T0,
        Psi = 1,
        Windows = windows,
    };

    private static RetrainingJob PastJob(DateTimeOffset at, params string[] alertIds) => new()
    {
        Id = "old",
        ModelId = "m",
        BaseVersion = 1,
        State = RetrainingJobStates.Succeeded,
        Trigger = "drift",
        Reason = "r",
        Executor = "demo",
        CreatedAt = at,
        CreatedBy = "t",
        Deadline = at.AddHours(1),
        TokenHash = "",
        Snapshot = new JobSnapshot { From = at, To = at, Alerts = [.. alertIds.Select(id => Alert(id, "rms", 3))] },
    };

    [Fact]
    public void The_policy_rules_drift_on_enough_features_confidence_schedule_cooldown_and_alerts_taken_once()
    {
        var now = T0.AddDays(2);
        var policy = new RetrainingPolicy { ModelId = "m", Executor = "demo", Drift = new DriftTrigger { MinFeatures = 1, MinWindows = 3 }, UpdatedAt = now.AddHours(-1) };
        DriftAlert[] alerts = [Alert("a1", "rms", 3), Alert("a2", "peak", 2), Alert("a3", "rms", 5, segment: "c") with { Model = "other" }];
        var due = RetrainingTriggers.Evaluate(policy, now, null, alerts, new HashSet<string>(), null)!;
        Assert.Equal("drift", due.Trigger);
        Assert.Equal(["a1"], due.Alerts.Select(a => a.Id)); // peak has drifted for 2 windows only; a3 is another model's
        Assert.Contains("rms", due.Reason, StringComparison.Ordinal);
        Assert.Null(RetrainingTriggers.Evaluate(policy with { Drift = new DriftTrigger { MinFeatures = 2, MinWindows = 2 } }, now, null, [alerts[0]], new HashSet<string>(), null));
        Assert.Equal(2, RetrainingTriggers.Evaluate(policy with { Drift = new DriftTrigger { MinFeatures = 2, MinWindows = 2 } }, now, null, alerts, new HashSet<string>(), null)!.Alerts.Count);
        // An alert an earlier job was started for does not start another: one drift episode, one job.
        Assert.Null(RetrainingTriggers.Evaluate(policy, now, PastJob(now.AddDays(-1), "a1"), alerts, new HashSet<string> { "a1" }, null));
        // The cooldown holds every automatic trigger back.
        Assert.Null(RetrainingTriggers.Evaluate(policy with { CooldownHours = 24 }, now, PastJob(now.AddHours(-23)), alerts, new HashSet<string>(), null));
        Assert.NotNull(RetrainingTriggers.Evaluate(policy with { CooldownHours = 24 }, now, PastJob(now.AddHours(-25)), alerts, new HashSet<string>(), null));
        Assert.Null(RetrainingTriggers.Evaluate(policy with { Enabled = false }, now, null, alerts, new HashSet<string>(), null));

        var byConfidence = policy with { Drift = null, Confidence = new ConfidenceTrigger { MaxDrop = 0.1 } };
        var drop = RetrainingTriggers.Evaluate(byConfidence, now, null, [], new HashSet<string>(), new ConfidenceReading(0.63, 0.95, 1000))!;
        Assert.Equal("confidence", drop.Trigger);
        Assert.Contains("0.320 below", drop.Reason, StringComparison.Ordinal);
        Assert.Null(RetrainingTriggers.Evaluate(byConfidence, now, null, [], new HashSet<string>(), new ConfidenceReading(0.9, 0.95, 1000)));
        Assert.Null(RetrainingTriggers.Evaluate(byConfidence, now, null, [], new HashSet<string>(), null)); // no reading: too few values

        var scheduled = policy with { Drift = null, EveryHours = 24, CooldownHours = 1 };
        Assert.Null(RetrainingTriggers.Evaluate(scheduled, now, null, [], new HashSet<string>(), null)); // the policy was set an hour ago
        Assert.Equal("schedule", RetrainingTriggers.Evaluate(scheduled, now, PastJob(now.AddHours(-25)), [], new HashSet<string>(), null)!.Trigger);
        Assert.Null(RetrainingTriggers.Evaluate(scheduled, now, PastJob(now.AddHours(-20)), [], new HashSet<string>(), null));
    }

    [Fact]
    public async Task A_segment_that_drifts_gets_one_job_for_that_segment_not_one_per_device_or_window()
    {
        var options = Options();
        var devices = Enumerable.Range(0, 30).Select(i => (Id: $"dev-{i:D2}", Site: i < 15 ? "a" : "b")).ToList();
        foreach (var (id, site) in devices)
        {
            await _store.RecordHelloAsync(new HelloMessage { DeviceId = id, AgentVersion = "1", HardwareProfile = "x86-64-generic", BootId = "b", StartedAt = T0, Models = [] }, T0, default);
            await _store.ChangeTagsAsync(id, new Devices.TagPatch(new Dictionary<string, string> { ["site"] = site }, []), default);
        }
        await _store.AddHardExamplesAsync([.. Enumerable.Range(1, 5).Select(i => new StoredHardExample
        {
            Id = StoredHardExample.IdOf("dev-20", "s", i), DeviceId = "dev-20", Ts = T0.AddMinutes(i),
            Example = new HardExample { Model = "m", Version = "1", Label = "imbalance", Confidence = 0.4f, Threshold = 0.6f, Shape = [1, 2], Input = [1, 2] },
        })], default);
        await _store.PutRetrainingPolicyAsync(new RetrainingPolicy { ModelId = "m", Executor = "demo", Drift = new DriftTrigger { MinWindows = 2 }, CooldownHours = 0, UpdatedAt = T0 }, default);
        var monitor = new DriftMonitor(_store, options, new Scale.LeaderElection(new FleetOptions(), NullLogger<Scale.LeaderElection>.Instance), new Silent(), _time, NullLogger<DriftMonitor>.Instance);
        var (scheduler, executors) = Scheduler(options);
        using var running = executors;

        for (var minute = 0; minute < 6; minute++)
        {
            foreach (var (id, site) in devices)
            {
                var sketch = new FeatureSketch([0, 1, 2, 3]);
                for (var i = 0; i < 30; i++)
                    sketch.Add(site == "b" && minute >= 1 ? 2.5 : i % 3 + 0.5);
                var steady = new FeatureSketch([0, 1, 2, 3]);
                for (var i = 0; i < 30; i++)
                    steady.Add(i % 3 + 0.5);
                await _store.UpsertSketchesAsync([new StoredSketch(id, new SketchWindow
                {
                    Model = "m", Version = "1", From = T0.AddMinutes(minute), Seconds = 60, Features = [sketch.ToData("rms"), steady.ToData("peak")],
                })], default);
            }
            _time.Now = T0.AddMinutes(minute + 1).AddSeconds(5);
            await monitor.CheckAsync(default);
            await scheduler.CheckAsync(default);
            var jobs = await _store.ListRetrainingJobsAsync("m", 10, default);
            var alerts = await _store.ListDriftAlertsAsync(false, 10, default);
            Assert.True((minute >= 2 ? 1 : 0) == jobs.Count, $"minute {minute}: {jobs.Count} jobs; alerts {JsonSerializer.Serialize(alerts.Select(a => $"{a.Feature}/{a.Segment}/{a.Windows}"))}"); // the second drifting window opens the alert and queues the job, once
        }
        var job = Assert.Single(await _store.ListRetrainingJobsAsync("m", 10, default));
        Assert.Equal(("drift", 1L), (job.Trigger, job.BaseVersion));
        Assert.Equal(["b"], job.Snapshot.Segments);
        Assert.Equal(["rms"], job.Snapshot.Features);
        Assert.All(job.Snapshot.Alerts, a => Assert.Equal("b", a.Segment));
        Assert.Equal(5, job.Snapshot.HardExampleIds.Count);
        // The webhook does not answer: the job stays queued (tried again each check) until its deadline.
        Assert.Equal(RetrainingJobStates.Queued, job.State);

        // Cancelled, the job does not come back for the same drift, even without a cooldown.
        Assert.NotNull((await RetrainingApi.CancelAsync(job.Id, "key:ops", _store, executors, _time, default)).Job);
        await scheduler.CheckAsync(default);
        Assert.Single(await _store.ListRetrainingJobsAsync("m", 10, default));
    }

    [Fact]
    public async Task A_command_executor_runs_without_a_shell_and_its_output_becomes_a_validated_version_and_a_draft_rollout()
    {
        var prepared = WriteOutput(Path.Combine(_dir, "prepared"));
        var script = Script("ok.sh", $"""
            #!/bin/sh
            test -f "$EDGEFLEET_JOB_FILE" || exit 9
            case "$EDGEFLEET_JOB_TOKEN" in efj_*) ;; *) exit 8 ;; esac
            echo "training with $1"
            cp -r '{prepared}'/. "$EDGEFLEET_JOB_OUTPUT"/
            """);
        var options = Options(new() { ["demo"] = new() { Command = script, Arguments = ["arg with spaces; rm -rf /"] } });
        await _store.PutRetrainingPolicyAsync(new RetrainingPolicy { ModelId = "m", Executor = "demo", Target = new RolloutTarget { Selector = "site=b" }, UpdatedAt = T0 }, default);
        var (scheduler, executors) = Scheduler(options);
        using var running = executors;
        var (job, error) = await scheduler.QueueAsync((await _store.ListRetrainingPoliciesAsync(default))[0], new TriggerDecision("manual", "new sensors at site b", [], null), "key:ops", default);
        Assert.Null(error);
        Assert.Equal("m already has an open retraining job", (await scheduler.QueueAsync((await _store.ListRetrainingPoliciesAsync(default))[0], new TriggerDecision("manual", "again", [], null), "key:ops", default)).Error);
        await scheduler.CheckAsync(default);
        var done = await WaitAsync(job!.Id, j => !j.Open);
        Assert.True(done.State == RetrainingJobStates.Succeeded, JsonSerializer.Serialize(done.Events.Select(e => e.Message)));
        Assert.Equal((2L, "accepted"), (done.OutputVersion, done.Verdict));
        Assert.Contains("training with arg with spaces; rm -rf /", File.ReadAllText(Path.Combine(options.Retraining.WorkPath, job.Id, "log.txt")), StringComparison.Ordinal);

        var version = (await _store.GetModelVersionAsync("m", 2, default))!;
        Assert.Equal(ApprovalStates.Validated, version.State);
        Assert.Equal([ModelArtifact.Fp32Kind, ModelArtifact.Int8Kind], version.Artifacts.Select(a => a.Kind));
        Assert.Equal($"retraining:{job.Id}", version.CreatedBy);
        Assert.Equal("o", version.Card.Owner); // no card.json: the base version's card is kept
        var rollout = (await _store.GetRolloutAsync(done.RolloutId!, default))!;
        Assert.Equal((RolloutStates.Draft, 2L, "site=b"), (rollout.State, rollout.Version, rollout.Target.Selector));
        Assert.Contains(await _store.GetAuditAsync(rollout.Id, 10, default), a => a.Action == "rollout.draft");

        // A job's output is processed once.
        Assert.Null(await Pipeline(options).ProcessAsync(job.Id, prepared, default));
    }

    [Fact]
    public async Task Failures_are_the_job_s_with_their_reason_exit_status_bad_output_rejection_and_timeout()
    {
        var failing = Script("fail.sh", "#!/bin/sh\necho 'loading data'\necho 'no GPU here' >&2\nexit 3\n");
        var sleeping = Script("sleep.sh", "#!/bin/sh\nexec sleep 60\n");
        var empty = Script("empty.sh", "#!/bin/sh\nexit 0\n");
        var options = Options(new() { ["fail"] = new() { Command = failing }, ["sleep"] = new() { Command = sleeping }, ["empty"] = new() { Command = empty }, ["missing"] = new() { Command = Path.Combine(_dir, "nope") } });
        var (scheduler, executors) = Scheduler(options);
        using var running = executors;

        async Task<RetrainingJob> RunAsync(string executor)
        {
            var policy = new RetrainingPolicy { ModelId = "m", Executor = executor, TimeoutMinutes = 5, UpdatedAt = T0 };
            var (job, error) = await scheduler.QueueAsync(policy, new TriggerDecision("manual", executor, [], null), "key:ops", default);
            Assert.True(job is not null, error);
            await scheduler.CheckAsync(default);
            return job!;
        }

        var failed = await WaitAsync((await RunAsync("fail")).Id, j => !j.Open);
        Assert.Equal(RetrainingJobStates.Failed, failed.State);
        Assert.Contains("status 3", failed.Error, StringComparison.Ordinal);
        Assert.Contains("no GPU here", failed.Error, StringComparison.Ordinal);

        var nothing = await WaitAsync((await RunAsync("empty")).Id, j => !j.Open);
        Assert.Contains("no model.onnx", nothing.Error, StringComparison.Ordinal);

        var missing = await WaitAsync((await RunAsync("missing")).Id, j => !j.Open);
        Assert.Contains("did not start", missing.Error, StringComparison.Ordinal);

        var slow = await RunAsync("sleep");
        Assert.Equal(RetrainingJobStates.Running, (await WaitAsync(slow.Id, j => j.State == RetrainingJobStates.Running)).State);
        _time.Now += TimeSpan.FromMinutes(6);
        await scheduler.CheckAsync(default);
        var timedOut = (await _store.GetRetrainingJobAsync(slow.Id, default))!;
        Assert.Equal(RetrainingJobStates.Failed, timedOut.State);
        Assert.StartsWith("timed out", timedOut.Error, StringComparison.Ordinal);

        // Output the gate rejects: registered as a rejected version, and the job fails saying which check failed.
        var strict = WriteOutput(Path.Combine(_dir, "strict"));
        File.WriteAllText(Path.Combine(strict, "card.json"), """{"owner": "o", "intendedUse": "u", "labels": ["normal", "imbalance", "bearing-wear"], "thresholds": {"maxLatencyRatio": 100, "maxSizeRatio": 0.01}}""");
        var garbage = Path.Combine(_dir, "garbage");
        Directory.CreateDirectory(garbage);
        File.WriteAllText(Path.Combine(garbage, "model.onnx"), "not a model");
        Directory.CreateDirectory(Path.Combine(garbage, "data"));
        File.Copy(Directory.GetFiles(Path.Combine(strict, "data"), "*.npy")[0], Path.Combine(garbage, "data", "0.npy"));
        foreach (var (output, expected) in new[] { (strict, "the validation gate rejected it: sizeRatio"), (garbage, "the output could not be used") })
        {
            var policy = new RetrainingPolicy { ModelId = "m", Executor = "empty", UpdatedAt = T0 };
            var (job, _) = await scheduler.QueueAsync(policy, new TriggerDecision("manual", "x", [], null), "key:ops", default);
            var result = (await Pipeline(options).ProcessAsync(job!.Id, output, default))!;
            Assert.Equal(RetrainingJobStates.Failed, result.State);
            Assert.Contains(expected, result.Error, StringComparison.Ordinal);
        }
        Assert.Equal(ApprovalStates.Rejected, (await _store.GetModelVersionAsync("m", 2, default))!.State);
        Assert.Empty(await _store.ListRolloutsAsync(default));
    }

    [Fact]
    public async Task A_webhook_executor_gets_the_job_signed_with_its_token_and_links()
    {
        File.WriteAllText(Path.Combine(_dir, "secret"), "hook secret\n");
        var port = FreePort();
        using var listener = new HttpListener();
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        var options = Options(new() { ["hook"] = new() { Url = $"http://127.0.0.1:{port}/train", SecretFile = Path.Combine(_dir, "secret") } }, "https://fleet.example:5443");
        var (scheduler, executors) = Scheduler(options);
        using var running = executors;
        var (job, _) = await scheduler.QueueAsync(new RetrainingPolicy { ModelId = "m", Executor = "hook", UpdatedAt = T0 }, new TriggerDecision("manual", "x", [], null), "key:ops", default);
        var check = scheduler.CheckAsync(default);
        var context = await listener.GetContextAsync();
        using var reader = new StreamReader(context.Request.InputStream);
        var body = await reader.ReadToEndAsync();
        context.Response.StatusCode = 202;
        context.Response.Close();
        await check;

        Assert.Equal("sha256=" + Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData("hook secret"u8, Encoding.UTF8.GetBytes(body))), context.Request.Headers["X-EdgeFleet-Signature"]);
        var json = JsonDocument.Parse(body).RootElement;
        var token = json.GetProperty("token").GetString()!;
        Assert.True(JobTokens.TryParse(token, out var id, out var secret));
        Assert.Equal(job!.Id, id);
        var stored = (await _store.GetRetrainingJobAsync(job.Id, default))!;
        Assert.True(Identity.Secrets.HashEquals(secret, stored.TokenHash)); // only the hash is kept
        Assert.DoesNotContain(stored.TokenHash, body, StringComparison.Ordinal);
        Assert.Equal(RetrainingJobStates.Running, stored.State);
        Assert.Equal($"https://fleet.example:5443/api/retraining/jobs/{job.Id}/output", json.GetProperty("links").GetProperty("output").GetString());
        Assert.False(JobTokens.TryParse("efk_abc", out _, out _));
        Assert.False(JobTokens.TryParse("efj_job.", out _, out _));
    }

    /// <summary>What an executor leaves: a small demo model, held-out samples with labels.</summary>
    private static string WriteOutput(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "data"));
        File.WriteAllBytes(Path.Combine(dir, "model.onnx"), DemoModelTrainer.Train(seed: 7, perClass: 60, epochs: 10).OnnxBytes);
        var data = DemoDataset.Generate(10, 3);
        for (var i = 0; i < data.Count; i++)
            Npy.Write(Path.Combine(dir, "data", $"{i:D3}.npy"), data.Features[i], 1, VibrationFeatures.Count);
        File.WriteAllLines(Path.Combine(dir, "data", "labels.txt"), data.Labels.Select(l => l.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        return dir;
    }

    private string Script(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text.Replace("\r", "", StringComparison.Ordinal));
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private async Task<RetrainingJob> WaitAsync(string id, Func<RetrainingJob, bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var job = (await _store.GetRetrainingJobAsync(id, default))!;
            if (condition(job) || DateTime.UtcNow > deadline)
                return job;
            await Task.Delay(50);
        }
    }

    private static int FreePort()
    {
        using var socket = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        _store.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
