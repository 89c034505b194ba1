using EdgeFleet.Agent.Profiles;
using System.Net.Http.Headers;
using EdgeFleet.Agent.Identity;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Sync;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Ota;

/// <summary>
/// The update loop, a reconciliation in the manner of IoT Edge's agent: desired model (the last verified
/// <c>state/desired</c>) against the active one (the pointer file), then the steps between them, each
/// idempotent and resumable after kill -9: download (resumes), verify (hash), stage, health check, swap
/// (atomic pointer), commit. After a commit the model is on probation: a crash loop or failing inference
/// rolls it back to the last known good model. At start it picks the model to serve: the pointer's, else
/// its previous, else the configured one, so the device never serves none while any of them loads.
/// </summary>
public sealed partial class OtaService : BackgroundService
{
    private static readonly TimeSpan Tick = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan RetryFailed = TimeSpan.FromSeconds(60);
    private readonly AgentConfig _config;
    private readonly AgentRuntime _runtime;
    private readonly ModelHost _host;
    private readonly OtaStore _store;
    private readonly SyncService _sync;
    private readonly ILogger<OtaService> _log;
    private readonly ModelPointer _pointer;
    private readonly string _modelsDir;
    private readonly ArtifactDownloader _downloader;
    private readonly HttpClient _http;
    private readonly SemaphoreSlim _wake = new(0);
    private string? _settledDigest;

    /// <summary>How the served model's artifact in the current job came (reported with each of its steps).</summary>
    private OtaTransport? _jobTransport;

    /// <summary>Bytes a delta saved in the current job (reported with each of its steps).</summary>
    private long? _jobBytesSaved;

    /// <summary>Deltas (by SHA-256) refused since the agent started: not fetched again.</summary>
    private readonly HashSet<string> _refusedDeltas = new(StringComparer.Ordinal);
    private long? _failedAt;

    public OtaService(AgentConfig config, DeviceCredentials credentials, AgentRuntime runtime, ModelHost host, OtaStore store, SyncService sync, ILogger<OtaService> log)
    {
        _config = config;
        _http = FleetTrust.From(config.FleetCaFile).CreateHttpClient(TimeSpan.FromMinutes(10));
        _runtime = runtime;
        _host = host;
        _store = store;
        _sync = sync;
        _log = log;
        _modelsDir = Path.Combine(config.StateDirectory, "models");
        _pointer = new ModelPointer(Path.Combine(_modelsDir, "current.json"));
        _downloader = new ArtifactDownloader(_http, config.Ota.MaxDownloadAttempts, authorize: url => FleetAuthorization(credentials, url),
            deadlines: new DownloadDeadlines(config.Ota.DownloadStallSeconds, config.Ota.MinDownloadBytesPerSecond),
            broker: new ChunkTransfer(sync, runtime.DeviceId, config.Ota.MaxChunkBytes), mode: config.Ota.Transport);
        _downloader.BytesReceived += sync.SpendOta;
        sync.DesiredReceived += OnDesired;
    }

    /// <summary>Raised for every step reported to the fleet (tests and the local API watch it).</summary>
    public event Action<OtaStatusMessage>? StatusReported;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        CheckCrashLoop();
        LoadBootModel();
        return base.StartAsync(cancellationToken);
    }

    /// <summary>Keeps the newest desired state durably, so an update resumes after a reboot without network.</summary>
    public void OnDesired(byte[] payload)
    {
        _store.Update(r => r.Desired is { } old && old.AsSpan().SequenceEqual(payload) ? r : r with { Desired = payload });
        // A newer desired state abandons the transfer in progress (its bytes stay for a later resume).
        if (Volatile.Read(ref _inFlight) is { } inFlight && inFlight.Digest != Convert.ToHexStringLower(SHA256.HashData(payload)))
        {
            try
            {
                inFlight.Abandon.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // that reconciliation ended a moment ago: the loop picks the new state up anyway
            }
        }
        if (_wake.CurrentCount == 0)
            _wake.Release();
    }

    /// <summary>The desired state being worked on, and how to abandon its download.</summary>
    private sealed record InFlight(string Digest, CancellationTokenSource Abandon);

    private InFlight? _inFlight;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (_host.Current is null)
                    LoadBootModel();
                CheckProbation();
                await ReconcileAsync(stoppingToken).ConfigureAwait(false);
                await _wake.WaitAsync(Tick, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or LiteDB.LiteException)
            {
                Log.LoopFailed(_log, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(5), stoppingToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A verified manifest proves the time is at least its issue time: the device clock never reads earlier again.</summary>
    private void LearnFloor(VerifiedUpdate update) => (_runtime.Time as Timekeeping.DeviceClock)?.LearnFloor(update.Manifest.IssuedAt);

    private async Task ReconcileAsync(CancellationToken ct)
    {
        var record = _store.Load();
        if (record.Desired is not { } payload)
            return;
        var digest = Convert.ToHexStringLower(SHA256.HashData(payload));
        if (digest == _settledDigest || (_failedAt is { } failed && _runtime.Time.GetElapsedTime(failed) < RetryFailed))
            return;
        var desired = WireReader.Read(payload, WireJsonContext.Default.DesiredState, _runtime.DeviceId).Message!;
        using var abandon = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Volatile.Write(ref _inFlight, new InFlight(digest, abandon));
        bool retry;
        try
        {
            // Only downloads wait on the token: every step after them runs to its end once begun.
            retry = desired.Manifest is { } manifest && await ReconcileServedAsync(record, manifest, desired, abandon.Token).ConfigureAwait(false);
            // The shadow follows the served model: an update in progress first, then the model to compare with it.
            retry = retry || await ReconcileShadowAsync(desired, abandon.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (abandon.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            Log.Superseded(_log);
            return;
        }
        finally
        {
            Volatile.Write(ref _inFlight, null);
        }
        if (retry)
            _failedAt = _runtime.Time.GetTimestamp(); // transient (monotonic): the same desired state is tried again
        else
            _settledDigest = digest;
    }

    /// <summary>The served model toward the desired manifest; true when a transient failure means trying again later.</summary>
    private async Task<bool> ReconcileServedAsync(OtaRecord record, System.Text.Json.JsonElement manifestElement, DesiredState desired, CancellationToken ct)
    {
        var manifestBytes = Utf8(manifestElement);
        var identity = UpdateVerifier.PeekIdentity(manifestBytes);
        var active = _pointer.Read()?.Active;

        if (!TryReadTrustedRoot(record, out var root, out var rootFailure))
        {
            Refuse(identity, OtaState.Rejected, rootFailure);
            return false;
        }
        var verified = UpdateVerifier.Verify(root, record.KeySet, manifestBytes, Utf8(desired.KeySet), desired.Roots.Select(Utf8),
            _runtime.Time.GetUtcNow(), _runtime.HardwareProfile, id => Installed(record, id), ServedModelId());
        if (!verified.Ok)
        {
            var failure = verified.Failure!;
            var quiet = failure.Code == OtaError.VersionRollback && identity is { } id
                && ((active?.ModelId == id.ModelId && active.Version == id.Version)
                    || (record.Job is { } job && job.ModelId == id.ModelId && job.Version == id.Version && job.State is OtaState.RolledBack or OtaState.Committed));
            // The desired model is the one running, or the one already rolled back: nothing to do, nothing to report.
            Refuse(identity, OtaState.Rejected, quiet ? null : failure);
            return false;
        }
        var update = verified.Document!;
        LearnFloor(update);
        _store.Update(r => r with { Root = update.Root, KeySet = update.KeySet });
        var outcome = await ApplyAsync(update.Manifest, ct).ConfigureAwait(false);
        return outcome is { Code: OtaError.DownloadFailed or OtaError.InsufficientSpace };
    }

    /// <summary>
    /// The shadow model toward the desired state's shadow: none, or a signed model verified, downloaded and health
    /// checked as an update is, then run beside the served one (never served). True when a transient failure
    /// means trying again later.
    /// </summary>
    private async Task<bool> ReconcileShadowAsync(DesiredState desired, CancellationToken ct)
    {
        if (desired.Shadow is not { } element)
        {
            StopShadow();
            return false;
        }
        var record = _store.Load();
        var manifestBytes = Utf8(element);
        var identity = UpdateVerifier.PeekIdentity(manifestBytes);
        if (!TryReadTrustedRoot(record, out var root, out var rootFailure))
        {
            Refuse(identity, OtaState.Rejected, rootFailure, shadow: true);
            return false;
        }
        // The same checks as an update's: a shadow is a candidate for the served model, so it must be newer too.
        var verified = UpdateVerifier.Verify(root, record.KeySet, manifestBytes, Utf8(desired.KeySet), desired.Roots.Select(Utf8),
            _runtime.Time.GetUtcNow(), _runtime.HardwareProfile, id => Installed(record, id), ServedModelId());
        if (!verified.Ok)
        {
            StopShadow();
            Refuse(identity, OtaState.Rejected, verified.Failure!, shadow: true);
            return false;
        }
        var update = verified.Document!;
        LearnFloor(update);
        _store.Update(r => r with { Root = update.Root, KeySet = update.KeySet });
        var manifest = update.Manifest;
        var label = manifest.Version.ToString(CultureInfo.InvariantCulture);
        if (_host.Shadow?.Model is { } running && running.Name == manifest.ModelId && running.Version == label)
            return false;
        StopShadow();
        var artifact = manifest.Artifacts[_runtime.HardwareProfile];
        var folder = Path.Combine(_modelsDir, manifest.ModelId, label);
        Report(manifest, OtaState.Downloading, shadow: true);
        var failure = await _downloader.DownloadAsync(ResolveUrl(artifact.Url), folder, artifact, _ => { }, ct).ConfigureAwait(false);
        if (failure is not null)
        {
            var transient = failure.Code is OtaError.DownloadFailed or OtaError.InsufficientSpace;
            if (!transient)
                DeleteFolder(folder);
            Log.Refused(_log, manifest.ModelId, manifest.Version, "as a shadow: " + failure);
            Report(manifest, transient ? OtaState.Failed : OtaState.Rejected, failure: failure, shadow: true);
            return transient;
        }
        Report(manifest, OtaState.HealthCheck, shadow: true);
        var model = new InstalledModel { ModelId = manifest.ModelId, Version = manifest.Version, VersionLabel = label, Path = ArtifactDownloader.FinalPath(folder), Sha256 = artifact.Sha256, Drift = manifest.Drift };
        var (candidate, healthFailure) = LoadAndCheck(model, manifest);
        if (candidate is null)
        {
            DeleteFolder(folder);
            Log.Refused(_log, manifest.ModelId, manifest.Version, "as a shadow: " + healthFailure);
            Report(manifest, OtaState.Rejected, failure: healthFailure, shadow: true);
            return false;
        }
        _host.SetShadow(candidate);
        Report(manifest, OtaState.Shadowing, shadow: true);
        Log.ShadowStarted(_log, manifest.ModelId, manifest.Version);
        return false;
    }

    /// <summary>Stops the shadow model, if one runs, and deletes its files unless the served model or its previous uses them.</summary>
    private void StopShadow()
    {
        if (_host.Shadow is not { } shadow)
            return;
        var folder = Path.GetDirectoryName(Path.GetFullPath(shadow.Path))!;
        _host.SetShadow(null);
        Log.ShadowStopped(_log, shadow.Model.Name, shadow.Model.Version);
        var pointer = _pointer.Read();
        if (!new[] { pointer?.Active.Path, pointer?.Previous?.Path }.Any(p => p is not null && Path.GetDirectoryName(Path.GetFullPath(p)) == folder))
            DeleteFolder(folder);
    }

    /// <summary>The delta the manifest offers from the file this device serves (matched by its SHA-256), if any.</summary>
    private async Task<(DeltaEntry Entry, string BasePath)?> PickDeltaAsync(ArtifactEntry artifact, string folder, CancellationToken ct)
    {
        if (artifact.Deltas is not { Count: > 0 } deltas || File.Exists(ArtifactDownloader.FinalPath(folder)) || artifact.Length > ModelDelta.MaxTargetBytes)
            return null;
        var serving = _pointer.Read()?.Active ?? ConfiguredModel();
        if (serving is null || !File.Exists(serving.Path))
            return null;
        var baseSha = await ServingSha256Async(serving.Path, ct).ConfigureAwait(false);
        return deltas.FirstOrDefault(d => d.BaseSha256 == baseSha && !_refusedDeltas.Contains(d.Sha256)) is { } delta ? (delta, serving.Path) : null;
    }

    /// <summary>The serving file's SHA-256, hashed again only when its length or modification time changed (an update that waits for its budget asks every minute).</summary>
    private async Task<string> ServingSha256Async(string path, CancellationToken ct)
    {
        var info = new FileInfo(path);
        var key = (Path.GetFullPath(path), info.Length, info.LastWriteTimeUtc.Ticks);
        if (_servingHash is { } known && known.Key == key)
            return known.Sha256;
        var sha = await ArtifactDownloader.Sha256Async(path, ct).ConfigureAwait(false);
        _servingHash = (key, sha);
        return sha;
    }

    private ((string Path, long Length, long Ticks) Key, string Sha256)? _servingHash;

    /// <summary>
    /// Why the download must wait for the daily byte budget: the bytes it still needs (the delta's, or the whole
    /// artifact's, less what is on disk) exceed what today's budget allows OTA; null when it may start.
    /// </summary>
    private OtaFailure? BudgetShortfall(ArtifactEntry artifact, DeltaEntry? delta, string folder)
    {
        if (File.Exists(ArtifactDownloader.FinalPath(folder)))
            return null;
        static long OnDisk(string part) => File.Exists(part) ? new FileInfo(part).Length : 0;
        var needed = delta is not null
            ? delta.Length - OnDisk(ArtifactDownloader.FinalPath(Path.Combine(folder, "delta")) + ".part")
            : artifact.Length - OnDisk(ArtifactDownloader.FinalPath(folder) + ".part");
        var allowed = _sync.OtaAllowance();
        return needed <= allowed ? null : new OtaFailure(OtaError.OverBudget,
            $"the download needs {needed} bytes and today's budget allows {allowed} more; it starts when the budget renews (a new UTC day), or at once for an urgent rollout");
    }

    /// <summary>
    /// Fetches the delta (over the same transports, with the same checks) and rebuilds the artifact in
    /// <paramref name="folder"/>; the download that follows then finds it there. Any failure (a damaged or tampered
    /// delta, a rebuilt file whose SHA-256 is not the artifact's) is reported with its code and leaves the whole
    /// artifact to be fetched: a delta never fails an update.
    /// </summary>
    private async Task ApplyDeltaAsync(ModelManifest manifest, ArtifactEntry artifact, string folder, DeltaEntry delta, string basePath, CancellationToken ct)
    {
        var final = ArtifactDownloader.FinalPath(folder);
        var deltaFolder = Path.Combine(folder, "delta");
        var entry = new ArtifactEntry { Url = delta.Url, Length = delta.Length, Sha256 = delta.Sha256 };
        var failure = await _downloader.DownloadAsync(ResolveUrl(delta.Url), deltaFolder, entry, null, ct).ConfigureAwait(false);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (failure is null)
        {
            try
            {
                var baseBytes = await File.ReadAllBytesAsync(basePath, ct).ConfigureAwait(false);
                var baseSha = Convert.ToHexStringLower(SHA256.HashData(baseBytes));
                var deltaBytes = await File.ReadAllBytesAsync(ArtifactDownloader.FinalPath(deltaFolder), ct).ConfigureAwait(false);
                var rebuilt = ModelDelta.Apply(baseBytes, deltaBytes, artifact.Length);
                var sha = Convert.ToHexStringLower(SHA256.HashData(rebuilt));
                if (sha == artifact.Sha256)
                {
                    // Written whole, synced, then renamed: a kill at any moment leaves no partial model.onnx.
                    EdgeFleet.Shared.IO.AtomicFile.Write(final, rebuilt);
                    _jobTransport = _downloader.Transport;
                    _jobBytesSaved = artifact.Length - delta.Length;
                    Log.DeltaApplied(_log, manifest.ModelId, manifest.Version, delta.Length, artifact.Length, clock.Elapsed.TotalMilliseconds);
                }
                else
                {
                    failure = new OtaFailure(OtaError.DeltaMismatch, $"the delta from {baseSha[..12]} rebuilt a file with SHA-256 {sha[..12]}…, not the artifact's");
                }
            }
            catch (InvalidDataException e)
            {
                failure = new OtaFailure(OtaError.DeltaMalformed, e.Message);
            }
        }
        DeleteFolder(deltaFolder);
        if (failure is not null)
        {
            if (failure.Code is not (OtaError.DownloadFailed or OtaError.InsufficientSpace))
                _refusedDeltas.Add(delta.Sha256);
            Log.DeltaRefused(_log, manifest.ModelId, manifest.Version, failure.ToString());
            Report(manifest, OtaState.Downloading, failure: new OtaFailure(failure.Code, "delta refused, fetching the whole artifact: " + failure.Reason));
        }
    }

    /// <summary>The steps from download to commit; returns null when the new model is active.</summary>
    private async Task<OtaFailure?> ApplyAsync(ModelManifest manifest, CancellationToken ct)
    {
        var artifact = manifest.Artifacts[_runtime.HardwareProfile];
        var folder = Path.Combine(_modelsDir, manifest.ModelId, manifest.Version.ToString(CultureInfo.InvariantCulture));
        Step(manifest, artifact, OtaState.Downloading);
        _jobTransport = null;
        _jobBytesSaved = null;
        var downloading = System.Diagnostics.Stopwatch.StartNew();
        var delta = await PickDeltaAsync(artifact, folder, ct).ConfigureAwait(false);
        if (!manifest.Urgent && BudgetShortfall(artifact, delta?.Entry, folder) is { } wait)
            return Fail(manifest, artifact, OtaState.WaitingForBudget, wait);
        if (delta is { } chosen)
        {
            await ApplyDeltaAsync(manifest, artifact, folder, chosen.Entry, chosen.BasePath, ct).ConfigureAwait(false);
            // A refused delta leaves the whole artifact to fetch: the budget is asked again for that.
            if (!manifest.Urgent && BudgetShortfall(artifact, null, folder) is { } whole)
                return Fail(manifest, artifact, OtaState.WaitingForBudget, whole);
        }
        var lastReport = 0L;
        OtaTransport? reportedTransport = null;
        var failure = await _downloader.DownloadAsync(ResolveUrl(artifact.Url), folder, artifact, bytes =>
        {
            if (bytes - lastReport >= Math.Max(1 << 20, artifact.Length / 10) || bytes == artifact.Length || _downloader.Transport != reportedTransport)
            {
                lastReport = bytes;
                reportedTransport = _jobTransport = _downloader.Transport;
                Report(manifest, OtaState.Downloading, new OtaProgress { Bytes = bytes, Total = artifact.Length });
            }
        }, ct).ConfigureAwait(false);
        if (failure is not null)
        {
            var transient = failure.Code is OtaError.DownloadFailed or OtaError.InsufficientSpace;
            if (!transient)
                DeleteFolder(folder);
            return Fail(manifest, artifact, transient ? OtaState.Failed : OtaState.Rejected, failure);
        }
        _jobTransport = _downloader.Transport ?? _jobTransport;
        Log.Downloaded(_log, manifest.ModelId, manifest.Version, artifact.Length, _jobTransport switch
        {
            OtaTransport.Mqtt => "the broker (MQTT)",
            OtaTransport.Http => "HTTP",
            _ => "nothing (already on disk)",
        },
            downloading.Elapsed.TotalSeconds);
        Step(manifest, artifact, OtaState.Staged);

        Step(manifest, artifact, OtaState.HealthCheck);
        var path = ArtifactDownloader.FinalPath(folder);
        var model = new InstalledModel { ModelId = manifest.ModelId, Version = manifest.Version, VersionLabel = manifest.Version.ToString(CultureInfo.InvariantCulture), Path = path, Sha256 = artifact.Sha256, Drift = manifest.Drift };
        var (candidate, healthFailure) = LoadAndCheck(model, manifest);
        if (candidate is null)
        {
            DeleteFolder(folder);
            return Fail(manifest, artifact, OtaState.Rejected, healthFailure!);
        }

        Step(manifest, artifact, OtaState.Activating);
        var current = _pointer.Read();
        var previous = current?.Active is { } a && !(a.ModelId == model.ModelId && a.Version == model.Version) ? a : current?.Previous ?? ConfiguredModel();
        _pointer.Write(new PointerContent { Active = model, Previous = previous });
        _host.Activate(candidate);

        var now = _runtime.Time.GetUtcNow();
        _store.Update(r => r with
        {
            Installed = new Dictionary<string, long>(r.Installed) { [manifest.ModelId] = Math.Max(manifest.Version, Installed(r, manifest.ModelId)) },
            Job = Job(manifest, artifact, OtaState.Committed),
            Probation = new Probation(manifest.ModelId, manifest.Version, now + TimeSpan.FromMinutes(_config.Ota.ProbationMinutes), []),
        });
        Report(manifest, OtaState.Committed);
        _runtime.SetOta(OtaState.Committed, Ref(previous));
        Log.Activated(_log, manifest.ModelId, manifest.Version);
        RemoveUnreferencedModels();
        return null;
    }

    private (LoadedModel? Model, OtaFailure? Failure) LoadAndCheck(InstalledModel model, ModelManifest manifest)
    {
        LoadedModel candidate;
        try
        {
            candidate = LoadedModel.Load(Ref(model)!, model.Path, _config.Model?.IntraOpThreads, _runtime.Profile, requireClassifier: _config.Input.Kind != InputKind.None, drift: model.Drift);
        }
        catch (InferenceException e)
        {
            // A classifier that does not fit the model (input/output shape) is the schema's problem, not the loader's.
            return (null, new OtaFailure(e.Code == InferenceError.InputMismatch ? OtaError.SchemaMismatch : OtaError.ModelLoadFailed, e.Message));
        }
        ReportProviders(candidate);
        var failure = HealthChecker.CheckSchema(candidate.Session, manifest.Schema) ?? HealthChecker.Run(candidate.Session, manifest.HealthCheck);
        if (failure is null)
            return (candidate, null);
        candidate.Dispose();
        return (null, failure);
    }

    /// <summary>At start: one more boot inside the probation window; too many mean the new model crashes us.</summary>
    private void CheckCrashLoop()
    {
        var record = _store.Load();
        if (record.Probation is not { } probation)
            return;
        var now = _runtime.Time.GetUtcNow();
        if (now >= probation.Until)
        {
            _store.Update(r => r with { Probation = null });
            return;
        }
        var boots = probation.Boots.Append(now).ToList();
        _store.Update(r => r with { Probation = probation with { Boots = boots } });
        if (boots.Count >= _config.Ota.CrashLoopRestarts)
        {
            RollBack(new OtaFailure(OtaError.CrashLoop, string.Create(CultureInfo.InvariantCulture,
                $"the agent restarted {boots.Count} times within {(now - boots[0]).TotalSeconds:F0} s of activating {probation.ModelId} v{probation.Version}")));
        }
    }

    private void CheckProbation()
    {
        if (_store.Load().Probation is not { } probation)
            return;
        if (_runtime.Time.GetUtcNow() >= probation.Until)
        {
            _store.Update(r => r with { Probation = null });
            Log.ProbationPassed(_log, probation.ModelId, probation.Version);
            return;
        }
        var failedOver = _host.Breaker == Inference.BreakerState.Open;
        if (_host.ConsecutiveFailures >= _config.Ota.InferenceFailureLimit || failedOver)
        {
            RollBack(new OtaFailure(OtaError.InferenceFailing, failedOver
                ? $"{probation.ModelId} v{probation.Version} failed over to its fallback model during probation"
                : $"{_host.ConsecutiveFailures} consecutive inferences failed on {probation.ModelId} v{probation.Version}"));
            LoadBootModel();
        }
    }

    /// <summary>Points back at the last known good model; the bad version stays installed-as-seen, so it is not retried.</summary>
    private void RollBack(OtaFailure reason)
    {
        var pointer = _pointer.Read();
        var record = _store.Load();
        if (pointer?.Previous is not { } previous)
        {
            Log.CannotRollBack(_log, reason.ToString());
            _store.Update(r => r with { Probation = null });
            return;
        }
        _pointer.Write(new PointerContent { Active = previous });
        var job = record.Job ?? new OtaJob { ModelId = pointer.Active.ModelId, Version = pointer.Active.Version, Sha256 = pointer.Active.Sha256 ?? "", State = OtaState.RolledBack };
        _store.Update(r => r with { Probation = null, Job = job with { State = OtaState.RolledBack, Error = OtaErrors.Name(reason.Code), Reason = reason.Reason } });
        _host.Unload();
        Log.RolledBack(_log, pointer.Active.ModelId, pointer.Active.Version, previous.ModelId, previous.Version, reason.ToString());
        Publish(new OtaStatusMessage
        {
            DeviceId = _runtime.DeviceId,
            ModelId = job.ModelId,
            Version = job.Version,
            RolloutId = job.RolloutId,
            State = OtaState.RolledBack,
            Error = reason.Code,
            Reason = reason.Reason,
            At = _runtime.Time.GetUtcNow(),
        });
        _runtime.SetOta(OtaState.RolledBack, null);
    }

    /// <summary>Serves the pointer's model, else its previous, else the configured one.</summary>
    private void LoadBootModel()
    {
        var pointer = _pointer.Read();
        foreach (var candidate in _pointer.BootCandidates(ConfiguredModel(), m => Log.ModelDamaged(_log, m.ModelId, m.VersionLabel, m.Path)))
        {
            try
            {
                var reference = Ref(candidate)!;
                if (reference.Sha256 is null && File.Exists(candidate.Path))
                {
                    // The configured model's file has no recorded hash: the fleet needs it to offer deltas from it.
                    using var file = File.OpenRead(candidate.Path);
                    reference = reference with { Sha256 = Convert.ToHexStringLower(SHA256.HashData(file)) };
                }
                var loaded = LoadedModel.Load(reference, candidate.Path, _config.Model?.IntraOpThreads, _runtime.Profile, requireClassifier: _config.Input.Kind != InputKind.None, drift: candidate.Drift);
                ReportProviders(loaded);
                _host.Activate(loaded);
                if (pointer is not null && candidate != pointer.Active)
                    _pointer.Write(new PointerContent { Active = candidate });
                Log.Serving(_log, candidate.ModelId, candidate.VersionLabel, candidate.Path);
                var job = _store.Load().Job;
                _runtime.SetOta(job?.State ?? OtaState.Idle, Ref(candidate == pointer?.Active ? pointer?.Previous : null));
                return;
            }
            catch (InferenceException e)
            {
                Log.LoadFailed(_log, candidate.ModelId, candidate.VersionLabel, e.Code, e.Message);
            }
        }
    }

    /// <summary>The model id a manifest must be for: the active model's, else the configured one's; null when none or when switching is allowed.</summary>
    private string? ServedModelId() =>
        _config.Ota.AllowModelChange ? null : (_pointer.Read()?.Active ?? ConfiguredModel())?.ModelId;

    private InstalledModel? ConfiguredModel() => _config.Model is { } m
        ? new InstalledModel { ModelId = m.Name, Version = long.TryParse(m.Version, CultureInfo.InvariantCulture, out var v) ? v : 0, VersionLabel = m.Version, Path = m.Path, Drift = m.Drift }
        : null;

    private long Installed(OtaRecord record, string modelId) =>
        Math.Max(record.Installed.GetValueOrDefault(modelId), ConfiguredModel() is { } c && c.ModelId == modelId ? c.Version : 0);

    private bool TryReadTrustedRoot(OtaRecord record, out byte[] root, out OtaFailure? failure)
    {
        failure = null;
        root = record.Root ?? [];
        if (record.Root is not null)
            return true;
        try
        {
            root = File.ReadAllBytes(_config.Ota.RootPath);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            failure = new OtaFailure(OtaError.RootRejected, $"no pinned root at {_config.Ota.RootPath}: {e.Message}");
            return false;
        }
    }

    /// <summary>The device token goes only to the fleet's own origin, never to a third-party artifact host.</summary>
    private AuthenticationHeaderValue? FleetAuthorization(DeviceCredentials credentials, Uri url) =>
        credentials.Enrolled && _config.Ota.FleetUrl is { } fleet && Uri.TryCreate(fleet, UriKind.Absolute, out var origin)
            && Uri.Compare(url, origin, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0
            ? new AuthenticationHeaderValue("Bearer", credentials.NewToken(_runtime.Time.GetUtcNow()))
            : null;

    private Uri? ResolveUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var absolute) && absolute.Scheme is "http" or "https" ? absolute
        : _config.Ota.FleetUrl is { } fleet && Uri.TryCreate(new Uri(fleet), url, out var resolved) ? resolved
        : null;

    /// <summary>Reports a desired model refused before anything was downloaded (no report when <paramref name="failure"/> is null).</summary>
    private void Refuse((string ModelId, long Version)? identity, OtaState state, OtaFailure? failure, bool shadow = false)
    {
        if (failure is null)
            return;
        Log.Refused(_log, identity?.ModelId ?? "?", identity?.Version ?? 0, failure.ToString());
        Publish(new OtaStatusMessage
        {
            DeviceId = _runtime.DeviceId,
            ModelId = identity?.ModelId ?? "unknown",
            Version = identity?.Version ?? 0,
            Shadow = shadow,
            State = state,
            Error = failure.Code,
            Reason = failure.Reason,
            At = _runtime.Time.GetUtcNow(),
        });
    }

    private OtaFailure Fail(ModelManifest manifest, ArtifactEntry artifact, OtaState state, OtaFailure failure)
    {
        _store.Update(r => r with { Job = Job(manifest, artifact, state) with { Error = OtaErrors.Name(failure.Code), Reason = failure.Reason } });
        Log.Refused(_log, manifest.ModelId, manifest.Version, failure.ToString());
        Report(manifest, state, failure: failure);
        _runtime.SetOta(state, _runtime.Reported().Previous);
        return failure;
    }

    private void Step(ModelManifest manifest, ArtifactEntry artifact, OtaState state)
    {
        _store.Update(r => r with { Job = Job(manifest, artifact, state) });
        Report(manifest, state);
        _runtime.SetOta(state, _runtime.Reported().Previous);
    }

    private void Report(ModelManifest manifest, OtaState state, OtaProgress? progress = null, OtaFailure? failure = null, bool shadow = false) =>
        Publish(new OtaStatusMessage
        {
            DeviceId = _runtime.DeviceId,
            ModelId = manifest.ModelId,
            Version = manifest.Version,
            RolloutId = manifest.RolloutId,
            Shadow = shadow,
            State = state,
            Progress = progress,
            Transport = shadow ? null : _jobTransport,
            BytesSaved = shadow ? null : _jobBytesSaved,
            Error = failure?.Code,
            Reason = failure?.Reason,
            At = _runtime.Time.GetUtcNow(),
        });

    private void Publish(OtaStatusMessage status)
    {
        _sync.PublishStatus(status);
        StatusReported?.Invoke(status);
    }

    private static OtaJob Job(ModelManifest m, ArtifactEntry a, OtaState state) =>
        new() { ModelId = m.ModelId, Version = m.Version, RolloutId = m.RolloutId, Sha256 = a.Sha256, State = state };

    private static ModelRef? Ref(InstalledModel? m) => m is null ? null : new ModelRef { Name = m.ModelId, Version = m.VersionLabel, Sha256 = m.Sha256 };

    /// <summary>Model folders that neither the pointer nor an update in progress names are deleted.</summary>
    private void RemoveUnreferencedModels()
    {
        var pointer = _pointer.Read();
        var keep = new[] { pointer?.Active.Path, pointer?.Previous?.Path, _host.Shadow?.Path }.Where(p => p is not null).Select(p => Path.GetDirectoryName(Path.GetFullPath(p!))!).ToHashSet();
        foreach (var modelDir in Directory.EnumerateDirectories(_modelsDir))
        {
            foreach (var versionDir in Directory.EnumerateDirectories(modelDir))
            {
                if (!keep.Contains(Path.GetFullPath(versionDir)))
                    DeleteFolder(versionDir);
            }
        }
    }

    private static void DeleteFolder(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
            // Cleanup only; the next update tries again.
        }
    }

    private static byte[] Utf8(System.Text.Json.JsonElement element) => Encoding.UTF8.GetBytes(element.GetRawText());

    public override void Dispose()
    {
        _http.Dispose();
        _wake.Dispose();
        base.Dispose();
    }

    /// <summary>Says once per process why a profile's execution provider is not used, and what the model runs on.</summary>
    private void ReportProviders(LoadedModel model)
    {
        foreach (var fallback in ExecutionProviders.FirstSeen(model.Session.Providers.Fallbacks))
            Log.ProviderUnavailable(_log, fallback.Provider, _runtime.Profile.Name, fallback.Reason);
        Log.RunsOn(_log, model.Model.Name, string.Join(" > ", model.Session.Providers.Providers));
    }

    private static partial class Log
    {
        [LoggerMessage(3009, LogLevel.Warning, "Execution provider {Provider} of profile {Profile} is not used: {Reason}; the next one is tried")]
        public static partial void ProviderUnavailable(ILogger logger, string provider, string profile, string reason);

        [LoggerMessage(3010, LogLevel.Information, "Model {ModelId} runs on {Providers}")]
        public static partial void RunsOn(ILogger logger, string modelId, string providers);

        [LoggerMessage(3001, LogLevel.Information, "Serving model {ModelId} {Version} from {Path}")]
        public static partial void Serving(ILogger logger, string modelId, string version, string path);

        [LoggerMessage(3002, LogLevel.Error, "Model {ModelId} {Version} could not be loaded: {Code}: {Reason}")]
        public static partial void LoadFailed(ILogger logger, string modelId, string version, InferenceError code, string reason);

        [LoggerMessage(3003, LogLevel.Warning, "Update {ModelId} v{Version} refused: {Failure}")]
        public static partial void Refused(ILogger logger, string modelId, long version, string failure);

        [LoggerMessage(3004, LogLevel.Information, "Model {ModelId} v{Version} is active (on probation)")]
        public static partial void Activated(ILogger logger, string modelId, long version);

        [LoggerMessage(3005, LogLevel.Warning, "Rolled back {ModelId} v{Version} to {PreviousId} {PreviousVersion}: {Reason}")]
        public static partial void RolledBack(ILogger logger, string modelId, long version, string previousId, long previousVersion, string reason);

        [LoggerMessage(3006, LogLevel.Error, "Cannot roll back ({Reason}): no previous model is installed")]
        public static partial void CannotRollBack(ILogger logger, string reason);

        [LoggerMessage(3007, LogLevel.Information, "Model {ModelId} v{Version} passed probation")]
        public static partial void ProbationPassed(ILogger logger, string modelId, long version);

        [LoggerMessage(3011, LogLevel.Information, "Model {ModelId} v{Version} runs in shadow (compared with the served model, not served)")]
        public static partial void ShadowStarted(ILogger logger, string modelId, long version);

        [LoggerMessage(3012, LogLevel.Information, "Shadow model {ModelId} {Version} stopped")]
        public static partial void ShadowStopped(ILogger logger, string modelId, string version);

        [LoggerMessage(3013, LogLevel.Information, "A newer desired state arrived: the download in progress is abandoned (its bytes are kept)")]
        public static partial void Superseded(ILogger logger);

        [LoggerMessage(3014, LogLevel.Error, "Model {ModelId} {Version} at {Path} is missing or not the file installed (SHA-256); the next model is served")]
        public static partial void ModelDamaged(ILogger logger, string modelId, string version, string path);

        [LoggerMessage(3015, LogLevel.Information, "Downloaded {ModelId} v{Version} ({Bytes} bytes) through {Transport} in {Seconds:F1} s")]
        public static partial void Downloaded(ILogger logger, string modelId, long version, long bytes, string transport, double seconds);

        [LoggerMessage(3016, LogLevel.Information, "Rebuilt {ModelId} v{Version} from a {DeltaBytes}-byte delta ({Bytes} bytes) in {Milliseconds:F0} ms")]
        public static partial void DeltaApplied(ILogger logger, string modelId, long version, long deltaBytes, long bytes, double milliseconds);

        [LoggerMessage(3017, LogLevel.Warning, "Delta for {ModelId} v{Version} refused ({Failure}); fetching the whole artifact")]
        public static partial void DeltaRefused(ILogger logger, string modelId, long version, string failure);

        [LoggerMessage(3008, LogLevel.Error, "OTA loop failed: {Reason}")]
        public static partial void LoopFailed(ILogger logger, string reason);
    }
}
