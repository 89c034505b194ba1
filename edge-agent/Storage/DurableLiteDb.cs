using EdgeFleet.Shared.IO;
using LiteDB;

namespace EdgeFleet.Agent.Storage;

/// <summary>
/// A LiteDB database whose commits survive power loss: its data and log files go through
/// <see cref="DurableFileStream"/> (the data file syncs on every flush, which LiteDB issues only in a checkpoint
/// before it truncates the log; the log's confirm pages are written behind a sync barrier), and a commit is
/// durable once <see cref="Transact"/> and then <see cref="Sync"/> return. Plain LiteDB 5 never fsyncs, and its
/// checkpoint truncates the log while the data file's copy may still be in the page cache: a power cut then
/// loses the commit or tears the data file's pages.
/// </summary>
internal sealed class DurableLiteDb : IDisposable
{
    private static readonly TimeSpan LogWriteTimeout = TimeSpan.FromSeconds(60);

    private readonly DurableFileStream _dataFile;
    private readonly DurableFileStream _logFile;

    /// <param name="path">The data file; the log is <see cref="DurableFileStream.LogPathOf"/> beside it.</param>
    /// <param name="files">Where the files are (tests pass a power-cut simulator).</param>
    /// <param name="checkpointPages">Pages in the log before LiteDB copies them into the data file.</param>
    public DurableLiteDb(string path, FileSystem files, int checkpointPages)
    {
        _dataFile = new DurableFileStream(files.Open(path), syncOnFlush: true, confirmBarrier: false);
        try
        {
            _logFile = new DurableFileStream(files.Open(DurableFileStream.LogPathOf(path)), syncOnFlush: false, confirmBarrier: true);
        }
        catch
        {
            _dataFile.Dispose();
            throw;
        }
        try
        {
            // The files may have just been created: make their directory entries durable too.
            files.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            Db = new LiteDatabase(_dataFile, mapper: null, logStream: _logFile) { CheckpointSize = checkpointPages };
            // Setting a pragma is a transaction of LiteDB's own, written by its writer thread; a checkpoint waits
            // for that writer, so from here on every confirm page in the log is one of ours (see Transact).
            Db.Checkpoint();
        }
        catch
        {
            Db?.Dispose();
            _dataFile.Dispose();
            _logFile.Dispose();
            throw;
        }
    }

    public LiteDatabase Db { get; }

    /// <summary>
    /// One transaction, returning once LiteDB's writer has put all its pages in the log (not yet synced: call
    /// <see cref="Sync"/>). <paramref name="write"/> must change at least one document, so that the transaction
    /// has a confirm page to wait for. On failure the transaction is rolled back and the error rethrown; LiteDB's
    /// state is then unknown and the caller reopens from the files.
    /// </summary>
    public void Transact(Action write)
    {
        var confirmed = _logFile.Confirmed;
        Db.BeginTrans();
        try
        {
            write();
            Db.Commit();
            _logFile.WaitConfirmed(confirmed + 1, LogWriteTimeout);
        }
        catch (Exception)
        {
            try
            {
                Db.Rollback();
            }
            catch (Exception)
            {
                // The original failure is what matters; reopening recovers the file.
            }
            throw;
        }
    }

    /// <summary>fsync of the log: every transaction written so far survives power loss once this returns.</summary>
    public void Sync() => _logFile.Sync();

    public void Dispose()
    {
        try
        {
            Db.Dispose();
        }
        catch (Exception e) when (e is IOException or LiteException)
        {
            // Closing checkpoints; on a full disk that fails and the log is replayed on the next open instead.
        }
        _dataFile.Dispose();
        _logFile.Dispose();
    }
}
