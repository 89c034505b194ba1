using System.Runtime.InteropServices;

namespace EdgeFleet.Shared.IO;

/// <summary>A file opened for reading and writing: a stream plus the fsync that makes what was written durable.</summary>
public abstract class StorageStream : Stream
{
    /// <summary>fsync: everything written so far survives power loss once this returns.</summary>
    public abstract void Sync();
}

/// <summary>
/// The file operations whose order decides what a power cut leaves: data written but not synced may be lost,
/// torn or reordered, and a new name, a rename or a delete is durable only once its directory is synced. Code
/// that must survive power loss writes through this, so that tests can put a power-cut simulator under it;
/// <see cref="Os"/> is the real one.
/// </summary>
public abstract class FileSystem
{
    public static FileSystem Os { get; } = new OsFileSystem();

    public abstract bool Exists(string path);

    public abstract byte[] ReadAll(string path);

    /// <summary>Opens an existing file for reading, others reading it too; <see cref="FileNotFoundException"/> when missing.</summary>
    public abstract Stream OpenRead(string path);

    /// <summary>Opens a file for reading and writing, creating it when missing, locked against a second opener.</summary>
    public abstract StorageStream Open(string path);

    /// <summary>Creates a new file; fails when one exists. <paramref name="privateFile"/>: mode 0600 from its first byte.</summary>
    public abstract StorageStream Create(string path, bool privateFile);

    /// <summary>Removes a file; nothing when it is missing.</summary>
    public abstract void Delete(string path);

    /// <summary>Gives <paramref name="from"/> the name <paramref name="to"/>, atomically replacing it when <paramref name="overwrite"/>.</summary>
    public abstract void Rename(string from, string to, bool overwrite);

    /// <summary>fsync of a directory: names created, renamed or removed in it survive power loss once this returns.</summary>
    public abstract void SyncDirectory(string directory);
}

/// <summary>The operating system's files.</summary>
internal sealed partial class OsFileSystem : FileSystem
{
    public override bool Exists(string path) => File.Exists(path);

    public override byte[] ReadAll(string path) => File.ReadAllBytes(path);

    public override Stream OpenRead(string path) =>
        new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);

    /// <summary>FileShare.None takes an exclusive advisory lock: a second agent on the same state directory fails to open.</summary>
    public override StorageStream Open(string path) =>
        new OsStorageFile(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 1, FileOptions.RandomAccess));

    public override StorageStream Create(string path, bool privateFile)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 0 };
        if (privateFile && !OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        return new OsStorageFile(new FileStream(path, options));
    }

    public override void Delete(string path) => File.Delete(path);

    public override void Rename(string from, string to, bool overwrite) => File.Move(from, to, overwrite);

    public override void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux())
            return;
        // O_RDONLY alone: Linux opens a directory read-only without O_DIRECTORY, whose value differs between
        // x86-64 (0x10000) and arm64 (0x4000); the x86-64 value made this fail with EINVAL on arm64.
        const int ReadOnly = 0;
        var fd = OpenFd(directory, ReadOnly);
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
    private static partial int OpenFd(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    private sealed class OsStorageFile(FileStream file) : StorageStream
    {
        public override bool CanRead => file.CanRead;

        public override bool CanSeek => true;

        public override bool CanWrite => true;

        public override long Length => file.Length;

        public override long Position
        {
            get => file.Position;
            set => file.Position = value;
        }

        public override void Sync() => file.Flush(flushToDisk: true);

        public override void Flush() => file.Flush();

        public override int Read(byte[] buffer, int offset, int count) => file.Read(buffer, offset, count);

        public override long Seek(long offset, SeekOrigin origin) => file.Seek(offset, origin);

        public override void SetLength(long value) => file.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => file.Write(buffer, offset, count);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                file.Dispose();
            base.Dispose(disposing);
        }
    }
}
