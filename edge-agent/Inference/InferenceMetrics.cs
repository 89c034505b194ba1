using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Inference;

/// <summary>Who asked for an inference: the agent's own input loop, or an application through the local API.</summary>
public enum InferenceSource
{
    Sensor,
    Api,
}

/// <summary>
/// Cumulative inference counters and latency histograms per model version and source, for <c>GET /metrics</c>
/// (Prometheus text format 0.0.4). Recording is lock-free: a few interlocked adds per request.
/// </summary>
/// <remarks>
/// These are totals since start, which is what Prometheus expects (it computes rates itself). The windowed
/// percentiles the fleet receives come from <see cref="LatencyWindows"/>, a separate, mergeable structure.
/// </remarks>
public sealed class InferenceMetrics
{
    /// <summary>Histogram bounds in seconds: 100 µs to 10 s, about ×2.5 apart; +Inf is implicit.</summary>
    internal static readonly double[] BoundsSeconds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

    private readonly ConcurrentDictionary<(string Model, string Version, InferenceSource Source), Series> _series = new();

    /// <summary>One request served (by <paramref name="model"/>, which is the fallback when <paramref name="fellBack"/>).</summary>
    public void Served(ModelRef model, InferenceSource source, long micros, bool fellBack)
    {
        var series = For(model, source);
        Interlocked.Increment(ref series.Requests);
        if (fellBack)
            Interlocked.Increment(ref series.Fallbacks);
        Interlocked.Add(ref series.SumMicros, micros);
        var seconds = micros / 1e6;
        var bucket = 0;
        while (bucket < BoundsSeconds.Length && seconds > BoundsSeconds[bucket])
            bucket++;
        Interlocked.Increment(ref series.Buckets[bucket]);
    }

    /// <summary>One request that failed on <paramref name="model"/> with <paramref name="error"/>.</summary>
    public void Failed(ModelRef model, InferenceSource source, InferenceError error)
    {
        var series = For(model, source);
        Interlocked.Increment(ref series.Requests);
        Interlocked.Increment(ref series.Errors[(int)error]);
    }

    private Series For(ModelRef model, InferenceSource source) =>
        _series.GetOrAdd((model.Name, model.Version, source), static _ => new Series());

    /// <summary>Writes the metrics and the loaded models' info in Prometheus text format.</summary>
    public void WritePrometheus(StringBuilder text, IReadOnlyList<ModelStatus> models)
    {
        var series = _series.OrderBy(s => s.Key.Model, StringComparer.Ordinal).ThenBy(s => s.Key.Version, StringComparer.Ordinal).ThenBy(s => s.Key.Source).ToArray();
        Header(text, "edgefleet_inference_requests_total", "counter", "Inference requests, by model version and source (sensor: the agent's input; api: the local API).");
        foreach (var (key, s) in series)
            Line(text, "edgefleet_inference_requests_total", Labels(key), Volatile.Read(ref s.Requests));
        Header(text, "edgefleet_inference_errors_total", "counter", "Inference requests that failed, by error code.");
        foreach (var (key, s) in series)
        {
            for (var e = 0; e < s.Errors.Length; e++)
            {
                if (Volatile.Read(ref s.Errors[e]) is > 0 and var n)
                    Line(text, "edgefleet_inference_errors_total", Labels(key) + $",error=\"{ErrorName((InferenceError)e)}\"", n);
            }
        }
        Header(text, "edgefleet_inference_fallbacks_total", "counter", "Requests answered by the fallback model (counted under the fallback's version).");
        foreach (var (key, s) in series)
            Line(text, "edgefleet_inference_fallbacks_total", Labels(key), Volatile.Read(ref s.Fallbacks));
        Header(text, "edgefleet_inference_latency_seconds", "histogram", "Inference latency of successful requests.");
        foreach (var (key, s) in series)
        {
            var labels = Labels(key);
            long cumulative = 0;
            for (var b = 0; b < BoundsSeconds.Length; b++)
            {
                cumulative += Volatile.Read(ref s.Buckets[b]);
                Line(text, "edgefleet_inference_latency_seconds_bucket", labels + $",le=\"{BoundsSeconds[b].ToString(CultureInfo.InvariantCulture)}\"", cumulative);
            }
            cumulative += Volatile.Read(ref s.Buckets[^1]);
            Line(text, "edgefleet_inference_latency_seconds_bucket", labels + ",le=\"+Inf\"", cumulative);
            text.Append("edgefleet_inference_latency_seconds_sum{").Append(labels).Append("} ")
                .Append((Volatile.Read(ref s.SumMicros) / 1e6).ToString("R", CultureInfo.InvariantCulture)).Append('\n');
            Line(text, "edgefleet_inference_latency_seconds_count", labels, cumulative);
        }
        Header(text, "edgefleet_model_info", "gauge", "Loaded models: role (active or fallback), execution providers in use, and the circuit breaker's state.");
        foreach (var m in models)
        {
            Line(text, "edgefleet_model_info", $"model=\"{Escape(m.Name)}\",version=\"{Escape(m.Version)}\",role=\"{m.Role}\",execution_provider=\"{Escape(m.ExecutionProviders.Count > 0 ? m.ExecutionProviders[0] : "")}\",breaker=\"{m.Breaker}\"", 1);
        }
    }

    /// <summary>
    /// The process's memory as a field engineer needs it to tell a leak from a cache: resident set (from
    /// /proc), the managed heap (live after the last collection, committed), native memory outside it, and
    /// collections by generation. Plain names without labels (Prometheus's process_ and dotnet_ conventions).
    /// </summary>
    public static void WriteProcessMetrics(StringBuilder text)
    {
        var gc = GC.GetGCMemoryInfo();
        Header(text, "process_resident_memory_bytes", "gauge", "Resident set size of the agent process.");
        text.Append("process_resident_memory_bytes ").Append(ResidentBytes().ToString(CultureInfo.InvariantCulture)).Append('\n');
        Header(text, "process_io_write_bytes_total", "counter", "Bytes the agent caused to be written to storage (/proc/self/io write_bytes): the flash wear it causes.");
        text.Append("process_io_write_bytes_total ").Append(Health.ProcessIo.WrittenBytes().ToString(CultureInfo.InvariantCulture)).Append('\n');
        Header(text, "dotnet_gc_heap_size_bytes", "gauge", "Managed heap size after the last collection (live objects and fragmentation).");
        text.Append("dotnet_gc_heap_size_bytes ").Append(gc.HeapSizeBytes.ToString(CultureInfo.InvariantCulture)).Append('\n');
        Header(text, "dotnet_gc_committed_bytes", "gauge", "Memory the garbage collector has committed.");
        text.Append("dotnet_gc_committed_bytes ").Append(gc.TotalCommittedBytes.ToString(CultureInfo.InvariantCulture)).Append('\n');
        Header(text, "dotnet_gc_allocated_bytes_total", "counter", "Bytes allocated on the managed heap since start.");
        text.Append("dotnet_gc_allocated_bytes_total ").Append(GC.GetTotalAllocatedBytes().ToString(CultureInfo.InvariantCulture)).Append('\n');
        Header(text, "dotnet_gc_gen0_budget_bytes", "gauge", "The largest first-generation allocation budget the GC allows itself (the agent fixes it; by default it follows the CPU's cache).");
        text.Append("dotnet_gc_gen0_budget_bytes ").Append(Gen0Budget.Value.ToString(CultureInfo.InvariantCulture)).Append('\n');
        Header(text, "dotnet_gc_collections_total", "counter", "Garbage collections, by generation.");
        for (var g = 0; g <= GC.MaxGeneration; g++)
            Line(text, "dotnet_gc_collections_total", $"generation=\"{g}\"", GC.CollectionCount(g));
    }

    /// <summary>The GC's gen0 ceiling as it reports its settings (fixed at start: read once).</summary>
    private static readonly Lazy<long> Gen0Budget = new(() =>
        GC.GetConfigurationVariables().TryGetValue("GCGen0MaxBudget", out var value) ? Convert.ToInt64(value, CultureInfo.InvariantCulture) : 0);

    /// <summary>VmRSS from /proc/self/statm (pages); 0 where there is no procfs.</summary>
    private static long ResidentBytes()
    {
        try
        {
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }

    private static string Labels((string Model, string Version, InferenceSource Source) key) =>
        $"model=\"{Escape(key.Model)}\",version=\"{Escape(key.Version)}\",source=\"{(key.Source == InferenceSource.Api ? "api" : "sensor")}\"";

    internal static string ErrorName(InferenceError error) => error switch
    {
        InferenceError.ModelMissing => "model-missing",
        InferenceError.ModelLoadFailed => "model-load-failed",
        InferenceError.InputMismatch => "input-mismatch",
        _ => "run-failed",
    };

    private static void Header(StringBuilder text, string name, string type, string help) =>
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n').Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    private static void Line(StringBuilder text, string name, string labels, long value) =>
        text.Append(name).Append('{').Append(labels).Append("} ").Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');

    /// <summary>A label value escaped as the text format requires (backslash, quote, newline).</summary>
    internal static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private sealed class Series
    {
        public long Requests;
        public long Fallbacks;
        public long SumMicros;
        public readonly long[] Errors = new long[Enum.GetValues<InferenceError>().Length];
        public readonly long[] Buckets = new long[BoundsSeconds.Length + 1];
    }
}
