using System.Diagnostics;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>
/// Group commit: the committer thread takes one queued group at a time when it is due (see
/// <see cref="TakeDueGroup"/>), checks the disk, plans evictions, writes the group's segments, the segments
/// that acknowledgements and evictions changed since the last commit, and the meta document in one
/// transaction, fsyncs the log, and only then updates the index and completes the group's appends.
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
                if (!TakeDueGroup(out group))
                    return;
            }
            long first;
            try
            {
                first = Commit(group);
            }
            catch (Exception e)
            {
                group.Done.SetException(e is TelemetryBufferException ? e
                    : new TelemetryBufferException(TelemetryBufferError.Unavailable, $"telemetry buffer could not commit: {e.Message}", e));
                // A posted record's producer does not wait for it: the refusal is counted and logged instead.
                _ = group.Done.Task.Exception;
                continue;
            }
            group.Done.SetResult(first);
            if (group.Items.Count == 0)
                continue;
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

    /// <summary>
    /// Waits (under the queue lock) until the oldest group is due: sealed because a newer one started, holding
    /// a high or critical record, flushed, open for the whole commit window, or the buffer stopping. False
    /// once stopped with nothing left.
    /// </summary>
    private bool TakeDueGroup(out Group group)
    {
        while (true)
        {
            if (_groups.Count == 0)
            {
                if (_stopping)
                {
                    group = null!;
                    return false;
                }
                Monitor.Wait(_queueLock);
                continue;
            }
            var head = _groups.Peek();
            if (_stopping || head.Urgent || !ReferenceEquals(head, _open))
                break;
            var wait = head.OpenedAt + _windowTicks - Stopwatch.GetTimestamp();
            if (wait <= 0)
                break;
            Monitor.Wait(_queueLock, TimeSpan.FromSeconds(wait / (double)Stopwatch.Frequency) + TimeSpan.FromMilliseconds(1));
        }
        group = _groups.Dequeue();
        _queuedRecords -= group.Items.Count;
        if (ReferenceEquals(group, _open))
            _open = null;
        return true;
    }

    private long Commit(Group group)
    {
        lock (_dbLock)
        {
            try
            {
                EnsureOpen();
                if (group.Items.Count == 0)
                {
                    WritePending();
                    return _lastSeq + 1;
                }
                CheckDiskSpace(group);
            }
            catch (TelemetryBufferException e)
            {
                if (group.Items.Count > 0)
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
            var (appends, inserts) = PlanSegments(Segment(records));
            // Out of the index before the write; should the write fail, the reopen rebuilds the index from the file.
            Drop(victims);
            foreach (var (tail, _, _) in appends)
                _dirtySegments.Remove(tail);
            try
            {
                Transact(() =>
                {
                    WriteDirtySegments();
                    foreach (var (id, cls, members) in inserts)
                        InsertSegment(id, cls, members);
                    foreach (var (tail, _, members) in appends)
                        AppendToSegment(tail, members);
                    WriteMeta(last, _ackedSeq, evictions);
                });
            }
            catch (TelemetryBufferException e)
            {
                NoteRefusal(group, e);
                throw;
            }
            _store!.Sync();
            _dirtySegments.Clear();
            _metaDirty = false;

            foreach (var (id, cls, members) in inserts.Concat(appends))
            {
                foreach (var r in members)
                    _index.Add(r.Seq, new RecordMeta(id, r.TsMillis, r.Kind, cls, r.Size));
                _tails[cls] = id;
                _tailBytes[cls] = (appends.Any(a => a.Id == id) ? _tailBytes[cls] : 0) + members.Sum(r => r.Size);
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

    /// <summary>
    /// Which new segments go into their class's tail segment instead: a small commit (an idle device's
    /// window) rewrites the page of the segment before it rather than allocating an index entry and a page
    /// while the acknowledged segment before it frees one, which would write twice the pages per commit.
    /// </summary>
    private (List<(long Id, int Class, List<StoredRecord> Members)> Appends, List<(long Id, int Class, List<StoredRecord> Members)> Inserts) PlanSegments(
        List<(long Id, int Class, List<StoredRecord> Members)> segments)
    {
        var appends = new List<(long, int, List<StoredRecord>)>();
        var inserts = new List<(long, int, List<StoredRecord>)>();
        foreach (var (id, cls, members) in segments)
        {
            var bytes = members.Sum(r => r.Size);
            if (_tails[cls] is { } tail && segments.Count(s => s.Class == cls) == 1
                && _index.LiveIn(tail) + members.Count <= MaxSegmentRecords && _tailBytes[cls] + bytes <= TailSegmentBytes)
                appends.Add((tail, cls, members));
            else
                inserts.Add((id, cls, members));
        }
        return (appends, inserts);
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

    private sealed class Group(long openedAt)
    {
        /// <summary>Stopwatch timestamp (monotonic: a clock step does not stretch or cut the window).</summary>
        public long OpenedAt { get; } = openedAt;

        /// <summary>Commit without waiting for the window.</summary>
        public bool Urgent { get; set; }

        public List<Pending> Items { get; } = [];

        public long Bytes { get; set; }

        public TaskCompletionSource<long> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
