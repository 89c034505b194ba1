using Microsoft.ML.OnnxRuntime;

namespace EdgeFleet.Agent.Profiles;

/// <summary>A provider the profile asked for that this device could not use, and why.</summary>
public sealed record ProviderFallback(string Provider, string Reason);

/// <summary>What a session ended up with: the providers it runs on, in priority order, and the ones it fell past.</summary>
public sealed record ProviderChoice(IReadOnlyList<string> Providers, IReadOnlyList<ProviderFallback> Fallbacks);

/// <summary>
/// Builds an ONNX Runtime session on a profile's execution providers in priority order. A provider that this
/// build of ONNX Runtime lacks, or whose library or device is missing, fails either when it is added or when
/// the session is created; either way it is dropped with its reason and the next one is tried, ending at the
/// CPU, which always works. Each fallback is reported once per process (<see cref="FirstSeen"/>).
/// </summary>
public static class ExecutionProviders
{
    private static readonly HashSet<string> Reported = [];
    private static readonly Lock ReportedLock = new();

    public static (InferenceSession Session, ProviderChoice Choice) CreateSession(string modelPath, HardwareProfile profile, Func<SessionOptions> baseOptions)
    {
        var fallbacks = new List<ProviderFallback>();
        var candidates = profile.ExecutionProviders.Where(p => p.Name != "CPU").ToList();
        while (true)
        {
            var options = baseOptions();
            var appended = new List<string>();
            try
            {
                foreach (var provider in candidates.ToList())
                {
                    try
                    {
                        Append(options, provider);
                        appended.Add(provider.Name);
                    }
                    catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException or NotSupportedException or ArgumentException)
                    {
                        fallbacks.Add(new ProviderFallback(provider.Name, FirstLine(e.Message)));
                        candidates.Remove(provider);
                    }
                }
                try
                {
                    var session = new InferenceSession(modelPath, options);
                    return (session, new ProviderChoice([.. appended, "CPU"], fallbacks));
                }
                catch (OnnxRuntimeException e) when (appended.Count > 0)
                {
                    // The session failed with accelerators added: blame the first one, drop it, and try again.
                    fallbacks.Add(new ProviderFallback(appended[0], $"session creation failed: {FirstLine(e.Message)}"));
                    candidates.RemoveAll(c => c.Name == appended[0]);
                }
            }
            finally
            {
                options.Dispose();
            }
        }
    }

    /// <summary>The fallbacks not reported before in this process (so logs say each once).</summary>
    public static IReadOnlyList<ProviderFallback> FirstSeen(IEnumerable<ProviderFallback> fallbacks)
    {
        lock (ReportedLock)
            return [.. fallbacks.Where(f => Reported.Add($"{f.Provider}\n{f.Reason}"))];
    }

    private static void Append(SessionOptions options, ExecutionProviderSpec provider)
    {
        switch (provider.Name)
        {
            case "CUDA":
                using (var cuda = new OrtCUDAProviderOptions())
                {
                    cuda.UpdateOptions(provider.Options);
                    options.AppendExecutionProvider_CUDA(cuda);
                }
                break;
            case "TensorRT":
                using (var trt = new OrtTensorRTProviderOptions())
                {
                    trt.UpdateOptions(provider.Options);
                    options.AppendExecutionProvider_Tensorrt(trt);
                }
                break;
            default:
                options.AppendExecutionProvider(provider.Name, provider.Options);
                break;
        }
    }

    private static string FirstLine(string message) => message.Split('\n')[0].Trim();
}
