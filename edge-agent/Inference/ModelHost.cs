using EdgeFleet.Agent.Configuration;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>A model loaded and ready to classify: the session, its steady-state classifier, and what it is.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(ModelRef model, string path, ModelSession session, Classifier? classifier, string? notClassifier)
    {
        Model = model;
        Path = path;
        Session = session;
        _classifier = classifier;
        _notClassifier = notClassifier;
        HardExampleBelow = session.Metadata.TryGetValue("edgefleet.hard_example_below", out var text)
            && float.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && v is >= 0 and <= 1 ? v : null;
    }

    public ModelRef Model { get; }

    public string Path { get; }

    public ModelSession Session { get; }

    private readonly Classifier? _classifier;
    private readonly string? _notClassifier;

    /// <summary>The sensor loop's bound classifier; a model loaded without one (API only) throws here with the reason.</summary>
    public Classifier Classifier => _classifier ?? throw new InferenceException(InferenceError.InputMismatch, _notClassifier!);

    /// <summary>The model's own hard-example threshold (<c>edgefleet.hard_example_below</c> metadata), read once at load.</summary>
    public float? HardExampleBelow { get; }

    /// <summary>What the sensor loop sketches for drift while this model answers (null: nothing).</summary>
    public EdgeFleet.Shared.Stats.DriftSpec? Drift
    {
        get;
        private init
        {
            field = value;
            SketchesOutputs = value?.Features.Any(f => EdgeFleet.Shared.Stats.DriftSource.Parse(f.Source)?.OutputIndex is not null) == true;
        }
    }

    /// <summary>The drift spec sketches class probabilities: each answer then carries them (else no copy is made).</summary>
    public bool SketchesOutputs { get; private set; }

    /// <summary>
    /// Loads a model file and builds its classifier; throws <see cref="InferenceException"/>. Without
    /// <paramref name="requireClassifier"/> (an agent with no sensor input) any model loads, for the local API.
    /// </summary>
    public static LoadedModel Load(ModelRef model, string path, int? intraOpThreads, Profiles.HardwareProfile? profile = null, bool requireClassifier = true,
        EdgeFleet.Shared.Stats.DriftSpec? drift = null)
    {
        var session = ModelSession.Load(path, intraOpThreads, profile);
        try
        {
            return new LoadedModel(model, path, session, new Classifier(session, InferenceService.LabelsOf(session)), null) { Drift = drift };
        }
        catch (InferenceException e) when (!requireClassifier && e.Code == InferenceError.InputMismatch)
        {
            return new LoadedModel(model, path, session, null, $"model {model.Name} v{model.Version} is not a classifier the sensor input can use: {e.Message}") { Drift = drift };
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Serializes the <see cref="Classifier"/>'s bound buffers (the session itself runs requests concurrently).</summary>
    internal Lock ClassifierLock { get; } = new();

    /// <summary>References: the owner's (released by <see cref="Dispose"/>) plus one per request in flight.</summary>
    private int _references = 1;

    /// <summary>Keeps the model alive for one request; only while the caller knows it is still owned.</summary>
    internal void AddReference() => Interlocked.Increment(ref _references);

    /// <summary>Ends a request's (or the owner's) reference; the last one frees the session.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            _classifier?.Dispose();
            Session.Dispose();
        }
    }

    /// <summary>Lets go of the owner's reference: the session is freed now, or when its last request ends.</summary>
    public void Dispose() => Release();
}

/// <summary>One classification: the model that answered (the fallback when <see cref="FellBack"/>) and its answer.</summary>
public readonly record struct Classification(ModelRef Model, string Label, float Confidence, float? HardExampleBelow, bool FellBack)
{
    /// <summary>The drift spec of the model that answered.</summary>
    public EdgeFleet.Shared.Stats.DriftSpec? Drift { get; init; }

    /// <summary>Every class's probability, when the drift spec sketches them (<c>output:N</c>).</summary>
    public float[]? Probabilities { get; init; }
}

/// <summary>A loaded model as the local API and the metrics describe it.</summary>
public sealed record ModelStatus(string Name, string Version, string? Sha256, string Role, string Breaker,
    IReadOnlyList<string> ExecutionProviders, IReadOnlyList<Profiles.ProviderFallback> ProviderFallbacks,
    IReadOnlyList<TensorSpec> Inputs, IReadOnlyList<TensorSpec> Outputs);

/// <summary>A request's result and the model that produced it (the fallback when <see cref="FellBack"/>).</summary>
public readonly record struct Served<T>(T Result, LoadedModel Model, bool FellBack);

/// <summary>A breaker change worth telling the fleet: the active model failing over to the fallback, or recovering.</summary>
public sealed record FallbackEvent(ModelRef Active, ModelRef? Fallback, BreakerState State, string Reason);

/// <summary>
/// The model the agent serves now, to the sensor loop and to the local API alike. A swap replaces it atomically:
/// a request that started runs wholly on the old model, which is freed when the last such request ends (each
/// request holds a reference), and every later request runs on the new one. The replaced model stays loaded as the
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
    private LoadedModel? _shadow;
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

    /// <summary>The model running in shadow, if any: it sees the sensor loop's inputs, and its results are only compared.</summary>
    public LoadedModel? Shadow
    {
        get
        {
            lock (_lock)
                return _shadow;
        }
    }

    /// <summary>Runs <paramref name="model"/> in shadow from now on (null: none); the one it replaces is freed after its last run.</summary>
    public void SetShadow(LoadedModel? model)
    {
        LoadedModel? old;
        lock (_lock)
        {
            old = _shadow;
            _shadow = model;
        }
        if (old is not null && !ReferenceEquals(old, model))
            old.Dispose();
        _runtime.ShadowModel = model?.Model;
    }

    /// <summary>
    /// Classifies on the shadow model, if one runs: its answer and how long it took, or null. Its failures are
    /// thrown to the caller (they count against the shadow, never against the served model).
    /// </summary>
    public (Classification Result, TimeSpan Elapsed)? ClassifyShadow(float[] features)
    {
        LoadedModel shadow;
        lock (_lock)
        {
            if (_shadow is null)
                return null;
            shadow = _shadow;
            shadow.AddReference();
        }
        try
        {
            var started = _runtime.Time.GetTimestamp();
            (int Index, float Confidence) result;
            lock (shadow.ClassifierLock)
                result = shadow.Classifier.Classify(features);
            var elapsed = _runtime.Time.GetElapsedTime(started);
            return (new Classification(shadow.Model, shadow.Classifier.Labels[result.Index], result.Confidence, shadow.HardExampleBelow, FellBack: false), elapsed);
        }
        finally
        {
            shadow.Release();
        }
    }

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
        // A span cannot be captured by the delegate: these features are copied into a pooled array first.
        var buffer = System.Buffers.ArrayPool<float>.Shared.Rent(features.Length);
        try
        {
            features.CopyTo(buffer);
            return Classify(buffer, features.Length);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(buffer);
        }
    }

    /// <summary>The sensor loop's way: the features' array goes to the bound classifier as it is (no copy, no allocation).</summary>
    public Classification? Classify(float[] features) => Classify(features, features.Length);

    private Classification? Classify(float[] features, int length)
    {
        var served = Serve((features, length), static (model, input) =>
        {
            lock (model.ClassifierLock)
            {
                var (index, confidence) = model.Classifier.Classify(input.features.AsSpan(0, input.length));
                return (Index: index, Confidence: confidence, Probabilities: model.SketchesOutputs ? model.Classifier.Probabilities() : null);
            }
        });
        if (served is not { } s)
            return null;
        return new Classification(s.Model.Model, s.Model.Classifier.Labels[s.Result.Index], s.Result.Confidence, s.Model.HardExampleBelow, s.FellBack)
        {
            Drift = s.Model.Drift,
            Probabilities = s.Result.Probabilities,
        };
    }

    /// <summary>
    /// Runs <paramref name="run"/> on the active model, or on the fallback when the breaker is open or the active
    /// model fails (errors or runs over the latency budget); null when no model is loaded. The model it runs on
    /// stays alive until it returns, even when a swap replaces it meanwhile: requests in flight finish on the
    /// old session, which is freed after the last of them. A request whose input does not fit the model
    /// (<see cref="InferenceError.InputMismatch"/>) is the caller's error: it is thrown, not failed over.
    /// </summary>
    public Served<T>? Serve<TState, T>(TState state, Func<LoadedModel, TState, T> run)
    {
        LoadedModel active;
        LoadedModel? fallback;
        bool tryActive;
        lock (_lock)
        {
            if (_current is null)
                return null;
            active = _current;
            fallback = _fallback;
            tryActive = fallback is null || _breaker.AllowRequest();
            active.AddReference();
            fallback?.AddReference();
        }
        try
        {
            if (tryActive)
            {
                var started = _runtime.Time.GetTimestamp();
                try
                {
                    var result = run(active, state);
                    var elapsed = _runtime.Time.GetElapsedTime(started);
                    lock (_lock)
                    {
                        if (ReferenceEquals(_current, active))
                        {
                            _consecutiveFailures = 0;
                            if (_config.LatencyBudgetMs > 0 && elapsed.TotalMilliseconds > _config.LatencyBudgetMs)
                                Failed(active, $"inference took {elapsed.TotalMilliseconds:F1} ms, over the {_config.LatencyBudgetMs:F1} ms budget");
                            else if (_fallback is not null && _breaker.Success())
                                _events.Add(new FallbackEvent(active.Model, _fallback.Model, BreakerState.Closed, "the active model answered its trial request"));
                        }
                    }
                    return new Served<T>(result, active, FellBack: false);
                }
                catch (InferenceException e) when (e.Code != InferenceError.InputMismatch)
                {
                    lock (_lock)
                    {
                        if (ReferenceEquals(_current, active))
                        {
                            _consecutiveFailures++;
                            Failed(active, e.Message);
                        }
                    }
                    if (fallback is null)
                        throw;
                }
            }
            return new Served<T>(run(fallback!, state), fallback!, FellBack: true);
        }
        finally
        {
            active.Release();
            fallback?.Release();
        }
    }

    /// <summary>The active model and the fallback, if loaded.</summary>
    public IReadOnlyList<ModelStatus> Status()
    {
        lock (_lock)
        {
            var breaker = _breaker.State switch { BreakerState.Open => "open", BreakerState.HalfOpen => "half-open", _ => "closed" };
            var list = new List<ModelStatus>(2);
            if (_current is { } c)
                list.Add(Describe(c, "active", _fallback is null ? "closed" : breaker));
            if (_fallback is { } f)
                list.Add(Describe(f, "fallback", "closed"));
            if (_shadow is { } s)
                list.Add(Describe(s, "shadow", "closed"));
            return list;
        }

        static ModelStatus Describe(LoadedModel m, string role, string breaker) => new(m.Model.Name, m.Model.Version, m.Model.Sha256, role, breaker,
            m.Session.Providers.Providers, m.Session.Providers.Fallbacks, m.Session.Inputs, m.Session.Outputs);
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

    /// <summary>Counts a failure of the active model; called under the lock.</summary>
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
            _shadow?.Dispose();
            _shadow = null;
        }
    }
}
