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
    }

    public ModelRef Model { get; }

    public string Path { get; }

    public ModelSession Session { get; }

    public Classifier Classifier { get; }

    /// <summary>The model's own hard-example threshold (<c>edgefleet.hard_example_below</c> metadata), if it has one.</summary>
    public float? HardExampleBelow => Session.Metadata.TryGetValue("edgefleet.hard_example_below", out var text)
        && float.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && v is >= 0 and <= 1 ? v : null;

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

/// <summary>
/// The model the agent serves now. A swap replaces it under the same lock that every classification holds,
/// so a request runs wholly on the old model or wholly on the new one, and the old one is disposed only
/// after its last request finished. Consecutive inference failures are counted for the OTA probation.
/// </summary>
public sealed class ModelHost : IDisposable
{
    private readonly Lock _lock = new();
    private readonly AgentRuntime _runtime;
    private LoadedModel? _current;
    private int _consecutiveFailures;

    public ModelHost(AgentRuntime runtime) => _runtime = runtime;

    public LoadedModel? Current
    {
        get
        {
            lock (_lock)
                return _current;
        }
    }

    public int ConsecutiveFailures => Volatile.Read(ref _consecutiveFailures);

    public void Activate(LoadedModel model)
    {
        Replace(model);
        _runtime.ActiveModel = model.Model;
    }

    /// <summary>Stops serving the current model (before a rollback loads the previous one).</summary>
    public void Unload() => Replace(null);

    /// <summary>Swaps under the inference lock; the old model is disposed after its last request finished.</summary>
    private void Replace(LoadedModel? model)
    {
        LoadedModel? old;
        lock (_lock)
        {
            old = _current;
            _current = model;
            _consecutiveFailures = 0;
        }
        old?.Dispose();
    }

    /// <summary>Classifies on the current model; null when none is loaded.</summary>
    public (ModelRef Model, string Label, float Confidence, float? HardExampleBelow)? Classify(ReadOnlySpan<float> features)
    {
        lock (_lock)
        {
            if (_current is not { } model)
                return null;
            try
            {
                var (index, confidence) = model.Classifier.Classify(features);
                _consecutiveFailures = 0;
                return (model.Model, model.Classifier.Labels[index], confidence, model.HardExampleBelow);
            }
            catch (InferenceException)
            {
                _consecutiveFailures++;
                throw;
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _current?.Dispose();
            _current = null;
        }
    }
}
