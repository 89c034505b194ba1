namespace EdgeFleet.Shared.IO;

/// <summary>
/// A file stream for LiteDB that can be made durable on demand. LiteDB 5 only ever asks for a plain
/// flush (LiteDB issue #2818), so a commit reaches the OS cache but not the disk. This stream lets the
/// owner decide: the log file's <see cref="Flush"/> hands data to the OS, and <see cref="Sync"/> (called
/// once per group commit) forces it to stable storage; the data file syncs on every flush, which LiteDB
/// only issues in a checkpoint, before it truncates the log.
///
/// <para><b>The confirm barrier (log file).</b> LiteDB writes a transaction's pages to the end of its log
/// and marks the last one confirmed (page header byte 18 in LiteDB 5.0.20; a test checks it); on open it applies every confirmed transaction.
/// A power cut may leave any subset of unsynced writes on disk, torn at sector granularity: the confirmed
/// page could land while a page before it did not, and a half-written transaction would be applied over
/// data that was durable. So a confirmed page is written unconfirmed first, the log is synced, and only
/// then the single confirm byte is written (one byte cannot be torn): a transaction is confirmed on disk
/// only once all its pages are. It costs a second fsync per commit, no extra page.</para>
/// </summary>
public sealed class DurableFileStream(StorageStream file, bool syncOnFlush, bool confirmBarrier) : Stream
{
    /// <summary>LiteDB 5's page size and the offset of <c>IsConfirmed</c> in its page header (BasePage.P_IS_CONFIRMED in 5.0.20).</summary>
    public const int PageSize = 8192;
    public const int ConfirmedOffset = 18;

    private readonly object _gate = new();

    /// <summary>LiteDB's own name for a database's log file, so the log LiteDB left when it opened the file by path is recovered.</summary>
    public static string LogPathOf(string dataPath) =>
        Path.Combine(Path.GetDirectoryName(dataPath)!, Path.GetFileNameWithoutExtension(dataPath) + "-log" + Path.GetExtension(dataPath));
    private long _confirmed;
    private Exception? _failed;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => true;

    public override long Length => file.Length;

    public override long Position
    {
        get => file.Position;
        set => file.Position = value;
    }

    /// <summary>Transactions whose confirm page has been written (log file).</summary>
    public long Confirmed
    {
        get
        {
            lock (_gate)
                return _confirmed;
        }
    }

    /// <summary>
    /// Waits until <paramref name="count"/> transactions are confirmed in the file. Throws the write's own
    /// error when LiteDB's writer failed, and <see cref="TimeoutException"/> when nothing came in time.
    /// </summary>
    public void WaitConfirmed(long count, TimeSpan timeout)
    {
        // Monotonic: a device whose clock steps (boot at 1970, NTP catching up) must not time out at once or never.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        lock (_gate)
        {
            while (_confirmed < count)
            {
                if (_failed is not null)
                    throw new IOException($"the log write failed: {_failed.Message}", _failed);
                var left = timeout - System.Diagnostics.Stopwatch.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                    throw new TimeoutException($"LiteDB's writer did not write the transaction's log pages within {timeout.TotalSeconds:F0} s");
                Monitor.Wait(_gate, left);
            }
        }
    }

    public override void Flush()
    {
        if (syncOnFlush)
            file.Sync();
        else
            file.Flush();
    }

    /// <summary>fsync: everything written so far survives power loss once this returns.</summary>
    public void Sync() => file.Sync();

    public override int Read(byte[] buffer, int offset, int count) => file.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => file.Read(buffer);

    public override long Seek(long offset, SeekOrigin origin) => file.Seek(offset, origin);

    public override void SetLength(long value) => file.SetLength(value);

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        try
        {
            if (buffer.Length != PageSize || buffer[ConfirmedOffset] != 1)
            {
                file.Write(buffer);
                return;
            }
            if (confirmBarrier)
            {
                var at = file.Position;
                var unconfirmed = buffer.ToArray();
                unconfirmed[ConfirmedOffset] = 0;
                file.Write(unconfirmed);
                file.Sync();
                file.Position = at + ConfirmedOffset;
                file.Write([1]);
                file.Position = at + PageSize;
            }
            else
            {
                file.Write(buffer);
            }
            lock (_gate)
            {
                _confirmed++;
                Monitor.PulseAll(_gate);
            }
        }
        catch (Exception e)
        {
            lock (_gate)
            {
                _failed = e;
                Monitor.PulseAll(_gate);
            }
            throw;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            file.Dispose();
        base.Dispose(disposing);
    }
}
