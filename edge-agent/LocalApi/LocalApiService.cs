using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inference;
using Microsoft.ML.OnnxRuntime.Tensors;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.Agent.LocalApi;

/// <summary>
/// The local inference API: HTTP/1.1 (<see cref="HttpServer"/>) on a Unix domain socket, and optionally a
/// loopback TCP port, serving
/// <list type="bullet">
/// <item><c>POST /v1/models/{name}/infer</c>: JSON tensors (<c>{"inputs": {"x": {"shape": [...], "data": [...]}}}</c>),
/// or one tensor as raw little-endian bytes (<c>Content-Type: application/octet-stream</c>,
/// <c>?shape=1,3,48,192[&amp;input=x][&amp;type=float32]</c>); the answer is JSON, or one output's raw bytes
/// with <c>Accept: application/octet-stream</c> (<c>?output=</c> names it when there are several).</item>
/// <item><c>GET /v1/models</c>: the loaded versions, their inputs and outputs, execution providers and breaker.</item>
/// <item><c>GET /metrics</c>: Prometheus text (<see cref="InferenceMetrics"/>).</item>
/// <item><c>GET /healthz</c>: 200 while a model is loaded, else 503.</item>
/// </list>
/// Requests run on <see cref="ModelHost"/>, so they see hot swaps and the fallback exactly as the sensor loop does.
/// </summary>
public sealed partial class LocalApiService(AgentConfig config, ModelHost host, InferenceMetrics metrics, ILoggerFactory loggers, DriftWindows? drift = null) : IHostedService, IAsyncDisposable, IHttpApplication
{
    private const string OctetStream = "application/octet-stream";
    private readonly ILogger _log = loggers.CreateLogger<LocalApiService>();
    private HttpServer? _server;

    /// <summary>The socket path in use (after start).</summary>
    public string? SocketPath { get; private set; }

    /// <summary>The default socket: systemd's RuntimeDirectory when the unit has one, else the state directory.</summary>
    public static string DefaultSocket(AgentConfig config) =>
        Path.Combine(Environment.GetEnvironmentVariable("RUNTIME_DIRECTORY")?.Split(':')[0] is { Length: > 0 } run ? run : config.StateDirectory, "api.sock");

    public static bool TryParseMode(string text, out UnixFileMode mode)
    {
        var ok = text.Length is >= 3 and <= 4 && text.All(c => c is >= '0' and <= '7');
        mode = ok ? (UnixFileMode)Convert.ToInt32(text, 8) : 0;
        return ok;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var options = config.LocalApi;
        if (!options.Enabled)
            return;
        var socket = options.Socket ?? DefaultSocket(config);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(socket)!);
            RemoveStaleSocket(socket);
            var server = new HttpServer(this, new HttpServerLimits { MaxRequestBytes = options.MaxRequestBytes }, _log);
            try
            {
                server.Listen(new UnixDomainSocketEndPoint(socket));
                if (options.TcpPort is { } port)
                {
                    server.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
                    if (Socket.OSSupportsIPv6)
                    {
                        try
                        {
                            server.Listen(new System.Net.IPEndPoint(System.Net.IPAddress.IPv6Loopback, port));
                        }
                        catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported)
                        {
                            // IPv6 is off on this device: 127.0.0.1 alone
                        }
                    }
                }
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
            server.Start();
            _server = server;
            SocketPath = socket;
            if (TryParseMode(options.SocketMode, out var mode) && !OperatingSystem.IsWindows())
                File.SetUnixFileMode(socket, mode);
            Log.Listening(_log, socket, options.TcpPort is { } p ? $" and loopback port {p}" : "");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SocketException or InvalidOperationException)
        {
            // The API is a service to local applications; without it the agent still infers, buffers and syncs.
            Log.CannotListen(_log, socket, e.Message);
        }
    }

    /// <summary>A socket file left by a killed agent is removed; one that answers belongs to a running process.</summary>
    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path))
            return;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);
            return;
        }
        throw new InvalidOperationException($"another process is serving on {path}");
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is { } server)
            await server.StopAsync(cancellationToken).ConfigureAwait(false);
        if (SocketPath is { } socket)
            File.Delete(socket);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is { } server)
            await server.DisposeAsync().ConfigureAwait(false);
    }

    Task<HttpResponse> IHttpApplication.HandleAsync(HttpRequest request) => Task.FromResult(Handle(request));

    HttpResponse IHttpApplication.Refuse(int status, string code, string reason) => Error(status, code, reason);

    /// <summary>Inference runs synchronously on the connection's task (ONNX Runtime's Run blocks either way).</summary>
    private HttpResponse Handle(HttpRequest request)
    {
        var path = request.Path;
        switch (path)
        {
            case "/metrics":
                return Allow(request, "GET") ?? Metrics();
            case "/v1/models":
                return Allow(request, "GET") ?? Models();
            case "/healthz":
                return Allow(request, "GET") ?? new HttpResponse
                {
                    Status = host.Current is null ? 503 : 200,
                    ContentType = "text/plain; charset=utf-8",
                    Body = host.Current is null ? "no model loaded\n"u8.ToArray() : "ok\n"u8.ToArray(),
                };
        }
        if (path.StartsWith("/v1/models/", StringComparison.Ordinal) && path.EndsWith("/infer", StringComparison.Ordinal) && path.Length > "/v1/models//infer".Length)
            return Allow(request, "POST") ?? Infer(request, Uri.UnescapeDataString(path["/v1/models/".Length..^"/infer".Length]));
        return Error(404, "not-found", $"no route {path}: POST /v1/models/{{name}}/infer, GET /v1/models, GET /metrics, GET /healthz");
    }

    /// <summary>Null when the method is the route's; else 405 with an Allow header.</summary>
    private static HttpResponse? Allow(HttpRequest request, string method)
    {
        if (request.Method == method)
            return null;
        var refused = Error(405, "method-not-allowed", $"{request.Method} {request.Path}: only {method} is allowed");
        refused.Headers.Add(new("Allow", method));
        return refused;
    }

    private HttpResponse Metrics()
    {
        var text = new StringBuilder(4096);
        metrics.WritePrometheus(text, host.Status());
        InferenceMetrics.WriteProcessMetrics(text);
        return new HttpResponse { ContentType = "text/plain; version=0.0.4; charset=utf-8", Body = Encoding.UTF8.GetBytes(text.ToString()) };
    }

    private HttpResponse Models()
    {
        var list = new ApiModelList
        {
            Models = [.. host.Status().Select(m => new ApiModel
            {
                Name = m.Name,
                Version = m.Version,
                Sha256 = m.Sha256,
                Role = m.Role,
                Breaker = m.Breaker,
                ExecutionProviders = [.. m.ExecutionProviders],
                ProviderFallbacks = [.. m.ProviderFallbacks.Select(f => new ApiProviderFallback(f.Provider, f.Reason))],
                Inputs = [.. m.Inputs.Select(ApiTensor.From)],
                Outputs = [.. m.Outputs.Select(ApiTensor.From)],
            })],
        };
        return Json(200, list, LocalApiJsonContext.Default.ApiModelList);
    }

    private HttpResponse Infer(HttpRequest http, string name)
    {
        if (host.Current?.Model is not { } active)
            return Error(503, "no-model", "no model is loaded yet");
        if (name != active.Name)
            return Error(404, "unknown-model", $"model '{name}' is not loaded (loaded: {active.Name})");
        var (request, problem) = ReadRequest(http);
        if (request is null)
            return Error(problem!.Value.Status, problem.Value.Code, problem.Value.Reason);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        Served<Result>? served;
        try
        {
            served = host.Serve(request, static (model, r) => Run(model, r));
        }
        catch (InferenceException e)
        {
            metrics.Failed(active, InferenceSource.Api, e.Code);
            return Error(e.Code == InferenceError.InputMismatch ? 400 : 500, InferenceMetrics.ErrorName(e.Code), e.Message);
        }
        if (served is not { } s)
            return Error(503, "no-model", "no model is loaded");
        var micros = (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        metrics.Served(s.Model.Model, InferenceSource.Api, micros, s.FellBack);
        if (s.Result.Drift is { } values && s.Model.Drift is { } spec)
            drift?.Record(s.Model.Model, spec, values, DateTimeOffset.UtcNow);
        if (s.Result.Raw is { } raw)
        {
            var response = new HttpResponse { ContentType = OctetStream, Body = raw.Data };
            response.Headers.Add(new("X-Model-Version", s.Model.Model.Version));
            response.Headers.Add(new("X-Fell-Back", s.FellBack ? "true" : "false"));
            response.Headers.Add(new("X-Tensor-Name", raw.Name));
            response.Headers.Add(new("X-Tensor-Type", raw.Type));
            response.Headers.Add(new("X-Tensor-Shape", string.Join(',', raw.Shape)));
            return response;
        }
        return Json(200, new ApiInferResponse
        {
            Model = s.Model.Model.Name,
            Version = s.Model.Model.Version,
            FellBack = s.FellBack,
            LatencyMicros = micros,
            Outputs = s.Result.Outputs!,
        }, LocalApiJsonContext.Default.ApiInferResponse);
    }

    /// <summary>A parsed request: JSON tensors, or one binary tensor; and how the answer should come back.</summary>
    private sealed record Request(Dictionary<string, JsonTensor>? Json, BinaryTensor? Binary, bool RawOutput, string? Output);

    private sealed record BinaryTensor(string? Input, long[] Shape, string? Type, byte[] Data);

    private sealed record Result(Dictionary<string, JsonTensor>? Outputs, RawTensor? Raw)
    {
        /// <summary>The drift spec's feature values for this request, when the model's spec names any.</summary>
        public double[]? Drift { get; init; }
    }

    /// <summary>
    /// The drift features' values, read in place from the first input (float) and the first row of the first
    /// output (float; none otherwise), while the native values live: nothing of the request is copied.
    /// </summary>
    private static double[]? DriftValues(EdgeFleet.Shared.Stats.DriftSpec spec, IReadOnlyList<OrtValue> inputs, IReadOnlyList<OrtValue> outputs)
    {
        if (inputs.Count == 0 || inputs[0].GetTensorTypeAndShape() is not { ElementDataType: TensorElementType.Float } input)
            return null;
        ReadOnlySpan<float> scores = [];
        if (outputs.Count > 0 && outputs[0].GetTensorTypeAndShape() is { ElementDataType: TensorElementType.Float, Shape.Length: > 0 } output)
            scores = outputs[0].GetTensorDataAsSpan<float>()[..(int)Math.Min(output.Shape[^1], output.ElementCount)];
        return DriftWindows.ValuesOf(spec, inputs[0].GetTensorDataAsSpan<float>(), input.Shape, scores);
    }

    private sealed record RawTensor(string Name, string Type, long[] Shape, byte[] Data);

    private readonly record struct Problem(int Status, string Code, string Reason);

    private static (Request? Request, Problem? Problem) ReadRequest(HttpRequest http)
    {
        var rawOutput = http.Header("Accept")?.Contains(OctetStream, StringComparison.OrdinalIgnoreCase) == true;
        var output = http.Query.GetValueOrDefault("output");
        var contentType = http.Header("Content-Type")?.Split(';')[0].Trim() ?? "";
        if (contentType.Equals("application/json", StringComparison.OrdinalIgnoreCase))
        {
            InferRequest? parsed;
            try
            {
                parsed = JsonSerializer.Deserialize(http.Body, LocalApiJsonContext.Default.InferRequest);
            }
            catch (JsonException e)
            {
                return (null, new Problem(400, "malformed-request", $"the body is not an infer request: {e.Message.ReplaceLineEndings(" ")}"));
            }
            if (parsed?.Inputs is not { Count: > 0 } inputs)
                return (null, new Problem(400, "malformed-request", "the body names no inputs: {\"inputs\": {\"name\": {\"shape\": [...], \"data\": [...]}}}"));
            return (new Request(inputs, null, rawOutput, output), null);
        }
        if (contentType.Equals(OctetStream, StringComparison.OrdinalIgnoreCase))
        {
            if (http.Query.GetValueOrDefault("shape") is not { Length: > 0 } shapeText
                || !TryParseShape(shapeText, out var shape))
                return (null, new Problem(400, "malformed-request", "a binary tensor body needs ?shape=d0,d1,... (positive integers)"));
            return (new Request(null, new BinaryTensor(http.Query.GetValueOrDefault("input"), shape, http.Query.GetValueOrDefault("type"), http.Body), rawOutput, output), null);
        }
        return (null, new Problem(415, "unsupported-media-type",
            $"Content-Type '{contentType}' is neither application/json nor {OctetStream}"));
    }

    private static bool TryParseShape(string text, out long[] shape)
    {
        var parts = text.Split(',');
        shape = new long[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!long.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out shape[i]) || shape[i] < 1)
                return false;
        }
        return parts.Length <= 16;
    }

    /// <summary>Runs one request on one model's session (called by <see cref="ModelHost.Serve"/>, on the active model or the fallback).</summary>
    private static Result Run(LoadedModel model, Request request)
    {
        var session = model.Session;
        var spec = model.Drift is { Features.Count: > 0 } d ? d : null;
        Result Read(IReadOnlyList<OrtValue> inputs, IReadOnlyList<OrtValue> outputs) =>
            Collect(session, outputs, request) with { Drift = spec is null ? null : DriftValues(spec, inputs, outputs) };
        if (request.Binary is { } binary)
        {
            var name = binary.Input ?? (session.Inputs.Count == 1 ? session.Inputs[0].Name
                : throw new InferenceException(InferenceError.InputMismatch, $"the model has {session.Inputs.Count} inputs: name one with ?input= (inputs: {string.Join(", ", session.Inputs.Select(i => i.Name))}), or send JSON"));
            if (session.Inputs.All(i => i.Name != name))
                throw new InferenceException(InferenceError.InputMismatch, $"the model has no input '{name}' (inputs: {string.Join(", ", session.Inputs.Select(i => i.Name))})");
            return session.Run(
                spec => spec.Name == name ? ModelSession.FromBytes(spec, binary.Shape, binary.Type, binary.Data)
                    : throw new InferenceException(InferenceError.InputMismatch, $"input '{spec.Name}' {spec.TypeName}{spec.ShapeText} is missing: a binary body carries one input; send JSON for several"),
                (inputs, outputs, _) => Read(inputs, outputs));
        }
        return session.Run(request.Json!, (inputs, outputs, _) => Read(inputs, outputs));
    }

    private static Result Collect(ModelSession session, IReadOnlyList<OrtValue> outputs, Request request)
    {
        var names = session.Outputs.Select(o => o.Name).ToArray();
        if (request.Output is { } wanted && Array.IndexOf(names, wanted) < 0)
            throw new InferenceException(InferenceError.InputMismatch, $"the model has no output '{wanted}' (outputs: {string.Join(", ", names)})");
        if (request.RawOutput)
        {
            var index = request.Output is { } o ? Array.IndexOf(names, o) : names.Length == 1 ? 0
                : throw new InferenceException(InferenceError.InputMismatch, $"the model has {names.Length} outputs: name one with ?output= for a binary answer (outputs: {string.Join(", ", names)})");
            var info = outputs[index].GetTensorTypeAndShape();
            if (TensorSpec.ElementSize(info.ElementDataType) is null)
                throw new InferenceException(InferenceError.RunFailed, $"output '{names[index]}' is {TensorSpec.ElementTypeName(info.ElementDataType)}, which a binary answer cannot carry");
            return new Result(null, new RawTensor(names[index], TensorSpec.ElementTypeName(info.ElementDataType), info.Shape, outputs[index].GetTensorMutableRawData().ToArray()));
        }
        var result = new Dictionary<string, JsonTensor>(StringComparer.Ordinal);
        for (var i = 0; i < names.Length; i++)
        {
            if (request.Output is null || request.Output == names[i])
                result[names[i]] = ModelSession.FromOrtValue(outputs[i]);
        }
        return new Result(result, null);
    }

    private static HttpResponse Error(int status, string code, string reason) =>
        Json(status, new InferError { Error = code, Reason = reason }, LocalApiJsonContext.Default.InferError);

    private static HttpResponse Json<T>(int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        new() { Status = status, ContentType = "application/json; charset=utf-8", Body = JsonSerializer.SerializeToUtf8Bytes(value, type) };

    private static partial class Log
    {
        [LoggerMessage(2301, LogLevel.Information, "Local inference API listening on unix:{Socket}{Tcp}")]
        public static partial void Listening(ILogger logger, string socket, string tcp);

        [LoggerMessage(2302, LogLevel.Error, "Local inference API cannot listen on {Socket}: {Reason}; the agent runs without it")]
        public static partial void CannotListen(ILogger logger, string socket, string reason);
    }
}
