using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inputs;
using EdgeFleet.Agent.Sync;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Demo;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Inference;

/// <summary>
/// Loads the configured model, classifies every window the input source produces, and appends each result
/// with its latency to the telemetry buffer. A model that cannot be loaded leaves the agent running (so
/// that it can still report and be updated), and is retried.
/// </summary>
public sealed partial class InferenceService(
    AgentConfig config, AgentRuntime runtime, TelemetryBuffer buffer, SyncService sync, ILogger<InferenceService> log) : BackgroundService
{
    private static readonly TimeSpan RetryLoad = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (config.Model is not { } model)
        {
            Log.NoModel(log);
            return;
        }
        while (!stoppingToken.IsCancellationRequested)
        {
            ModelSession session;
            Classifier classifier;
            try
            {
                session = ModelSession.Load(model.Path, model.IntraOpThreads);
                classifier = new Classifier(session, LabelsOf(session));
            }
            catch (InferenceException e)
            {
                Log.LoadFailed(log, model.Name, model.Version, e.Code, e.Message);
                buffer.Append(runtime.Time.GetUtcNow(), TelemetryKind.Event, message: $"model {model.Name} {model.Version}: {e.Code}: {e.Message}");
                await Task.Delay(RetryLoad, stoppingToken).ConfigureAwait(false);
                continue;
            }
            using (session)
            using (classifier)
            {
                runtime.ActiveModel = new ModelRef { Name = model.Name, Version = model.Version, Sha256 = await Sha256Async(model.Path, stoppingToken).ConfigureAwait(false) };
                Log.Loaded(log, model.Name, model.Version, model.Path);
                await ServeAsync(model, classifier, stoppingToken).ConfigureAwait(false);
                return;
            }
        }
    }

    private async Task ServeAsync(ModelConfig model, Classifier classifier, CancellationToken ct)
    {
        using var source = CreateSource();
        var features = new float[VibrationFeatures.Count];
        while (await source.NextWindowAsync(ct).ConfigureAwait(false) is { } window)
        {
            VibrationFeatures.Compute(window.Span, features);
            var started = Stopwatch.GetTimestamp();
            int index;
            float confidence;
            try
            {
                (index, confidence) = classifier.Classify(features);
            }
            catch (InferenceException e)
            {
                Log.RunFailed(log, e.Code, e.Message);
                continue;
            }
            var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            buffer.Append(runtime.Time.GetUtcNow(), TelemetryKind.Inference, inference: new InferenceSample
            {
                Model = model.Name,
                Version = model.Version,
                Label = classifier.Labels[index],
                Confidence = confidence,
                LatencyMicros = micros,
            });
            sync.Wake();
        }
        Log.InputEnded(log);
    }

    private IInputSource CreateSource() => config.Input.Kind switch
    {
        InputKind.JsonLines => new JsonLinesSource(config.Input.Path!, reason => Log.BadInput(log, reason)),
        _ => new DemoVibrationSource(MachineConditions.TryParse(config.Input.Condition, out var c) ? c : MachineCondition.Normal, config.Input.RateHz, config.Input.Seed),
    };

    /// <summary>Class labels from the model's metadata (<c>edgefleet.labels</c>), else class-0, class-1, ...</summary>
    internal static IReadOnlyList<string> LabelsOf(ModelSession session)
    {
        if (session.Metadata.TryGetValue("edgefleet.labels", out var text) && !string.IsNullOrWhiteSpace(text))
            return text.Split(',', StringSplitOptions.TrimEntries);
        var classes = session.Outputs.Count == 1 && session.Outputs[0].Dims is [_, > 0 and var n] ? (int)n : 0;
        return Enumerable.Range(0, classes).Select(i => $"class-{i}").ToArray();
    }

    private static async Task<string> Sha256Async(string path, CancellationToken ct)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(stream, ct).ConfigureAwait(false));
    }

    private static partial class Log
    {
        [LoggerMessage(2001, LogLevel.Warning, "No model configured; the agent reports and syncs but runs no inference")]
        public static partial void NoModel(ILogger logger);

        [LoggerMessage(2002, LogLevel.Error, "Model {Name} {Version} could not be loaded: {Code}: {Reason}")]
        public static partial void LoadFailed(ILogger logger, string name, string version, InferenceError code, string reason);

        [LoggerMessage(2003, LogLevel.Information, "Serving model {Name} {Version} from {Path}")]
        public static partial void Loaded(ILogger logger, string name, string version, string path);

        [LoggerMessage(2004, LogLevel.Warning, "Inference failed: {Code}: {Reason}")]
        public static partial void RunFailed(ILogger logger, InferenceError code, string reason);

        [LoggerMessage(2005, LogLevel.Warning, "Skipped bad input: {Reason}")]
        public static partial void BadInput(ILogger logger, string reason);

        [LoggerMessage(2006, LogLevel.Information, "The input source ended; inference stops")]
        public static partial void InputEnded(ILogger logger);
    }
}
