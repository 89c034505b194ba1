namespace EdgeFleet.Shared.IO;

/// <summary>Writes a file so that a crash or power loss leaves either the old content (or none) or the new, never a part.</summary>
public static class AtomicFile
{
    /// <param name="privateFile">Create the file readable by its owner only (0600), from its first byte.</param>
    /// <param name="replace">Replace a file already at the path; when false, an existing file is an <see cref="IOException"/>.</param>
    public static void Write(string path, ReadOnlySpan<byte> content, bool privateFile = false, bool replace = true) =>
        Write(FileSystem.Os, path, content, privateFile, replace);

    /// <summary>
    /// Written whole and synced under a temporary name, renamed into place, then the directory synced: the
    /// rename can reach the disk only after the data it names, and is itself durable when this returns.
    /// </summary>
    public static void Write(FileSystem files, string path, ReadOnlySpan<byte> content, bool privateFile = false, bool replace = true)
    {
        if (!replace && files.Exists(path))
            throw new IOException($"{path} already exists and is never overwritten");
        var temp = path + ".tmp";
        files.Delete(temp); // the leftover of a write a crash interrupted
        using (var stream = files.Create(temp, privateFile))
        {
            stream.Write(content);
            stream.Sync();
        }
        files.Rename(temp, path, overwrite: replace);
        files.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Makes a rename or a new file's name durable: on Linux the directory entry needs its own fsync.</summary>
    public static void FsyncDirectory(string directory) => FileSystem.Os.SyncDirectory(directory);
}
