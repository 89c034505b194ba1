using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.LocalApi;
using EdgeFleet.Shared.Wire;
using EdgeFleet.TestServers;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace EdgeFleet.Agent.Tests;

/// <summary>The local inference API on a real socket, with the demo model and PaddleOCR's classifier.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LocalApiTests(DemoModelFixture demo, ITestOutputHelper output) : IClassFixture<DemoModelFixture>, IAsyncLifetime
{
    private static readonly ModelRef V1 = new() { Name = "vibration", Version = "1" };
    private static readonly ModelRef V2 = new() { Name = "vibration", Version = "2" };
    private static readonly float[] Features = [0.8f, 1.3f, 1.6f, 1.5f, 0.6f, 0.001f, 0.001f, 0.05f];
    private readonly TempDir _dir = new();
    private readonly InferenceMetrics _metrics = new();
    private ModelHost _host = null!;
    private LocalApiService _api = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _host = new ModelHost(new AgentRuntime("dev", "x86-64-generic", TimeProvider.System));
        _api = await StartAsync(_host, new LocalApiConfig { Socket = _dir.File("api.sock"), MaxRequestBytes = 64 * 1024 });
        _http = UnixHttp.Client(_api.SocketPath!);
    }

    private async Task<LocalApiService> StartAsync(ModelHost host, LocalApiConfig api, DriftWindows? drift = null)
    {
        var service = new LocalApiService(new AgentConfig { StateDirectory = _dir.Path, LocalApi = api }, host, _metrics, NullLoggerFactory.Instance, drift);
        await service.StartAsync(default);
        return service;
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _api.StopAsync(default);
        await _api.DisposeAsync();
        _host.Dispose();
        _dir.Dispose();
    }

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");

    private static string FeaturesJson(float[] features, string shape = "[1, 8]") =>
        "{\"inputs\": {\"features\": {\"shape\": " + shape + ", \"data\": ["
        + string.Join(", ", features.Select(f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + "]}}}";

    private static async Task<JsonNode> ReadJson(HttpResponseMessage response) => JsonNode.Parse(await response.Content.ReadAsStringAsync())!;

    private static async Task<(string Error, string Reason)> Problem(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{response.StatusCode}: {body}");
        var json = JsonNode.Parse(body)!;
        return (json["error"]!.GetValue<string>(), json["reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Models_lists_the_loaded_version_with_its_tensors_and_execution_provider()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        var response = await _http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var model = (await ReadJson(response))["models"]![0]!;
        Assert.Equal("vibration", model["name"]!.GetValue<string>());
        Assert.Equal("1", model["version"]!.GetValue<string>());
        Assert.Equal("active", model["role"]!.GetValue<string>());
        Assert.Equal("closed", model["breaker"]!.GetValue<string>());
        Assert.Equal("CPU", model["executionProviders"]![0]!.GetValue<string>());
        Assert.Equal("features", model["inputs"]![0]!["name"]!.GetValue<string>());
        Assert.Equal("float32", model["inputs"]![0]!["type"]!.GetValue<string>());
        Assert.Equal("[batch, 8]", model["inputs"]![0]!["shape"]!.GetValue<string>());
        Assert.Equal([-1L, 8L], model["inputs"]![0]!["dims"]!.AsArray().Select(d => d!.GetValue<long>()));

        // After a swap the replaced version is listed as the fallback.
        _host.Activate(LoadedModel.Load(V2, demo.Path, 1));
        var models = (await ReadJson(await _http.GetAsync("/v1/models")))["models"]!.AsArray();
        Assert.Equal(["2:active", "1:fallback"], models.Select(m => $"{m!["version"]}:{m["role"]}"));
    }

    [Fact]
    public async Task A_json_request_gets_the_same_outputs_as_the_session_itself()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        using var session = ModelSession.Load(demo.Path);
        var direct = session.Run(new Dictionary<string, JsonTensor> { ["features"] = new() { Shape = [1, 8], Data = [.. Features.Select(f => (double)f)] } });

        var response = await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await ReadJson(response);
        Assert.Equal("vibration", json["model"]!.GetValue<string>());
        Assert.Equal("1", json["version"]!.GetValue<string>());
        Assert.False(json["fellBack"]!.GetValue<bool>());
        var output = json["outputs"]!["probabilities"]!;
        Assert.Equal([1L, 3L], output["shape"]!.AsArray().Select(d => d!.GetValue<long>()));
        Assert.Equal(direct.Outputs["probabilities"].Data, output["data"]!.AsArray().Select(d => d!.GetValue<double>()));
    }

    [Fact]
    public async Task A_binary_tensor_body_and_a_binary_answer_carry_the_same_values_as_json()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        var json = await ReadJson(await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features))));
        var expected = json["outputs"]!["probabilities"]!["data"]!.AsArray().Select(d => (float)d!.GetValue<double>()).ToArray();

        using var body = new ByteArrayContent(MemoryMarshal.AsBytes(Features.AsSpan()).ToArray());
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var viaJson = await ReadJson(await _http.PostAsync("/v1/models/vibration/infer?shape=1,8&type=float32", body));
        Assert.Equal(expected, viaJson["outputs"]!["probabilities"]!["data"]!.AsArray().Select(d => (float)d!.GetValue<double>()));

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/models/vibration/infer?shape=1,8") { Content = new ByteArrayContent(MemoryMarshal.AsBytes(Features.AsSpan()).ToArray()) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/octet-stream"));
        var raw = await _http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, raw.StatusCode);
        Assert.Equal("probabilities", raw.Headers.GetValues("X-Tensor-Name").Single());
        Assert.Equal("float32", raw.Headers.GetValues("X-Tensor-Type").Single());
        Assert.Equal("1,3", raw.Headers.GetValues("X-Tensor-Shape").Single());
        Assert.Equal("1", raw.Headers.GetValues("X-Model-Version").Single());
        Assert.Equal(expected, MemoryMarshal.Cast<byte, float>(await raw.Content.ReadAsByteArrayAsync()).ToArray());
    }

    [Fact]
    public async Task A_real_model_takes_a_binary_image_and_answers_as_onnx_runtime_does()
    {
        _host.Activate(LoadedModel.Load(new ModelRef { Name = "ppocr-cls", Version = "2.0" }, RealModelTests.Classifier, 1, requireClassifier: false));
        var image = new float[3 * 48 * 192];
        var random = new Random(7);
        for (var i = 0; i < image.Length; i++)
            image[i] = (float)(random.NextDouble() * 2 - 1);
        using var session = ModelSession.Load(RealModelTests.Classifier);
        var direct = session.Run(new Dictionary<string, JsonTensor> { ["x"] = new() { Shape = [1, 3, 48, 192], Data = [.. image.Select(f => (double)f)] } });

        await using var api = await StartAsync(_host, new LocalApiConfig { Socket = _dir.File("big.sock") });
        using var http = UnixHttp.Client(api.SocketPath!);
        using var body = new ByteArrayContent(MemoryMarshal.AsBytes(image.AsSpan()).ToArray());
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var response = await http.PostAsync("/v1/models/ppocr-cls/infer?shape=1,3,48,192", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var output = JsonNode.Parse(text)!["outputs"]!.AsObject().Single();
        Assert.Equal(direct.Outputs[output.Key].Data, output.Value!["data"]!.AsArray().Select(d => d!.GetValue<double>()));
        await api.StopAsync(default);
    }

    /// <summary>An image model's drift spec names channel statistics and class probabilities: each API answer is sketched on them.</summary>
    [Fact]
    public async Task Api_answers_of_an_image_model_are_sketched_by_channel_statistics_and_class_probabilities()
    {
        var spec = new EdgeFleet.Shared.Stats.DriftSpec
        {
            WindowSeconds = 3600,
            Features =
            [
                new("channel_mean:0", "channel_mean:0", [-1, 0, 1]), new("channel_std:2", "channel_std:2", [0, 0.5, 2]),
                new("confidence", "confidence", [0, 0.5, 1]), new("p_1", "output:1", [0, 0.5, 1]), new("input:0", "input:0", [-10, 10]),
            ],
        };
        Assert.Null(spec.Validate());
        var model = new ModelRef { Name = "ppocr-cls", Version = "2.0" };
        _host.Activate(LoadedModel.Load(model, RealModelTests.Classifier, 1, requireClassifier: false, drift: spec));
        var drift = new DriftWindows();
        await using var api = await StartAsync(_host, new LocalApiConfig { Socket = _dir.File("drift.sock") }, drift);
        using var http = UnixHttp.Client(api.SocketPath!);
        // Channel 0 all 0.5; channel 2 alternating ±1 (mean 0, standard deviation 1).
        var image = new float[3 * 48 * 192];
        const int plane = 48 * 192;
        for (var i = 0; i < plane; i++)
        {
            image[i] = 0.5f;
            image[(2 * plane) + i] = i % 2 == 0 ? 1f : -1f;
        }
        for (var request = 0; request < 2; request++)
        {
            using var body = new ByteArrayContent(MemoryMarshal.AsBytes(image.AsSpan()).ToArray());
            body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            var response = await http.PostAsync("/v1/models/ppocr-cls/infer?shape=1,3,48,192", body);
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        }
        var window = Assert.Single(drift.Close(DateTimeOffset.UtcNow, force: true));
        Assert.Equal(("ppocr-cls", "2.0"), (window.Model, window.Version));
        var mean = window.Features.Single(f => f.Name == "channel_mean:0");
        Assert.Equal((2L, 0.5), (mean.Count, mean.Mean));
        Assert.Equal(1.0, window.Features.Single(f => f.Name == "channel_std:2").Mean, 6);
        var confidence = window.Features.Single(f => f.Name == "confidence");
        var p1 = window.Features.Single(f => f.Name == "p_1");
        Assert.Equal(2, confidence.Count);
        Assert.InRange(confidence.Mean, 0.5, 1);
        Assert.InRange(p1.Mean, 0, 1);
        Assert.Equal(2, p1.Count);
        Assert.Equal(0.5, window.Features.Single(f => f.Name == "input:0").Mean); // the first element
        await api.StopAsync(default);
    }

    [Theory]
    [InlineData("""{"inputs": {"features": {"shape": [1, 7], "data": [1, 2, 3, 4, 5, 6, 7]}}}""", "input-mismatch", "the model expects [batch, 8]")]
    [InlineData("""{"inputs": {"features": {"shape": [1, 8], "data": [1, 2, 3]}}}""", "input-mismatch", "has 3 values but shape [1, 8] needs 8")]
    [InlineData("""{"inputs": {"features": {"shape": [1, 8], "type": "int64", "data": [1, 2, 3, 4, 5, 6, 7, 8]}}}""", "input-mismatch", "is int64, the model expects float32")]
    [InlineData("""{"inputs": {"pixels": {"shape": [1, 8], "data": [1, 2, 3, 4, 5, 6, 7, 8]}}}""", "input-mismatch", "the model has no input 'pixels' (inputs: features)")]
    [InlineData("""{"inputs": {"features": {"shape": [2305843009213693953, 8], "data": [1]}}}""", "input-mismatch", "has more than 2147483647 elements")]
    [InlineData("""{"inputs": {"features": {"shape": [4294967296, 8], "data": [1]}}}""", "input-mismatch", "has more than 2147483647 elements")]
    [InlineData("""{"inputs": {"features": {"shape": [1, 8], "data": [1, 2, 3, 4, 5, 6, 7, "NaN"]}}}""", "input-mismatch", "non-finite value (NaN) at element 7")]
    [InlineData("""{"inputs": {"features": {"shape": [1, 8], "data": [1e39, 2, 3, 4, 5, 6, 7, 8]}}}""", "input-mismatch", "non-finite value")]
    [InlineData("""{"inputs": {"features": {"shape": [1, 8], "data": [1, 2, 3, 4, 5, 6, "-Infinity", 8]}}}""", "input-mismatch", "at element 6")]
    [InlineData("""{"inputs": {}}""", "malformed-request", "names no inputs")]
    [InlineData("""{"inputs": {"features": {"shape": [1, 8], "data": [1, 2, 3""", "malformed-request", "is not an infer request")]
    [InlineData("\u0000\u0001garbage", "malformed-request", "is not an infer request")]
    public async Task Bad_json_requests_get_400_with_the_reason_and_the_model_keeps_serving(string body, string error, string reason)
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        var (code, text) = await Problem(await _http.PostAsync("/v1/models/vibration/infer", Json(body)), HttpStatusCode.BadRequest);
        Assert.Equal(error, code);
        Assert.Contains(reason, text, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features)))).StatusCode);
        Assert.Equal(0, _host.ConsecutiveFailures); // a caller's mistake is not the model's failure
    }

    [Theory]
    [InlineData("?shape=1,8", 31, "needs 32 bytes; the body has 31")]
    [InlineData("?shape=1,9", 36, "the model expects [batch, 8]")]
    [InlineData("?shape=1,8&type=float16", 32, "is float16, the model expects float32")]
    [InlineData("?shape=1,8&input=pixels", 32, "the model has no input 'pixels'")]
    [InlineData("?shape=2305843009213693953,8", 32, "has more than 2147483647 elements")]
    [InlineData("?shape=9223372036854775807,9223372036854775807", 32, "has more than 2147483647 elements")]
    [InlineData("?shape=1,x", 32, "needs ?shape=")]
    [InlineData("", 32, "needs ?shape=")]
    public async Task Bad_binary_requests_get_400_with_the_reason(string query, int bytes, string reason)
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        using var body = new ByteArrayContent(new byte[bytes]);
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var (_, text) = await Problem(await _http.PostAsync("/v1/models/vibration/infer" + query, body), HttpStatusCode.BadRequest);
        Assert.Contains(reason, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Non_finite_binary_inputs_and_overflowing_shapes_are_refused_and_counted()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        var values = (float[])Features.Clone();
        values[3] = float.PositiveInfinity;
        using var body = new ByteArrayContent(MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var (_, text) = await Problem(await _http.PostAsync("/v1/models/vibration/infer?shape=1,8", body), HttpStatusCode.BadRequest);
        Assert.Contains("non-finite value", text, StringComparison.Ordinal);
        await Problem(await _http.PostAsync("/v1/models/vibration/infer", Json("""{"inputs": {"features": {"shape": [2305843009213693953, 8], "data": [1]}}}""")), HttpStatusCode.BadRequest);
        var metrics = await _http.GetStringAsync("/metrics");
        Assert.Contains("edgefleet_inference_errors_total{model=\"vibration\",version=\"1\",source=\"api\",error=\"input-mismatch\"} 2", metrics, StringComparison.Ordinal);
        Assert.Equal(0, _host.ConsecutiveFailures);
    }

    [Fact]
    public async Task Wrong_routes_methods_models_media_types_and_sizes_are_refused_clearly()
    {
        Assert.Equal("no-model", (await Problem(await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features))), HttpStatusCode.ServiceUnavailable)).Error);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await _http.GetAsync("/healthz")).StatusCode);
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("/healthz")).StatusCode);

        var (error, reason) = await Problem(await _http.PostAsync("/v1/models/other/infer", Json(FeaturesJson(Features))), HttpStatusCode.NotFound);
        Assert.Equal(("unknown-model", "model 'other' is not loaded (loaded: vibration)"), (error, reason));
        Assert.Equal("not-found", (await Problem(await _http.GetAsync("/v2/anything"), HttpStatusCode.NotFound)).Error);
        var wrongMethod = await _http.GetAsync("/v1/models/vibration/infer");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, wrongMethod.StatusCode);
        Assert.Equal("POST", wrongMethod.Content.Headers.Allow.Single());
        Assert.Equal("unsupported-media-type", (await Problem(await _http.PostAsync("/v1/models/vibration/infer", new StringContent("x", Encoding.UTF8, "text/plain")), HttpStatusCode.UnsupportedMediaType)).Error);

        // Over localApi.maxRequestBytes (64 KiB here), declared or streamed. The client asks before sending the
        // body (Expect: 100-continue), as large uploads should: a server that refuses early may close the connection.
        var huge = FeaturesJson(Features).Replace("\"data\"", "\"pad\": \"" + new string('x', 70 * 1024) + "\", \"data\"", StringComparison.Ordinal);
        using var declared = new HttpRequestMessage(HttpMethod.Post, "/v1/models/vibration/infer") { Content = Json(huge) };
        declared.Headers.ExpectContinue = true;
        Assert.Equal("too-large", (await Problem(await _http.SendAsync(declared), HttpStatusCode.RequestEntityTooLarge)).Error);
        using var streamed = new StreamContent(new MemoryStream(new byte[66 * 1024]));
        streamed.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/v1/models/vibration/infer?shape=1,8") { Content = streamed };
        chunked.Headers.TransferEncodingChunked = true;
        chunked.Headers.ExpectContinue = true;
        Assert.Equal("too-large", (await Problem(await _http.SendAsync(chunked), HttpStatusCode.RequestEntityTooLarge)).Error);

        Assert.Equal(HttpStatusCode.OK, (await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features)))).StatusCode);
    }

    [Fact]
    public async Task Metrics_count_requests_errors_and_latency_in_prometheus_text()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        for (var i = 0; i < 5; i++)
            Assert.Equal(HttpStatusCode.OK, (await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features)))).StatusCode);
        await _http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features, "[1, 7]")));
        _metrics.Served(V1, InferenceSource.Sensor, 1500, fellBack: false);

        var response = await _http.GetAsync("/metrics");
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        double Value(string series) => double.Parse(lines.Single(l => l.StartsWith(series + " ", StringComparison.Ordinal))[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        const string Api = "model=\"vibration\",version=\"1\",source=\"api\"";
        Assert.Equal(6, Value($"edgefleet_inference_requests_total{{{Api}}}"));
        Assert.Equal(1, Value($"edgefleet_inference_errors_total{{{Api},error=\"input-mismatch\"}}"));
        Assert.Equal(5, Value($"edgefleet_inference_latency_seconds_count{{{Api}}}"));
        Assert.Equal(5, Value($"edgefleet_inference_latency_seconds_bucket{{{Api},le=\"+Inf\"}}"));
        Assert.InRange(Value($"edgefleet_inference_latency_seconds_sum{{{Api}}}"), 1e-6, 5);
        const string Sensor = "model=\"vibration\",version=\"1\",source=\"sensor\"";
        Assert.Equal(0, Value($"edgefleet_inference_latency_seconds_bucket{{{Sensor},le=\"0.001\"}}"));
        Assert.Equal(1, Value($"edgefleet_inference_latency_seconds_bucket{{{Sensor},le=\"0.0025\"}}"));
        Assert.Equal(1, Value("edgefleet_model_info{model=\"vibration\",version=\"1\",role=\"active\",execution_provider=\"CPU\",breaker=\"closed\"}"));
        // Buckets are cumulative and every series has a TYPE line.
        var buckets = lines.Where(l => l.StartsWith($"edgefleet_inference_latency_seconds_bucket{{{Api}", StringComparison.Ordinal)).Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(InferenceMetrics.BoundsSeconds.Length + 1, buckets.Length);
        Assert.Equal(buckets.Order(), buckets);
        Assert.Contains("# TYPE edgefleet_inference_latency_seconds histogram", lines);

        // The process's own memory, to tell a leak from a cache in the field.
        Assert.InRange(Value("process_resident_memory_bytes"), 1_000_000, Environment.WorkingSet * 2.0);
        // Flash wear: the server runs in this process, so its figure lies between two readings of /proc/self/io around the request.
        static long Written() => long.Parse(File.ReadLines("/proc/self/io").Single(l => l.StartsWith("write_bytes:", StringComparison.Ordinal))[12..].Trim(),
            System.Globalization.CultureInfo.InvariantCulture);
        var before = Written();
        var io = (await _http.GetStringAsync("/metrics")).Split('\n').Single(l => l.StartsWith("process_io_write_bytes_total ", StringComparison.Ordinal));
        Assert.InRange(long.Parse(io.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), before, Written());
        Assert.InRange(Value("dotnet_gc_heap_size_bytes"), 0, Value("dotnet_gc_committed_bytes") + 1);
        Assert.True(Value("dotnet_gc_allocated_bytes_total") > 0);
        Assert.Equal(Convert.ToDouble(GC.GetConfigurationVariables()["GCGen0MaxBudget"], System.Globalization.CultureInfo.InvariantCulture), Value("dotnet_gc_gen0_budget_bytes"));
        GC.Collect();
        var collected = GC.CollectionCount(2);
        var after = (await _http.GetStringAsync("/metrics")).Split('\n').Single(l => l.StartsWith("dotnet_gc_collections_total{generation=\"2\"} ", StringComparison.Ordinal));
        Assert.True(long.Parse(after.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) >= collected, after);
    }

    [Fact]
    public async Task A_stale_socket_file_is_replaced_and_a_live_one_is_left_alone()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        // A second agent on the same socket: it says so and serves nothing; the first keeps answering.
        await using (var second = await StartAsync(_host, new LocalApiConfig { Socket = _api.SocketPath }))
            Assert.Null(second.SocketPath);
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("/healthz")).StatusCode);

        // A socket file that nothing accepts on, as a killed agent leaves it (bound here and not listening).
        var stale = _dir.File("stale.sock");
        using var orphan = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        orphan.Bind(new UnixDomainSocketEndPoint(stale));
        Assert.True(File.Exists(stale));
        await using var restarted = await StartAsync(_host, new LocalApiConfig { Socket = stale });
        Assert.Equal(stale, restarted.SocketPath);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, File.GetUnixFileMode(stale));
        using var http = UnixHttp.Client(stale);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        await restarted.StopAsync(default);
        Assert.False(File.Exists(stale));
    }

    [Fact]
    public async Task A_tcp_port_listens_on_loopback_only()
    {
        _host.Activate(LoadedModel.Load(V1, demo.Path, 1));
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        await using var api = await StartAsync(_host, new LocalApiConfig { Socket = _dir.File("tcp.sock"), TcpPort = port });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        var response = await http.PostAsync("/v1/models/vibration/infer", Json(FeaturesJson(Features)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("1", (await ReadJson(response))["version"]!.GetValue<string>());
        if (Socket.OSSupportsIPv6)
        {
            using var http6 = new HttpClient { BaseAddress = new Uri($"http://[::1]:{port}") };
            Assert.Equal(HttpStatusCode.OK, (await http6.GetAsync("/healthz")).StatusCode);
        }
        // Nothing listens on the machine's other addresses.
        var other = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(i => i.GetIPProperties().UnicastAddresses).Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
        if (other is not null)
        {
            using var outside = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await Assert.ThrowsAsync<SocketException>(() => outside.ConnectAsync(other, port));
        }
    }

    /// <summary>
    /// The hot-swap test: four clients send PaddleOCR's classifier binary images back to back while the model is
    /// swapped 50 times (each new version loaded and warmed up beside the serving one, as the OTA service does).
    /// No request may fail. A run takes about a millisecond, so swaps land while requests run.
    /// </summary>
    /// <remarks>
    /// Without a fallback the replaced model is let go at the swap itself, while requests still run on it: the
    /// harder case (with one, it is let go a swap later).
    /// </remarks>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Fifty_swaps_under_load_fail_no_request(bool fallback)
    {
        _host.Dispose();
        _host = new ModelHost(new AgentRuntime("dev", "x86-64-generic", TimeProvider.System), new FallbackConfig { Enabled = fallback });
        await _api.StopAsync(default);
        await _api.DisposeAsync();
        _api = await StartAsync(_host, new LocalApiConfig { Socket = _dir.File("swap.sock") });
        static LoadedModel Load(int version)
        {
            var model = LoadedModel.Load(new ModelRef { Name = "ppocr-cls", Version = version.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                RealModelTests.Classifier, 1, requireClassifier: false);
            model.Session.Run(new Dictionary<string, JsonTensor> { ["x"] = new() { Shape = [1, 3, 48, 192], Data = new double[3 * 48 * 192] } }); // warm-up beside the serving model
            return model;
        }
        _host.Activate(Load(1));
        var image = MemoryMarshal.AsBytes(Enumerable.Range(0, 3 * 48 * 192).Select(i => (float)Math.Sin(i)).ToArray().AsSpan()).ToArray();
        using var stop = new CancellationTokenSource();
        var failures = new List<string>();
        var versions = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        long served = 0;
        var clients = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            using var http = UnixHttp.Client(_api.SocketPath!);
            while (!stop.IsCancellationRequested)
            {
                using var body = new ByteArrayContent(image);
                body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                try
                {
                    var response = await http.PostAsync("/v1/models/ppocr-cls/infer?shape=1,3,48,192", body);
                    var text = await response.Content.ReadAsStringAsync();
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        lock (failures)
                            failures.Add($"{response.StatusCode}: {text}");
                        continue;
                    }
                    versions.AddOrUpdate(JsonNode.Parse(text)!["version"]!.GetValue<string>(), 1, (_, n) => n + 1);
                    Interlocked.Increment(ref served);
                }
                catch (HttpRequestException e)
                {
                    lock (failures)
                        failures.Add(e.Message);
                }
            }
        })).ToArray();

        for (var swap = 1; swap <= 50; swap++)
        {
            _host.Activate(Load(swap + 1));
            // Let the new version answer before the next swap (requests that started earlier finish on older ones).
            var version = (swap + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!versions.ContainsKey(version) && DateTime.UtcNow < deadline)
                await Task.Delay(1);
        }
        await Task.Delay(100);
        stop.Cancel();
        await Task.WhenAll(clients);

        output.WriteLine($"50 swaps under load, fallback {(fallback ? "on" : "off")}: {served} requests served by {versions.Count} of 51 versions, {failures.Count} failed");
        Assert.Empty(failures);
        Assert.True(served >= 400, $"only {served} requests were served");
        Assert.True(versions.Count >= 50, $"requests reached only {versions.Count} of 51 versions: {string.Join(", ", versions.Keys)}");
        using var http = UnixHttp.Client(_api.SocketPath!);
        var models = (await ReadJson(await http.GetAsync("/v1/models")))["models"]!.AsArray();
        Assert.Equal(fallback ? ["51:active", "50:fallback"] : ["51:active"], models.Select(m => $"{m!["version"]}:{m["role"]}"));
    }
}
