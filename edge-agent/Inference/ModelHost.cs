using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>A model loaded and ready to classify: the session, its steady-state classifier, and what it is.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(ModelRef model, string path, ModelSession session, Classifier classifier)
    {
        Model = model;
        Path = path;
        Session = session;
        Classifier = classifier;
        HardExampleBelow = session.Metadata.TryGetValue("edgefleet.hard_example_below", out var text)
            && float.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && v is >= 0 and <= 1 ? v : null;
    }

    public ModelRef Model { get; }

    public string Path { get; }

    public ModelSession Session { get; }

    public Classifier Classifier { get; }

    /// <summary>The model's own hard-example threshold (<c>edgefleet.hard_example_below</c> metadata), read once at load.</summary>
    public float? HardExampleBelow { get; }

    /// <summary>Loads a model file and builds its classifier; throws <see cref="InferenceException"/>.</summary>
    public static LoadedModel Load(ModelRef model, string path, int? intraOpThreads, Profiles.HardwareProfile? profile = null)
    {
        var session = ModelSession.Load(path, intraOpThreads, profile);
        try
        {
            return new LoadedModel(model, path, session, new Classifier(session, InferenceService.LabelsOf(session)));
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Classifier.Dispose();
        Session.Dispose();
    }
}

/// <summary>One classification: the model that answered (the fallback when <see cref="FellBack"/>) and its answer.</summary>
public readonly record struct Classification(ModelRef Model, string Label, float Confidence, float? HardExampleBelow, bool FellBack);

/// <summary>A breaker change worth telling the fleet: the active model failing over to the fallback, or recovering.</summary>
public sealed record FallbackEvent(ModelRef Active, ModelRef? Fallback, BreakerState State, string Reason);

/// <summary>
/// The model the agent serves now. A swap replaces it under the same lock that every classification holds,
/// so a request runs wholly on the old model or wholly on the new one. The replaced model stays loaded as the
/// fallback (<see cref="FallbackConfig"/>): when the active model throws or runs over its latency budget, the
/// request is answered by the fallback, and after enough consecutive failures a circuit breaker sends every
/// request there until a trial request succeeds again. Consecutive inference failures of the active model are
/// counted for the OTA probation either way.
/// </summary>
public sealed class ModelHost : IDisposable
{
    private static readonly FallbackEvent[] NoEvents = [];
    private readonly Lock _lock = new();
    private readonly AgentRuntime _runtime;
    private readonly FallbackConfig _config;
    private readonly CircuitBreaker _breaker;
    private readonly List<FallbackEvent> _events = [];
    private LoadedModel? _current;
    private LoadedModel? _fallback;
    private int _consecutiveFailures;

    public ModelHost(AgentRuntime runtime, FallbackConfig? config = null)
    {
        _runtime = runtime;
        _config = config ?? new FallbackConfig();
        _breaker = new CircuitBreaker(_config.FailureThreshold, TimeSpan.FromSeconds(_config.OpenSeconds), runtime.Time);
    }

    public LoadedModel? Current
    {
        get
        {
            lock (_lock)
                return _current;
        }
    }

    public ModelRef? FallbackModel
    {
        get
        {
            lock (_lock)
                return _fallback?.Model;
        }
    }

    public BreakerState Breaker
    {
        get
        {
            lock (_lock)
                return _breaker.State;
        }
    }

    public int ConsecutiveFailures => Volatile.Read(ref _consecutiveFailures);

    /// <summary>Serves <paramref name="model"/> from now on; the model it replaces becomes the fallback.</summary>
    public void Activate(LoadedModel model)
    {
        Replace(model, keepAsFallback: _config.Enabled);
        _runtime.ActiveModel = model.Model;
    }

    /// <summary>Stops serving the current model (before a rollback loads the previous one); it is not kept.</summary>
    public void Unload() => Replace(null, keepAsFallback: false);

    /// <summary>Swaps under the inference lock; what is let go is disposed after its last request finished.</summary>
    private void Replace(LoadedModel? model, bool keepAsFallback)
    {
        var retired = new List<LoadedModel>();
        lock (_lock)
        {
            var old = _current;
            _current = model;
            _consecutiveFailures = 0;
            _breaker.Reset();
            if (_fallback is { } f && model is not null && f.Model == model.Model)
            {
                retired.Add(f); // rolled back to the fallback's version: it serves as the active model now
                _fallback = null;
            }
            if (old is not null)
            {
                if (keepAsFallback && model is not null && old.Model != model.Model)
                {
                    if (_fallback is not null)
                        retired.Add(_fallback);
                    _fallback = old;
                }
                else
                {
                    retired.Add(old);
                }
            }
        }
        foreach (var m in retired)
            m.Dispose();
    }

    /// <summary>Classifies on the active model, or the fallback as described above; null when no model is loaded.</summary>
    public Classification? Classify(ReadOnlySpan<float> features)
    {
        lock (_lock)
        {
            if (_current is not { } model)
                return null;
            if (_fallback is null || _breaker.AllowRequest())
            {
                var started = _runtime.Time.GetTimestamp();
                try
                {
                    var (index, confidence) = model.Classifier.Classify(features);
                    _consecutiveFailures = 0;
                    var elapsed = _runtime.Time.GetElapsedTime(started);
                    if (_config.LatencyBudgetMs > 0 && elapsed.TotalMilliseconds > _config.LatencyBudgetMs)
                        Failed(model, $"inference took {elapsed.TotalMilliseconds:F1} ms, over the {_config.LatencyBudgetMs:F1} ms budget");
                    else if (_fallback is not null && _breaker.Success())
                        _events.Add(new FallbackEvent(model.Model, _fallback.Model, BreakerState.Closed, "the active model answered its trial request"));
                    return new Classification(model.Model, model.Classifier.Labels[index], confidence, model.HardExampleBelow, FellBack: false);
                }
                catch (InferenceException e)
                {
                    _consecutiveFailures++;
                    if (_fallback is null)
                        throw;
                    Failed(model, e.Message);
                }
            }
            var (i, c) = _fallback.Classifier.Classify(features);
            return new Classification(_fallback.Model, _fallback.Classifier.Labels[i], c, _fallback.HardExampleBelow, FellBack: true);
        }
    }

    /// <summary>Breaker changes since the last call, oldest first (an empty array when there were none).</summary>
    public IReadOnlyList<FallbackEvent> TakeEvents()
    {
        lock (_lock)
        {
            if (_events.Count == 0)
                return NoEvents;
            var events = _events.ToArray();
            _events.Clear();
            return events;
        }
    }

    private void Failed(LoadedModel model, string reason)
    {
        if (_fallback is not null && _breaker.Failure())
            _events.Add(new FallbackEvent(model.Model, _fallback.Model, BreakerState.Open, reason));
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _current?.Dispose();
            _current = null;
            _fallback?.Dispose();
            _fallback = null;
        }
    }
}
