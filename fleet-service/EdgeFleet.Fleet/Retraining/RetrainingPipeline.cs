using System.Globalization;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.ModelTools.Onnx;
using EdgeFleet.ModelTools.Quantization;
using EdgeFleet.ModelTools.Validation;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.Fleet.Retraining;

/// <summary>
/// What becomes of a job's output: the executor leaves a directory with <c>model.onnx</c> (FP32), <c>data/</c>
/// (held-out samples as <c>.npy</c>, with <c>labels.txt</c> when they are labelled), and optionally <c>card.json</c>
/// (else the base version's card is kept; baselines kept from the base are rebuilt from the field, see
/// <see cref="FieldBaselines"/>) and <c>result.json</c> (what the executor says of its run). The fleet
/// quantizes the model to INT8 (static, calibrated on the samples), runs the validation gate with the card's
/// thresholds, registers both files as the model's next version with the report (validated or rejected by its
/// verdict), and drafts the policy's rollout of a validated version for an operator to approve.
/// </summary>
public sealed partial class RetrainingPipeline(IFleetStore store, ArtifactStore artifacts, RolloutSigner signer, TimeProvider time, ILogger<RetrainingPipeline> log)
{
    public const string ModelFile = "model.onnx";
    public const string CardFile = "card.json";
    public const string DataDirectory = "data";
    public const string ResultFile = "result.json";

    /// <summary>Processes <paramref name="output"/> for job <paramref name="jobId"/> once: a job that is no longer queued or running is left alone.</summary>
    public async Task<RetrainingJob?> ProcessAsync(string jobId, string output, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var claimed = await store.UpdateRetrainingJobAsync(jobId, j => j.State is RetrainingJobStates.Queued or RetrainingJobStates.Running
            ? j.Moved(RetrainingJobStates.Processing, now, "output received: quantizing and validating") : null, ct).ConfigureAwait(false);
        if (claimed is not { After: var job })
            return null;
        try
        {
            var (version, verdict, rollout, note) = await RunAsync(job, output, ct).ConfigureAwait(false);
            var done = time.GetUtcNow();
            var result = ReadResult(output);
            var finished = await store.UpdateRetrainingJobAsync(jobId, j => j.State != RetrainingJobStates.Processing ? null
                : (rollout is not null
                    ? j.Moved(RetrainingJobStates.Succeeded, done, note)
                    : j.Moved(RetrainingJobStates.Failed, done, note) with { Error = note }) with
                { OutputVersion = version, Verdict = verdict, RolloutId = rollout, Result = result },
                ct).ConfigureAwait(false);
            Log.Processed(log, jobId, note);
            return finished?.After;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or OnnxFormatException or QuantizationException or SampleDataException or ValidationException
            or OnnxRuntimeException or JsonException or UnauthorizedAccessException or InvalidOperationException or FormatException or OverflowException)
        {
            var reason = $"the output could not be used: {e.Message}";
            Log.Processed(log, jobId, reason);
            return (await store.UpdateRetrainingJobAsync(jobId, j => j.State == RetrainingJobStates.Processing
                ? j.Moved(RetrainingJobStates.Failed, time.GetUtcNow(), reason) with { Error = reason } : null, ct).ConfigureAwait(false))?.After;
        }
    }

    private async Task<(long? Version, string? Verdict, string? Rollout, string Note)> RunAsync(RetrainingJob job, string output, CancellationToken ct)
    {
        var fp32Path = Path.Combine(output, ModelFile);
        var data = Path.Combine(output, DataDirectory);
        if (!File.Exists(fp32Path))
            throw new InvalidDataException($"the executor left no {ModelFile}");
        if (!Directory.Exists(data) || !Directory.EnumerateFiles(data, "*.npy").Any())
            throw new InvalidDataException($"the executor left no held-out samples in {DataDirectory}/ (*.npy): the validation gate needs them");
        var baseVersion = await store.GetModelVersionAsync(job.ModelId, job.BaseVersion, ct).ConfigureAwait(false)
            ?? throw new InvalidDataException($"the base version {job.ModelId} v{job.BaseVersion} is gone");
        var card = File.Exists(Path.Combine(output, CardFile))
            ? JsonSerializer.Deserialize(await File.ReadAllTextAsync(Path.Combine(output, CardFile), ct).ConfigureAwait(false), FleetApiJsonContext.Default.ModelCard)
              ?? throw new InvalidDataException($"{CardFile} is not a model card")
            : baseVersion.Card;
        if (card.Problem() is { } problem)
            throw new InvalidDataException($"{CardFile}: {problem}");
        var policy = (await store.ListRetrainingPoliciesAsync(ct).ConfigureAwait(false)).FirstOrDefault(p => p.ModelId == job.ModelId);
        var (rebased, baselineNote) = await FieldBaselines.RebuildAsync(store, job, baseVersion, card, policy?.Target, ct).ConfigureAwait(false);
        card = rebased;

        // INT8, calibrated on the held-out samples, then the gate: INT8 against its own FP32.
        var int8Path = Path.Combine(output, "model.int8.onnx");
        QuantizationReport quantization;
        using (var session = new InferenceSession(fp32Path))
        {
            var (int8, report) = QdqQuantizer.Quantize(OnnxModel.Load(fp32Path), SampleSet.Open(data, session.InputMetadata), new QuantizationOptions { Threads = 1 });
            int8.Save(int8Path);
            quantization = report;
        }
        var labelsPath = Path.Combine(data, "labels.txt");
        var labels = File.Exists(labelsPath)
            ? (await File.ReadAllLinesAsync(labelsPath, ct).ConfigureAwait(false)).Where(l => l.Trim().Length > 0).Select(l => int.Parse(l.Trim(), CultureInfo.InvariantCulture)).ToList()
            : null;
        var thresholds = card.Thresholds is { ValueKind: JsonValueKind.Object } t
            ? t.Deserialize(ValidationJsonContext.Default.ValidationThresholds) ?? new ValidationThresholds()
            : new ValidationThresholds();
        var gate = ValidationGate.Run(new ValidationGate.Request { Reference = fp32Path, Candidate = int8Path, DataDirectory = data, Labels = labels, Thresholds = thresholds });
        var reportJson = JsonSerializer.Serialize(gate, ValidationJsonContext.Default.ValidationReport);

        var files = new List<ModelArtifact>();
        foreach (var (kind, path) in new[] { (ModelArtifact.Fp32Kind, fp32Path), (ModelArtifact.Int8Kind, int8Path) })
        {
            await using var file = File.OpenRead(path);
            var (sha, length) = await artifacts.PutAsync(file, OtaApi.MaxArtifactBytes, ct).ConfigureAwait(false);
            files.Add(new ModelArtifact(kind, null, sha, length, Path.GetFileName(path)));
        }
        var actor = $"retraining:{job.Id}";
        var now = time.GetUtcNow();
        var record = new ModelVersion
        {
            ModelId = job.ModelId,
            Version = 0,
            State = ApprovalStates.Draft,
            Card = card,
            Artifacts = files,
            CreatedAt = now,
            CreatedBy = actor,
            History = [new StateChange("", ApprovalStates.Draft, actor, now, $"retrained from v{job.BaseVersion} by job {job.Id} ({job.Trigger}); {quantization.QuantizedNodes} nodes quantized"
                + (baselineNote is null ? "" : "; " + baselineNote))],
        };
        var (withReport, reportError) = ModelsApi.WithValidation(record, reportJson, actor, now);
        if (withReport is null)
            throw new InvalidDataException(reportError ?? "the validation report was not accepted");
        var (stored, latest) = await ModelsApi.AddVersionAsync(store, withReport, null, actor, time, ct).ConfigureAwait(false);
        if (stored is null)
            throw new InvalidOperationException($"could not register a version above v{latest}");
        if (!gate.Accepted)
        {
            var failed = string.Join("; ", gate.Checks.Where(c => !c.Passed).Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Name} {c.Value:G4} {c.Comparison} {c.Threshold:G4}")));
            return (stored.Version, gate.Verdict, null, $"v{stored.Version} registered but the validation gate rejected it: {failed}");
        }

        var request = new RolloutRequest
        {
            Id = $"{job.ModelId}-v{stored.Version}-{job.Id}"[..Math.Min(64, $"{job.ModelId}-v{stored.Version}-{job.Id}".Length)],
            ModelId = job.ModelId,
            Version = stored.Version,
            Target = policy?.Target ?? new RolloutTarget(),
            Phases = policy?.Phases ?? [new RolloutPhase { Percent = 10, SoakSeconds = 600 }, new RolloutPhase { Percent = 100 }],
            Gates = policy?.Gates,
        };
        var (rollout, error, _) = await RolloutsApi.CreateRolloutAsync(request, actor, store, signer, time, ct, draft: true).ConfigureAwait(false);
        return rollout is null
            ? (stored.Version, gate.Verdict, null, $"v{stored.Version} validated, but its rollout could not be drafted: {error?.Reason}")
            : (stored.Version, gate.Verdict, rollout.Id, $"v{stored.Version} validated; draft rollout {rollout.Id} awaits approval");
    }

    private static JsonElement? ReadResult(string output)
    {
        var path = Path.Combine(output, ResultFile);
        if (!File.Exists(path) || new FileInfo(path).Length > 1 << 20)
            return null;
        try
        {
            return JsonDocument.Parse(File.ReadAllText(path)).RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(9201, LogLevel.Information, "Retraining job {Job}: {Outcome}")]
        public static partial void Processed(ILogger logger, string job, string outcome);
    }
}
