namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>
/// A wrong wall clock for one process, through libfaketime (Debian's <c>faketime</c>, installed by the test
/// script): the process's <c>clock_gettime(CLOCK_REALTIME)</c> starts where <see cref="Set"/> says and ticks
/// on; its monotonic clock stays real, as on a device whose RTC is wrong. The spec is read from a file, so a
/// test can step the clock while the process runs (<c>+0</c>, <c>-3h</c>, <c>@1970-01-01 00:00:00</c>).
/// </summary>
public sealed class FakeClock
{
    private readonly string _file;

    public FakeClock(string directory, string spec)
    {
        _file = Path.Combine(directory, "faketime-" + Guid.NewGuid().ToString("N")[..8]);
        Set(spec);
    }

    /// <summary>libfaketime's shared library, or null where it is not installed.</summary>
    public static string? Library { get; } = new[] { "/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime" }
        .Select(d => Path.Combine(d, "libfaketime.so.1")).FirstOrDefault(File.Exists);

    /// <summary>Takes effect in the process within a second (libfaketime rereads the file that often).</summary>
    public void Set(string spec) => File.WriteAllText(_file, spec + "\n");

    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["LD_PRELOAD"] = Library ?? throw new InvalidOperationException("libfaketime is not installed (apt-get install faketime)"),
        ["FAKETIME_TIMESTAMP_FILE"] = _file,
        ["FAKETIME_CACHE_DURATION"] = "1",
        // The monotonic clock stays real (timers, timeouts), and libfaketime leaves pthread waits alone:
        // without these .NET's Thread.Sleep returned at once.
        ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1",
        ["FAKETIME_FORCE_MONOTONIC_FIX"] = "0",
    };
}
