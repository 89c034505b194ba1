using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using EdgeFleet.Fleet.Drift;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Retraining;

/// <summary>A job's bearer token, <c>efj_{jobId}.{secret}</c>: the fleet keeps only the secret's hash.</summary>
public static class JobTokens
{
    public const string Prefix = "efj_";

    public static (string Token, string Hash) New(string jobId)
    {
        var secret = System.Buffers.Text.Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(24));
        return ($"{Prefix}{jobId}.{secret}", Identity.Secrets.Hash(secret));
    }

    public static bool TryParse(string token, out string jobId, out string secret)
    {
        jobId = secret = "";
        if (!token.StartsWith(Prefix, StringComparison.Ordinal) || token.Length > 256)
            return false;
        var dot = token.LastIndexOf('.');
        if (dot <= Prefix.Length || dot == token.Length - 1)
            return false;
        jobId = token[Prefix.Length..dot];
        secret = token[(dot + 1)..];
        return EdgeFleet.Shared.Wire.DeviceId.IsValid(jobId);
    }
}

/// <summary>
/// The leader's retraining loop, every <c>Fleet:Retraining:CheckSeconds</c>: queues a job for each model whose
/// policy is due (<see cref="RetrainingTriggers"/>; one open job per model, kept by the store), hands queued jobs
/// to their executors, and fails jobs that outlive their time limit. Operators queue jobs by hand through
/// <see cref="QueueAsync"/>.
/// </summary>
public sealed partial class RetrainingScheduler(IFleetStore store, FleetOptions options, Scale.LeaderElection leader, RetrainingExecutors executors, TimeProvider time,
    ILogger<RetrainingScheduler> log) : Scale.LeaderLoop
{
    public const string System = "retraining-scheduler";

    public IFleetStore Store => store;

    protected override Scale.LeaderElection Leader => leader;

    protected override TimeProvider Clock => time;

    protected override TimeSpan Period => TimeSpan.FromSeconds(options.Retraining.CheckSeconds);

    protected override Task RunOnceAsync(CancellationToken ct) => CheckAsync(ct);

    protected override void OnFailed(string reason) => Log.CheckFailed(log, reason);

    /// <summary>One pass: due policies queue jobs, queued jobs start, overdue jobs fail.</summary>
    public async Task CheckAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var active = await store.ListDriftAlertsAsync(activeOnly: true, int.MaxValue, ct).ConfigureAwait(false);
        foreach (var policy in await store.ListRetrainingPoliciesAsync(ct).ConfigureAwait(false))
        {
            if (!policy.Enabled)
                continue;
            var jobs = await store.ListRetrainingJobsAsync(policy.ModelId, 100, ct).ConfigureAwait(false);
            if (jobs.Any(j => j.Open))
                continue;
            var taken = jobs.SelectMany(j => j.Snapshot.Alerts.Select(a => a.Id)).ToHashSet(StringComparer.Ordinal);
            var confidence = policy.Confidence is { } c ? await ReadConfidenceAsync(policy.ModelId, c.Windows, ct).ConfigureAwait(false) : null;
            if (RetrainingTriggers.Evaluate(policy, now, jobs.Count > 0 ? jobs[0] : null, active, taken, confidence) is { } due)
            {
                var (job, error) = await QueueAsync(policy, due, System, ct).ConfigureAwait(false);
                if (job is null)
                    Log.NotQueued(log, policy.ModelId, error ?? "?");
            }
        }
        foreach (var job in await store.ListRetrainingJobsAsync(null, 1000, ct).ConfigureAwait(false))
        {
            if (!job.Open)
                continue;
            if (now >= job.Deadline)
            {
                executors.Stop(job.Id);
                var reason = string.Create(CultureInfo.InvariantCulture, $"timed out: not finished {(job.Deadline - job.CreatedAt).TotalMinutes:G4} min after it was queued");
                if (await store.UpdateRetrainingJobAsync(job.Id, j => j.Open ? j.Moved(RetrainingJobStates.Failed, now, reason) with { Error = reason } : null, ct).ConfigureAwait(false) is not null)
                    await AuditAsync(System, "retraining.job.timeout", job.Id, reason, ct).ConfigureAwait(false);
            }
            else if (job.State == RetrainingJobStates.Queued)
            {
                await executors.StartAsync(job, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Queues a job for <paramref name="policy"/>'s model now, with its snapshot: the drift window, the alerts and
    /// segments behind it, and the newest hard examples. Null and why when the model has no approved version or
    /// already an open job.
    /// </summary>
    public async Task<(RetrainingJob? Job, string? Error)> QueueAsync(RetrainingPolicy policy, TriggerDecision why, string by, CancellationToken ct)
    {
        if (!options.Retraining.Executors.ContainsKey(policy.Executor))
            return (null, $"the policy's executor '{policy.Executor}' is not one of the fleet's (Fleet:Retraining:Executors)");
        var versions = await store.ListModelVersionsAsync(policy.ModelId, ct).ConfigureAwait(false);
        if (versions.FirstOrDefault(v => v.State == ApprovalStates.Approved) is not { } baseVersion)
            return (null, $"{policy.ModelId} has no approved version to retrain");
        var now = time.GetUtcNow();
        var from = now - TimeSpan.FromSeconds(options.Drift.WindowSeconds * options.Drift.LookbackWindows);
        var examples = policy.MaxExamples == 0 ? [] : await store.ListHardExamplesAsync(policy.ModelId, from, now + TimeSpan.FromMinutes(5), null, policy.MaxExamples, ct).ConfigureAwait(false);
        var job = new RetrainingJob
        {
            Id = $"job-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(5))}",
            ModelId = policy.ModelId,
            BaseVersion = baseVersion.Version,
            State = RetrainingJobStates.Queued,
            Trigger = why.Trigger,
            Reason = why.Reason,
            Executor = policy.Executor,
            CreatedAt = now,
            CreatedBy = by,
            Deadline = now + TimeSpan.FromMinutes(policy.TimeoutMinutes),
            TokenHash = "",
            Snapshot = new JobSnapshot
            {
                From = from,
                To = now,
                Alerts = [.. why.Alerts],
                Segments = [.. why.Alerts.Select(a => a.Segment).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)],
                Features = [.. why.Alerts.Select(a => a.Feature).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)],
                HardExampleIds = [.. examples.Select(e => e.Id)],
                MeanConfidence = why.Confidence?.Mean,
                BaselineConfidence = why.Confidence?.Baseline,
            },
            Events = [new JobEvent(now, RetrainingJobStates.Queued, $"{why.Trigger}: {why.Reason}; {examples.Count} hard examples ({examples.Count(e => e.Label is not null)} labelled)")],
        };
        if (!await store.CreateRetrainingJobAsync(job, ct).ConfigureAwait(false))
            return (null, $"{policy.ModelId} already has an open retraining job");
        Log.Queued(log, job.Id, job.ModelId, why.Trigger, why.Reason);
        await AuditAsync(by, "retraining.job.queue", job.Id, $"{job.ModelId} v{job.BaseVersion}: {why.Trigger}: {why.Reason}", ct).ConfigureAwait(false);
        return (job, null);
    }

    /// <summary>The fleet's mean top-class confidence for the model's newest approved version over its last <paramref name="windows"/> drift windows.</summary>
    public async Task<ConfidenceReading?> ReadConfidenceAsync(string modelId, int windows, CancellationToken ct)
    {
        var version = (await store.ListModelVersionsAsync(modelId, ct).ConfigureAwait(false)).FirstOrDefault(v => v.State == ApprovalStates.Approved);
        var baseline = version?.Card.FeatureBaselines.FirstOrDefault(b => b.EffectiveSource == "confidence");
        if (version is null || baseline is null)
            return null;
        var expected = version.Card.Metrics.TryGetValue("meanConfidence", out var m) ? m : MeanOf(baseline);
        var now = time.GetUtcNow();
        var drift = options.Drift;
        var (report, _) = await DriftReport.BuildAsync(store, modelId, version.Version.ToString(CultureInfo.InvariantCulture),
            now - TimeSpan.FromSeconds(drift.WindowSeconds * drift.LookbackWindows), now, null, drift.AlertWindows, ct).ConfigureAwait(false);
        var cells = report?.Windows.SelectMany(w => w.Cells.Where(c => c.Feature == baseline.Name && c.Segment == "*" && c.Level is "ok" or "warn" or "alert").Select(c => (w.From, c)))
            .OrderBy(x => x.From).TakeLast(windows).Select(x => x.c).ToList();
        if (cells is null || cells.Count < windows)
            return null;
        var count = cells.Sum(c => c.Count);
        return new ConfidenceReading(cells.Sum(c => c.Mean * c.Count) / count, expected, count);
    }

    /// <summary>A histogram's mean from its bin midpoints (the outer bins' open ends are taken at their edges).</summary>
    public static double MeanOf(Models.FeatureBaseline baseline)
    {
        var total = baseline.Counts.Sum();
        if (total == 0)
            return 0;
        double sum = 0;
        for (var i = 0; i < baseline.Counts.Length; i++)
            sum += baseline.Counts[i] * (baseline.Edges[i] + baseline.Edges[i + 1]) / 2;
        return sum / total;
    }

    private Task AuditAsync(string by, string action, string target, string what, CancellationToken ct) =>
        store.AppendAuditAsync(new Identity.AuditEntry { At = time.GetUtcNow(), Actor = by, Action = action, Target = target, After = JsonSerializer.Serialize(what, FleetApiJsonContext.Default.String) }, ct);

    private static partial class Log
    {
        [LoggerMessage(9301, LogLevel.Warning, "Retraining job {Job} queued for {Model} ({Trigger}): {Reason}")]
        public static partial void Queued(ILogger logger, string job, string model, string trigger, string reason);

        [LoggerMessage(9302, LogLevel.Warning, "Retraining of {Model} is due but no job was queued: {Reason}")]
        public static partial void NotQueued(ILogger logger, string model, string reason);

        [LoggerMessage(9303, LogLevel.Warning, "Retraining check failed: {Reason}")]
        public static partial void CheckFailed(ILogger logger, string reason);
    }
}
