using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inputs;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Demo;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// Classifies every window the input source produces on whatever model <see cref="ModelHost"/> serves at
/// that moment, and appends each result with its latency to the telemetry buffer. Which model that is, and
/// swapping it, belongs to the OTA service.
/// </summary>
public sealed partial class InferenceService(
    AgentConfig config, AgentRuntime runtime, ModelHost host, TelemetryBuffer buffer, InferenceMetrics metrics, DriftWindows drift, ILogger<InferenceService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (config.Model is null && !File.Exists(config.Ota.RootPath))
        {
            Log.NoModel(log);
            return;
        }
        if (config.Input.Kind == InputKind.None)
        {
            Log.NoInput(log);
            await FlushDriftAsync(stoppingToken).ConfigureAwait(false);
            return;
        }
        using var source = CreateSource();
        var features = new float[VibrationFeatures.Count];
        var latency = new LatencyWindows(TimeSpan.FromSeconds(config.Telemetry.LatencyWindowSeconds));
        var shadows = new ShadowWindows(latency.Length);
        var hardExamples = new HardExampleSampler(config.Telemetry.HardExampleBytesPerHour, runtime.Time);
        long[] featureShape = [1, VibrationFeatures.Count];
        while (await source.NextWindowAsync(stoppingToken).ConfigureAwait(false) is { } window)
        {
            await FlushLatencyAsync(latency, shadows, drift, force: false, stoppingToken).ConfigureAwait(false);
            VibrationFeatures.Compute(window.Span, features);
            var started = Stopwatch.GetTimestamp();
            Classification? result;
            try
            {
                result = host.Classify(features);
            }
            catch (InferenceException e)
            {
                Log.RunFailed(log, e.Code, e.Message);
                if (host.Current?.Model is { } failing)
                {
                    latency.RecordError(failing, runtime.Time.GetUtcNow());
                    metrics.Failed(failing, InferenceSource.Sensor, e.Code);
                }
                continue;
            }
            foreach (var change in host.TakeEvents())
                await ReportAsync(change, stoppingToken).ConfigureAwait(false);
            if (result is not { } r)
                continue; // no model loaded (yet): the OTA service keeps trying
            var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            latency.Record(r.Model, micros, runtime.Time.GetUtcNow());
            metrics.Served(r.Model, InferenceSource.Sensor, micros, r.FellBack);
            await AppendAsync(new TelemetryRecord
            {
                Ts = runtime.Time.GetUtcNow(),
                Kind = TelemetryKind.Inference,
                Inference = new InferenceSample
                {
                    Model = r.Model.Name,
                    Version = r.Model.Version,
                    Label = r.Label,
                    Confidence = r.Confidence,
                    LatencyMicros = micros,
                },
            }, stoppingToken).ConfigureAwait(false);
            drift.Record(r, features, runtime.Time.GetUtcNow());
            if (!r.FellBack)
                RunShadow(features, r, micros, shadows);
            var threshold = r.HardExampleBelow ?? (float)config.Telemetry.HardExampleBelow;
            if (hardExamples.Offer(r.Model, r.Label, r.Confidence, threshold, features, featureShape) is { } hard)
                await AppendAsync(hard, stoppingToken).ConfigureAwait(false);
        }
        await FlushLatencyAsync(latency, shadows, drift, force: true, CancellationToken.None).ConfigureAwait(false);
        Log.InputEnded(log);
    }

    /// <summary>
    /// The shadow model, if one runs, on the same features after the served answer was taken (it adds to the
    /// loop's time, never to the answer's latency); compared, never served. A failing shadow is counted, not raised.
    /// </summary>
    private void RunShadow(float[] features, Classification served, long servedMicros, ShadowWindows shadows)
    {
        if (host.Shadow is not { } shadow)
            return;
        try
        {
            if (host.ClassifyShadow(features) is { } s)
                shadows.Record(served, servedMicros, s.Result, (long)s.Elapsed.TotalMicroseconds, runtime.Time.GetUtcNow());
        }
        catch (InferenceException e)
        {
            Log.ShadowFailed(log, shadow.Model.Name, shadow.Model.Version, e.Code, e.Message);
            shadows.RecordError(shadow.Model, served.Model, runtime.Time.GetUtcNow());
        }
    }

    /// <summary>Without a sensor input only the local API answers: its drift sketches are sent as their windows end.</summary>
    private async Task FlushDriftAsync(CancellationToken ct)
    {
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), runtime.Time, ct).ConfigureAwait(false);
                foreach (var window in drift.Close(runtime.Time.GetUtcNow()))
                    await AppendAsync(new TelemetryRecord { Ts = runtime.Time.GetUtcNow(), Kind = TelemetryKind.Sketch, Sketch = window }, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            foreach (var window in drift.Close(runtime.Time.GetUtcNow(), force: true))
                await AppendAsync(new TelemetryRecord { Ts = runtime.Time.GetUtcNow(), Kind = TelemetryKind.Sketch, Sketch = window }, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Appends each model version's latency record, each shadow comparison and each drift sketch when its window has ended.</summary>
    private async Task FlushLatencyAsync(LatencyWindows latency, ShadowWindows shadows, DriftWindows drift, bool force, CancellationToken ct)
    {
        var now = runtime.Time.GetUtcNow();
        foreach (var window in drift.Close(now, force))
            await AppendAsync(new TelemetryRecord { Ts = now, Kind = TelemetryKind.Sketch, Sketch = window }, ct).ConfigureAwait(false);
        foreach (var window in latency.Close(now, force))
            await AppendAsync(new TelemetryRecord { Ts = now, Kind = TelemetryKind.Latency, Latency = window }, ct).ConfigureAwait(false);
        foreach (var window in shadows.Close(now, force))
            await AppendAsync(new TelemetryRecord { Ts = now, Kind = TelemetryKind.Shadow, Shadow = window }, ct).ConfigureAwait(false);
    }

    /// <summary>A failover is an alarm the fleet must see; a recovery an event.</summary>
    private Task ReportAsync(FallbackEvent change, CancellationToken ct)
    {
        var message = change.State == BreakerState.Open
            ? $"model {change.Active.Name} v{change.Active.Version} failing ({change.Reason}); serving v{change.Fallback?.Version} until it recovers"
            : $"model {change.Active.Name} v{change.Active.Version} recovered ({change.Reason}); serving it again";
        if (change.State == BreakerState.Open)
            Log.FailedOver(log, message);
        else
            Log.Recovered(log, message);
        return AppendAsync(new TelemetryRecord
        {
            Ts = runtime.Time.GetUtcNow(),
            Kind = change.State == BreakerState.Open ? TelemetryKind.Alarm : TelemetryKind.Event,
            Message = message.Length > 1024 ? message[..1024] : message,
        }, ct);
    }

    /// <summary>
    /// Posts the record: the loop goes on to the next window while the record waits for its commit (within
    /// the commit window, or at once for an alarm, which takes the waiting records with it).
    /// </summary>
    private async Task AppendAsync(TelemetryRecord record, CancellationToken ct)
    {
        try
        {
            await buffer.PostAsync(record, cancellationToken: ct).ConfigureAwait(false);
        }
        catch (TelemetryBufferException)
        {
            // Refused (disk full): the buffer logs the refusal once and reports the count when it recovers.
        }
    }

    private IInputSource CreateSource() => config.Input.Kind switch
    {
        InputKind.JsonLines => new JsonLinesSource(config.Input.Path!, reason => Log.BadInput(log, reason)),
        _ => new DemoVibrationSource(MachineConditions.TryParse(config.Input.Condition, out var c) ? c : MachineCondition.Normal, config.Input.RateHz, config.Input.Seed,
            config.Input.DriftAfterSeconds is { } after ? (TimeSpan.FromSeconds(after), config.Input.DriftGain) : null),
    };

    /// <summary>Class labels from the model's metadata (<c>edgefleet.labels</c>), else class-0, class-1, ...</summary>
    internal static IReadOnlyList<string> LabelsOf(ModelSession session)
    {
        if (session.Metadata.TryGetValue("edgefleet.labels", out var text) && !string.IsNullOrWhiteSpace(text))
            return text.Split(',', StringSplitOptions.TrimEntries);
        var classes = session.Outputs.Count == 1 && session.Outputs[0].Dims is [_, > 0 and var n] ? (int)n : 0;
        return Enumerable.Range(0, classes).Select(i => $"class-{i}").ToArray();
    }

    private static partial class Log
    {
        [LoggerMessage(2001, LogLevel.Warning, "No model configured and no OTA root pinned; the agent reports and syncs but runs no inference")]
        public static partial void NoModel(ILogger logger);

        [LoggerMessage(2009, LogLevel.Information, "No sensor input configured (input.kind none): the model serves the local API only")]
        public static partial void NoInput(ILogger logger);

        [LoggerMessage(2004, LogLevel.Warning, "Inference failed: {Code}: {Reason}")]
        public static partial void RunFailed(ILogger logger, InferenceError code, string reason);

        [LoggerMessage(2005, LogLevel.Warning, "Skipped bad input: {Reason}")]
        public static partial void BadInput(ILogger logger, string reason);

        [LoggerMessage(2007, LogLevel.Warning, "Failover: {Message}")]
        public static partial void FailedOver(ILogger logger, string message);

        [LoggerMessage(2008, LogLevel.Information, "Recovered: {Message}")]
        public static partial void Recovered(ILogger logger, string message);

        [LoggerMessage(2010, LogLevel.Debug, "Shadow model {Model} v{Version} failed: {Code}: {Reason}")]
        public static partial void ShadowFailed(ILogger logger, string model, string version, InferenceError code, string reason);

        [LoggerMessage(2006, LogLevel.Information, "The input source ended; inference stops")]
        public static partial void InputEnded(ILogger logger);
    }
}
