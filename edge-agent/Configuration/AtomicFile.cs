using System.Runtime.InteropServices;

namespace EdgeFleet.Agent.Configuration;

/// <summary>Replaces a file so that a crash or power loss leaves either the old or the new content.</summary>
public static partial class AtomicFile
{
    /// <param name="privateFile">Create the file readable by its owner only (0600), from its first byte.</param>
    public static void Write(string path, ReadOnlySpan<byte> content, bool privateFile = false)
    {
        var temp = path + ".tmp";
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (privateFile && !OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var stream = new FileStream(temp, options))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Forces a file's written data to stable storage, whoever wrote it (fsync covers the inode).</summary>
    public static void FsyncFile(string path)
    {
        if (!OperatingSystem.IsLinux() || !File.Exists(path))
            return;
        const int ReadOnly = 0;
        var fd = Open(path, ReadOnly);
        if (fd < 0)
            throw new IOException($"cannot open {path} to fsync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0)
                throw new IOException($"fsync of {path} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>Makes a rename durable: on Linux the directory entry needs its own fsync.</summary>
    public static void FsyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux())
            return;
        // O_RDONLY alone: Linux opens a directory read-only without O_DIRECTORY, whose value differs between
        // x86-64 (0x10000) and arm64 (0x4000); the x86-64 value made this fail with EINVAL on arm64.
        const int ReadOnly = 0;
        var fd = Open(directory, ReadOnly);
        if (fd < 0)
            throw new IOException($"cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0)
                throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
