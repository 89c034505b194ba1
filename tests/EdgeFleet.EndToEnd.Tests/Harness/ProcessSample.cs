using System.Globalization;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>One reading of a process and its data directory, from <c>/proc</c> and the file system.</summary>
public sealed record ProcessSample(TimeSpan At, long RssBytes, int OpenFiles, long WrittenBytes, long DiskBytes)
{
    public static ProcessSample Take(int pid, string directory, TimeSpan at) => new(at, Rss(pid), CountFiles(pid), Written(pid), DiskUse(directory));

    /// <summary>VmRSS from <c>/proc/{pid}/status</c>.</summary>
    private static long Rss(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    private static int CountFiles(int pid) => Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;

    /// <summary>write_bytes from <c>/proc/{pid}/io</c> (0 where the kernel does not account I/O).</summary>
    private static long Written(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/io").FirstOrDefault(l => l.StartsWith("write_bytes:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    private static long DiskUse(string directory) =>
        new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f =>
        {
            try
            {
                return f.Length;
            }
            catch (FileNotFoundException)
            {
                return 0; // a temporary file gone between listing and reading
            }
        });
}
