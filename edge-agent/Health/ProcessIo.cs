using System.Globalization;

namespace EdgeFleet.Agent.Health;

/// <summary>The agent's own storage writes, as the kernel counts them.</summary>
public static class ProcessIo
{
    /// <summary>
    /// write_bytes from <c>/proc/self/io</c>: bytes this process caused to be written to storage, counted when
    /// a page is dirtied (so rewriting a page before it reaches the disk counts once). 0 where there is no
    /// procfs or no I/O accounting.
    /// </summary>
    public static long WrittenBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/io"))
            {
                if (line.StartsWith("write_bytes:", StringComparison.Ordinal))
                    return long.Parse(line.AsSpan("write_bytes:".Length).Trim(), CultureInfo.InvariantCulture);
            }
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return 0;
        }
    }
}
