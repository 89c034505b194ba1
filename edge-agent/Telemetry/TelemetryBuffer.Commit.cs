using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>
/// Group commit: the committer thread takes one queued group at a time, checks the disk, plans evictions,
/// writes the group's segments and the meta document in one transaction, fsyncs the log, and only then
/// updates the index and completes the group's appends.
/// </summary>
public sealed partial class TelemetryBuffer
{
    private void CommitLoop()
    {
        while (true)
        {
            Group group;
            lock (_queueLock)
            {
                while (_groups.Count == 0 && !_stopping)
                    Monitor.Wait(_queueLock);
                if (_groups.Count == 0)
                    return;
                group = _groups.Dequeue();
                if (ReferenceEquals(group, _open))
                    _open = null;
            }
            try
            {
                group.Done.SetResult(Commit(group));
            }
            catch (Exception e)
            {
                group.Done.SetException(e is TelemetryBufferException ? e
                    : new TelemetryBufferException(TelemetryBufferError.Unavailable, $"telemetry buffer could not commit: {e.Message}", e));
                continue;
            }
            try
            {
                Committed?.Invoke();
            }
            catch (ObjectDisposedException)
            {
                // A listener shut down before the buffer; the commit itself stands.
            }
        }
    }

    private long Commit(Group group)
    {
        lock (_dbLock)
        {
            try
            {
                EnsureOpen();
                CheckDiskSpace(group);
            }
            catch (TelemetryBufferException e)
            {
                NoteRefusal(group, e);
                throw;
            }

            var victims = _index.PlanEviction(group.Items.Count, group.Bytes, _config.MaxBufferRecords, _config.MaxBufferBytes);
            var first = _lastSeq + 1;
            var records = new List<StoredRecord>(group.Items.Count);
            for (var i = 0; i < group.Items.Count; i++)
            {
                var p = group.Items[i];
                records.Add(new StoredRecord(first + i, p.TsMillis, p.Kind, p.Priority, p.Body));
            }
            var last = first + records.Count - 1;
            var evictions = victims.Count > 0 ? _evictions.Add(victims.Select(MetaOf), expired: false) : _evictions;
            var segments = Segment(records);
            try
            {
                Transact(() =>
                {
                    RemoveDocuments(victims);
                    foreach (var (id, cls, members) in segments)
                        InsertSegment(id, cls, members);
                    WriteMeta(last, _ackedSeq, evictions);
                });
            }
            catch (TelemetryBufferException e)
            {
                NoteRefusal(group, e);
                throw;
            }
            _logFile!.Sync();

            foreach (var seq in victims)
                _index.Remove(seq);
            foreach (var (id, cls, members) in segments)
            {
                foreach (var r in members)
                    _index.Add(r.Seq, new RecordMeta(id, r.TsMillis, r.Kind, cls, r.Size));
            }
            _lastSeq = last;
            _evictions = evictions;
            if (victims.Count > 0)
                LogEvicted(victims.Count, "the buffer is full");
            Log.CommittedGroup(_log, first, last);
            if (_refused > 0)
                ReportRefusals();
            return first;
        }
    }

    /// <summary>Counts refused records; the first refusal of a run is logged, the count is reported on recovery.</summary>
    private void NoteRefusal(Group group, TelemetryBufferException e)
    {
        if (_refused == 0)
        {
            _refusedSince = _time.GetUtcNow();
            Log.Refusing(_log, e.Message);
        }
        _refused += group.Items.Count;
    }

    private void CheckDiskSpace(Group group)
    {
        var free = new DriveInfo(Path.GetDirectoryName(_path)!).AvailableFreeSpace;
        // A commit writes each page to the log and later to the data file: reserve twice what it adds.
        var needed = _config.MinFreeDiskBytes + (2 * group.Bytes);
        if (free < needed)
            throw new TelemetryBufferException(TelemetryBufferError.DiskFull,
                $"disk full: {free / 1024} KiB free in {Path.GetDirectoryName(_path)}, telemetry keeps {_config.MinFreeDiskBytes / 1024} KiB in reserve; {group.Items.Count} records not accepted");
    }

    private void ReportRefusals()
    {
        var refused = _refused;
        var since = _refusedSince;
        _refused = 0;
        Log.Accepting(_log, refused, since);
        var alarm = new TelemetryRecord
        {
            Ts = _time.GetUtcNow(),
            Kind = TelemetryKind.Alarm,
            Message = $"telemetry buffer refused {refused} records from {since:O} until now: not enough disk space",
        };
        // Queued behind this group; not awaited here, the committer is the one who will write it.
        _ = AppendAsync(alarm).ContinueWith(t => Log.AlarmLost(_log, t.Exception!.GetBaseException().Message), CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
    }

    /// <summary>Splits a group into segments: one class each, at most <see cref="MaxSegmentRecords"/> records.</summary>
    private static List<(long Id, int Class, List<StoredRecord> Members)> Segment(List<StoredRecord> records)
    {
        var segments = new List<(long, int, List<StoredRecord>)>();
        foreach (var byClass in records.GroupBy(r => TelemetryPolicy.ClassOf(r.Kind, r.Priority)))
        {
            foreach (var chunk in byClass.Chunk(MaxSegmentRecords))
                segments.Add((chunk[0].Seq, byClass.Key, chunk.ToList()));
        }
        return segments;
    }

    private readonly record struct Pending(long TsMillis, TelemetryKind Kind, TelemetryPriority Priority, byte[] Body)
    {
        public int Size => Body.Length + SegmentCodec.HeaderBytes;
    }

    private sealed class Group
    {
        public List<Pending> Items { get; } = [];

        public long Bytes { get; set; }

        public TaskCompletionSource<long> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
