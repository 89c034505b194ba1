using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Retraining;

/// <summary>A hard example as an executor gets it: the model's input, what the model said, and the label feedback gave it (if any).</summary>
public sealed record InputExample(string Id, string DeviceId, DateTimeOffset Ts, long[] Shape, float[] Input, string Predicted, float Confidence, string? Label);

/// <summary>Everything a job's executor is given: the job with its snapshot, the model's labels, its base model file, and the hard examples.</summary>
public sealed record RetrainingInputs
{
    public required RetrainingJob Job { get; init; }

    public List<string> Labels { get; set; } = [];

    /// <summary>The base version's FP32 file (else its INT8 one): <c>base.onnx</c> beside a command's job file, or <c>GET /api/retraining/jobs/{id}/base-model</c>.</summary>
    public ModelArtifact? BaseModel { get; init; }

    public ModelCard? Card { get; init; }

    public List<InputExample> Examples { get; set; } = [];

    public static async Task<RetrainingInputs> BuildAsync(IFleetStore store, RetrainingJob job, CancellationToken ct)
    {
        var version = await store.GetModelVersionAsync(job.ModelId, job.BaseVersion, ct).ConfigureAwait(false);
        var examples = await store.GetHardExamplesAsync(job.Snapshot.HardExampleIds, ct).ConfigureAwait(false);
        return new RetrainingInputs
        {
            Job = Public(job),
            Labels = version?.Card.Labels ?? [],
            Card = version?.Card,
            BaseModel = version?.Artifacts.FirstOrDefault(a => a.Kind == ModelArtifact.Fp32Kind) ?? version?.Artifacts.FirstOrDefault(a => a.Kind == ModelArtifact.Int8Kind),
            Examples = [.. examples.OrderBy(e => e.Ts).ThenBy(e => e.Id, StringComparer.Ordinal)
                .Select(e => new InputExample(e.Id, e.DeviceId, e.Ts, e.Example.Shape, e.Example.Input, e.Example.Label, e.Example.Confidence, e.Label))],
        };
    }

    /// <summary>A job as shown outside the store: without its token's hash.</summary>
    public static RetrainingJob Public(RetrainingJob job) => job with { TokenHash = "" };
}

/// <summary>
/// Runs jobs on their executors. A command runs on the leader without a shell, in the job's directory under
/// <c>Fleet:Retraining:WorkPath</c>, which holds <c>job.json</c> (<see cref="RetrainingInputs"/>), <c>base.onnx</c> and
/// <c>output/</c>; its environment names them (<c>EDGEFLEET_JOB_ID</c>, <c>EDGEFLEET_JOB_FILE</c>, <c>EDGEFLEET_JOB_OUTPUT</c>,
/// <c>EDGEFLEET_BASE_MODEL</c>, <c>EDGEFLEET_JOB_TOKEN</c>). Exit status 0 hands <c>output/</c> to the
/// <see cref="RetrainingPipeline"/>; any other fails the job with the end of its log. A webhook gets the job as a
/// signed JSON POST with its token and links, and reports back through the API.
/// </summary>
public sealed partial class RetrainingExecutors(FleetOptions options, IFleetStore store, ArtifactStore artifacts, RetrainingPipeline pipeline, TimeProvider time,
    ILogger<RetrainingExecutors> log) : IDisposable
{
    private readonly ConcurrentDictionary<string, Process> _running = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };

    public static byte[] WebhookBody(RetrainingJob job, string token, string baseUrl)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("event", "retraining.job");
            json.WritePropertyName("job");
            JsonSerializer.Serialize(json, RetrainingInputs.Public(job), FleetApiJsonContext.Default.RetrainingJob);
            json.WriteString("token", token);
            json.WriteStartObject("links");
            var self = $"{baseUrl.TrimEnd('/')}/api/retraining/jobs/{job.Id}";
            json.WriteString("inputs", self + "/inputs");
            json.WriteString("baseModel", self + "/base-model");
            json.WriteString("status", self + "/status");
            json.WriteString("output", self + "/output");
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>Starts a queued job on its executor; a webhook that does not take it leaves it queued for the next check.</summary>
    public async Task StartAsync(RetrainingJob job, CancellationToken ct)
    {
        if (!options.Retraining.Executors.TryGetValue(job.Executor, out var executor))
        {
            await FailAsync(job.Id, $"executor '{job.Executor}' is not configured (Fleet:Retraining:Executors)", ct).ConfigureAwait(false);
            return;
        }
        var (token, hash) = JobTokens.New(job.Id);
        if (executor.Command is { } command)
            await StartCommandAsync(job, command, executor.Arguments, token, hash, ct).ConfigureAwait(false);
        else
            await PostWebhookAsync(job, executor, token, hash, ct).ConfigureAwait(false);
    }

    /// <summary>Kills a job's process, if this instance runs it.</summary>
    public void Stop(string jobId)
    {
        if (_running.TryRemove(jobId, out var process))
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It ended meanwhile.
            }
        }
    }

    private async Task StartCommandAsync(RetrainingJob job, string command, List<string> arguments, string token, string hash, CancellationToken ct)
    {
        var dir = Path.GetFullPath(Path.Combine(options.Retraining.WorkPath, job.Id));
        var output = Path.Combine(dir, "output");
        if (Directory.Exists(output))
            Directory.Delete(output, recursive: true);
        Directory.CreateDirectory(output);
        var inputs = await RetrainingInputs.BuildAsync(store, job, ct).ConfigureAwait(false);
        var baseModel = Path.Combine(dir, "base.onnx");
        if (inputs.BaseModel is { } artifact && artifacts.Find(artifact.Sha256) is { } stored)
            File.Copy(stored, baseModel, overwrite: true);
        var jobFile = Path.Combine(dir, "job.json");
        await File.WriteAllTextAsync(jobFile, JsonSerializer.Serialize(inputs, FleetApiJsonContext.Default.RetrainingInputs), ct).ConfigureAwait(false);

        var now = time.GetUtcNow();
        if (await store.UpdateRetrainingJobAsync(job.Id, j => j.State == RetrainingJobStates.Queued
            ? j.Moved(RetrainingJobStates.Running, now, $"started: {Path.GetFileName(command)} in {dir}") with { TokenHash = hash } : null, ct).ConfigureAwait(false) is null)
            return;
        var start = new ProcessStartInfo(command)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = dir,
        };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        start.Environment["EDGEFLEET_JOB_ID"] = job.Id;
        start.Environment["EDGEFLEET_JOB_FILE"] = jobFile;
        start.Environment["EDGEFLEET_JOB_OUTPUT"] = output;
        start.Environment["EDGEFLEET_BASE_MODEL"] = File.Exists(baseModel) ? baseModel : "";
        start.Environment["EDGEFLEET_JOB_TOKEN"] = token;
        if (options.Retraining.CallbackUrl is { } url)
            start.Environment["EDGEFLEET_URL"] = url;
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("the process did not start");
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            await FailAsync(job.Id, $"{command} did not start: {e.Message}", ct).ConfigureAwait(false);
            return;
        }
        process.StandardInput.Close();
        _running[job.Id] = process;
        Log.Started(log, job.Id, command);
        _ = Task.Run(() => WatchAsync(job.Id, process, dir, output), CancellationToken.None);
    }

    private async Task WatchAsync(string jobId, Process process, string dir, string output)
    {
        var logPath = Path.Combine(dir, "log.txt");
        var tail = new Queue<string>();
        await using (var file = new StreamWriter(logPath, append: true, Encoding.UTF8))
        {
            async Task Copy(StreamReader reader)
            {
                while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
                {
                    lock (tail)
                    {
                        file.WriteLine(line);
                        tail.Enqueue(line);
                        if (tail.Count > 5)
                            tail.Dequeue();
                    }
                }
            }
            await Task.WhenAll(Copy(process.StandardOutput), Copy(process.StandardError), process.WaitForExitAsync()).ConfigureAwait(false);
        }
        var stopped = !_running.TryRemove(jobId, out _);
        var code = process.ExitCode;
        process.Dispose();
        try
        {
            if (stopped)
                return; // the scheduler killed it (timeout, cancel) and said why
            if (code == 0)
            {
                await pipeline.ProcessAsync(jobId, output, CancellationToken.None).ConfigureAwait(false);
                return;
            }
            string last;
            lock (tail)
                last = string.Join(" | ", tail);
            await FailAsync(jobId, string.Create(CultureInfo.InvariantCulture, $"the executor exited with status {code}: {LogText.Sanitize(last)} (log: {logPath})"), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or LiteDB.LiteException or Npgsql.NpgsqlException or InvalidOperationException)
        {
            Log.Failed(log, jobId, e.Message);
        }
    }

    private async Task PostWebhookAsync(RetrainingJob job, RetrainingExecutorOptions executor, string token, string hash, CancellationToken ct)
    {
        // The token must work before the executor can call back, so its hash is stored first.
        if (await store.UpdateRetrainingJobAsync(job.Id, j => j.State == RetrainingJobStates.Queued ? j with { TokenHash = hash } : null, ct).ConfigureAwait(false) is null)
            return;
        var body = WebhookBody(job, token, options.Retraining.CallbackUrl!);
        string? failure;
        try
        {
            var secret = Encoding.UTF8.GetBytes((await File.ReadAllLinesAsync(executor.SecretFile!, ct).ConfigureAwait(false)).FirstOrDefault() ?? "");
            using var request = new HttpRequestMessage(HttpMethod.Post, executor.Url) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            request.Headers.Add("X-EdgeFleet-Signature", Drift.DriftNotifier.Signature(secret, body));
            request.Headers.Add("X-EdgeFleet-Event", "retraining.job");
            using var response = await _http.SendAsync(request, ct).ConfigureAwait(false);
            failure = response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode}";
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException or UnauthorizedAccessException)
        {
            failure = e.Message;
        }
        if (failure is not null)
        {
            Log.WebhookFailed(log, job.Id, executor.Url!, failure);
            return;
        }
        await store.UpdateRetrainingJobAsync(job.Id, j => j.State == RetrainingJobStates.Queued
            ? j.Moved(RetrainingJobStates.Running, time.GetUtcNow(), $"taken by webhook {executor.Url}") : null, ct).ConfigureAwait(false);
        Log.Started(log, job.Id, executor.Url!);
    }

    private async Task FailAsync(string jobId, string reason, CancellationToken ct)
    {
        Log.Failed(log, jobId, reason);
        await store.UpdateRetrainingJobAsync(jobId, j => j.Open ? j.Moved(RetrainingJobStates.Failed, time.GetUtcNow(), reason) with { Error = reason } : null, ct).ConfigureAwait(false);
    }

    public void Dispose()
    {
        foreach (var id in _running.Keys)
            Stop(id);
        _http.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(9401, LogLevel.Information, "Retraining job {Job} started on {Executor}")]
        public static partial void Started(ILogger logger, string job, string executor);

        [LoggerMessage(9402, LogLevel.Warning, "Retraining job {Job} failed: {Reason}")]
        public static partial void Failed(ILogger logger, string job, string reason);

        [LoggerMessage(9403, LogLevel.Warning, "Retraining job {Job}: webhook {Url} did not take it ({Reason}); it stays queued")]
        public static partial void WebhookFailed(ILogger logger, string job, string url, string reason);
    }
}
