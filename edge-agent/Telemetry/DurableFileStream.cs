namespace EdgeFleet.Agent.Telemetry;

/// <summary>
/// A file stream for LiteDB that can be made durable on demand. LiteDB 5 only ever asks for a plain
/// flush (LiteDB issue #2818), so a commit reaches the OS cache but not the disk. This stream lets the
/// owner decide: the log file's <see cref="Flush"/> hands data to the OS, and <see cref="Sync"/> (called
/// once per group commit) forces it to stable storage; the data file syncs on every flush, which LiteDB
/// only issues in a checkpoint, before it truncates the log.
/// </summary>
internal sealed class DurableFileStream(string path, bool syncOnFlush) : Stream
{
    // FileShare.None takes an exclusive advisory lock: a second agent on the same state directory fails to open.
    private readonly FileStream _file = new(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 1, FileOptions.RandomAccess);

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => true;

    public override long Length => _file.Length;

    public override long Position
    {
        get => _file.Position;
        set => _file.Position = value;
    }

    public override void Flush() => _file.Flush(syncOnFlush);

    /// <summary>fsync: everything written so far survives power loss once this returns.</summary>
    public void Sync() => _file.Flush(flushToDisk: true);

    public override int Read(byte[] buffer, int offset, int count) => _file.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => _file.Read(buffer);

    public override long Seek(long offset, SeekOrigin origin) => _file.Seek(offset, origin);

    public override void SetLength(long value) => _file.SetLength(value);

    public override void Write(byte[] buffer, int offset, int count) => _file.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => _file.Write(buffer);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _file.Dispose();
        base.Dispose(disposing);
    }
}
