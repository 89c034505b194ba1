using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Storage;
using EdgeFleet.Shared.IO;
using EdgeFleet.Shared.Wire;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Agent.Telemetry;

/// <summary>A batch ready to send: records in ascending sequence order, each body without its sequence number.</summary>
public sealed record OutgoingBatch(IReadOnlyList<(long Seq, ReadOnlyMemory<byte> Body)> Records, long PendingFrom, long Bytes);

/// <summary>
/// The store-and-forward queue of telemetry: a LiteDB file under the state directory.
///
/// <para><b>What "accepted" promises.</b> When <see cref="AppendAsync"/> completes with a sequence number,
/// the record is in the LiteDB log and that log has been fsync'd: it survives kill -9, a crash of the
/// operating system and power loss (on storage that honours fsync). It stays until the fleet acknowledges
/// that it stored it, or until the buffer evicts it by policy (full, or older than its kind's time to live);
/// evictions are counted and reported. A record that fails to append (<see cref="TelemetryBufferException"/>)
/// was not accepted and is not in the buffer. A posted record (<see cref="PostAsync"/>) is accepted the same
/// way once its group commits; until then a power cut or kill -9 loses it.</para>
///
/// <para><b>Group commit and the commit window.</b> Appends queue into the open group; one committer thread
/// writes a whole group in one LiteDB transaction followed by one fsync, while the next group fills. A group
/// of low and normal records waits up to <c>telemetry.commitWindowSeconds</c>; a high or critical record
/// makes it due at once. Every commit writes whole pages to flash, so fewer, fuller commits are what keeps
/// an idle device's wear near its records' own size. Records of one class in a group share a segment
/// document, so the per-record cost is small; acknowledgements and evictions are written by the next commit.</para>
///
/// <para><b>Bounds.</b> Record and byte limits; the lowest class (<see cref="TelemetryPolicy"/>), oldest
/// first, makes room. When the file system falls below the free-space reserve, appends fail with
/// <see cref="TelemetryBufferError.DiskFull"/> and succeed again once space returns; the number refused is
/// then reported as an alarm.</para>
/// </summary>
public sealed partial class TelemetryBuffer : IDisposable
{
    private const int MaxSegmentRecords = 512;

    /// <summary>A tail segment takes small commits until it holds this many packed bytes (a few KiB compressed, one page).</summary>
    private const int TailSegmentBytes = 24 * 1024;

    /// <summary>Records queued for a commit beyond which <see cref="PostAsync"/> waits.</summary>
    public const int MaxQueuedRecords = 65_536;

    private readonly TelemetryConfig _config;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly string _path;
    private readonly object _queueLock = new();
    private readonly Lock _dbLock = new();
    private readonly Queue<Group> _groups = new();
    private readonly Thread _committer;
    private readonly int _maxGroupRecords;
    private readonly long _maxGroupBytes;
    private readonly long _windowTicks;
    private readonly FileSystem _files;
    private Group? _open;
    private Group? _last;
    private long _queuedRecords;
    private bool _stopping;
    private long _refused;
    private long _evictedSinceLog;
    private DateTimeOffset _evictionLoggedAt;
    private DateTimeOffset _refusedSince;

    public TelemetryBuffer(string path, TelemetryConfig config, TimeProvider time, ILogger? log = null)
        : this(path, config, time, log, FileSystem.Os)
    {
    }

    /// <summary>With its files in <paramref name="files"/> (tests simulate power cuts with it).</summary>
    internal TelemetryBuffer(string path, TelemetryConfig config, TimeProvider time, ILogger? log, FileSystem files)
    {
        _files = files;
        _path = Path.GetFullPath(path);
        _config = config;
        _time = time;
        _log = log ?? NullLogger.Instance;
        // A group makes room for itself when the buffer is full, lowest class first among the records already
        // there: a group of a sixteenth of the buffer at most, so that a window of low records evicts older
        // low records and never reaches a higher class while low ones are left.
        _maxGroupRecords = (int)Math.Clamp(config.MaxBufferRecords / 16, 1, 4096);
        _maxGroupBytes = Math.Clamp(config.MaxBufferBytes / 16, 1, 4 * 1024 * 1024);
        _windowTicks = (long)(config.CommitWindowSeconds * Stopwatch.Frequency);
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        Open();
        Log.Opened(_log, _path, StreamId, _index.Count, _index.Bytes, _lastSeq);
        _committer = new Thread(CommitLoop) { IsBackground = true, Name = "telemetry-commit" };
        _committer.Start();
    }

    /// <summary>Random id of this buffer file; a wiped device starts a new stream at sequence 1.</summary>
    public string StreamId { get; private set; } = "";

    public long LastSeq
    {
        get
        {
            lock (_dbLock)
                return _lastSeq;
        }
    }

    /// <summary>The fleet's watermark: nothing at or below it is outstanding.</summary>
    public long AckedSeq
    {
        get
        {
            lock (_dbLock)
                return _ackedSeq;
        }
    }

    public long Count
    {
        get
        {
            lock (_dbLock)
                return _index.Count;
        }
    }

    public long Bytes
    {
        get
        {
            lock (_dbLock)
                return _index.Bytes;
        }
    }

    /// <summary>False once the committer thread has died or the file could not be reopened (for the watchdog).</summary>
    public bool Healthy => _committer.IsAlive && !_broken;

    /// <summary>Whether the record is still waiting (not acknowledged, not evicted).</summary>
    public bool Contains(long seq)
    {
        lock (_dbLock)
            return _index.TryGet(seq, out _);
    }

    /// <summary>Totals of what was evicted since the stream began (the same numbers the reports carry).</summary>
    public EvictionReport Evictions
    {
        get
        {
            lock (_dbLock)
                return _evictions.ToReport();
        }
    }

    /// <summary>Raised (on the committer thread) after records were committed, so the sync loop can look.</summary>
    public event Action? Committed;

    /// <summary>
    /// Appends a record and completes, with its sequence number, once the record is durable: at once for a
    /// high or critical record, within the commit window for the others. Cancelling stops the wait, not the
    /// append: a record already queued may still be accepted.
    /// </summary>
    public async Task<long> AppendAsync(TelemetryRecord record, TelemetryPriority? priority = null, CancellationToken cancellationToken = default)
    {
        var group = Enqueue(record, priority, out var index);
        var first = await group.Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        return first + index;
    }

    /// <summary>
    /// Queues a record without waiting for its commit (the inference loop's way: a low priority record
    /// commits with the others of its window). Waits only while <see cref="MaxQueuedRecords"/> records are
    /// already queued, so a stalled disk slows the producer instead of filling memory. A record that then
    /// fails to commit is counted and reported by the buffer, as for <see cref="AppendAsync"/>.
    /// </summary>
    public async ValueTask PostAsync(TelemetryRecord record, TelemetryPriority? priority = null, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task oldest;
            lock (_queueLock)
            {
                if (_queuedRecords < MaxQueuedRecords || _groups.Count == 0)
                    break;
                oldest = _groups.Peek().Done.Task;
            }
            try
            {
                await oldest.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (TelemetryBufferException)
            {
                // That group's failure is reported by the buffer; it made room all the same.
            }
        }
        Enqueue(record, priority, out _);
    }

    /// <summary>Commits everything queued now, without waiting for the commit window; completes when it is durable.</summary>
    public Task FlushAsync()
    {
        lock (_queueLock)
        {
            if (_open is not null)
            {
                _open.Urgent = true;
                Monitor.Pulse(_queueLock);
            }
            return _last?.Done.Task ?? Task.CompletedTask;
        }
    }

    private Group Enqueue(TelemetryRecord record, TelemetryPriority? priority, out int index)
    {
        // A time stamped while the device clock runs from its floor (below what the device knew, before the
        // fleet's time was heard) is flagged as estimated, so nobody mistakes it for a measured one.
        if (_time is Timekeeping.DeviceClock { State: ClockState.Estimated } && !record.TsEstimated)
            record = record with { TsEstimated = true };
        var body = TelemetryBatchCodec.Body(record);
        var pending = new Pending(record.Ts.ToUnixTimeMilliseconds(), record.Kind, priority ?? TelemetryPolicy.DefaultPriority(record.Kind), body);
        if (pending.Size > _config.MaxBufferBytes)
            throw new TelemetryBufferException(TelemetryBufferError.TooLarge, $"a {record.Kind} record of {pending.Size} bytes exceeds the buffer's {_config.MaxBufferBytes} bytes");
        lock (_queueLock)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            if (_open is null || _open.Items.Count >= _maxGroupRecords || _open.Bytes + pending.Size > _maxGroupBytes)
                OpenGroup();
            var group = _open!;
            index = group.Items.Count;
            group.Items.Add(pending);
            group.Bytes += pending.Size;
            _queuedRecords++;
            if (pending.Priority >= TelemetryPriority.High || _windowTicks == 0)
                group.Urgent = true;
            Monitor.Pulse(_queueLock);
            return group;
        }
    }

    /// <summary>Starts a new group (the one before it, if any, is sealed and commits at once). Under the queue lock.</summary>
    private void OpenGroup()
    {
        _open = new Group(Stopwatch.GetTimestamp());
        _groups.Enqueue(_open);
        _last = _open;
    }

    /// <summary>
    /// Acknowledgements, expiry and budget changes live in memory until the next commit writes them (a power
    /// cut only brings records back to be sent again): make sure a commit comes within the window. Called
    /// under the storage lock.
    /// </summary>
    private void RequestWrite()
    {
        lock (_queueLock)
        {
            if (_stopping || _open is not null)
                return;
            OpenGroup();
            Monitor.Pulse(_queueLock);
        }
    }

    /// <summary>
    /// The next records to send: highest priority first, oldest first within a priority, at most
    /// <paramref name="maxRecords"/> and about <paramref name="maxBytes"/> of bodies, only classes at or
    /// above <paramref name="minPriority"/>. Null when nothing qualifies.
    /// </summary>
    public OutgoingBatch? TakeBatch(int maxRecords, long maxBytes, TelemetryPriority minPriority = TelemetryPriority.Low)
    {
        lock (_dbLock)
        {
            EnsureOpen();
            var chosen = new List<(long Seq, RecordMeta Meta)>();
            long bytes = 0;
            foreach (var cls in TelemetryPolicy.SendOrder)
            {
                if (TelemetryPolicy.PriorityOf(cls) < minPriority)
                    continue;
                foreach (var seq in _index.InClass(cls))
                {
                    if (chosen.Count >= maxRecords)
                        break;
                    _index.TryGet(seq, out var meta);
                    if (chosen.Count > 0 && bytes + meta.Size > maxBytes)
                        break;
                    chosen.Add((seq, meta));
                    bytes += meta.Size;
                }
            }
            if (chosen.Count == 0)
                return null;
            chosen.Sort((a, b) => a.Seq.CompareTo(b.Seq));
            var bodies = ReadBodies(chosen);
            return new OutgoingBatch(chosen.Select(c => (c.Seq, bodies[c.Seq])).ToList(), _index.LowestSeq() ?? chosen[0].Seq, bytes);
        }
    }

    /// <summary>True when a batch should go now: enough records, an urgent one, or the oldest is old enough.</summary>
    public bool BatchDue(int maxRecords, TimeSpan maxAge)
    {
        lock (_dbLock)
        {
            if (_index.Count == 0)
                return false;
            if (_index.Count >= maxRecords)
                return true;
            foreach (var cls in TelemetryPolicy.SendOrder)
            {
                if (TelemetryPolicy.PriorityOf(cls) >= TelemetryPriority.High && _index.InClass(cls).Count > 0)
                    return true;
            }
            var oldest = _index.LowestSeq()!.Value;
            _index.TryGet(oldest, out var meta);
            return _time.GetUtcNow().ToUnixTimeMilliseconds() - meta.TsMillis >= maxAge.TotalMilliseconds;
        }
    }

    /// <summary>
    /// Deletes what the fleet stored: every record at or below <paramref name="ackedSeq"/> and every record
    /// in <paramref name="stored"/>. Idempotent and order-insensitive. Returns the number deleted.
    /// </summary>
    public int Acknowledge(long ackedSeq, IReadOnlyList<SeqRange>? stored = null)
    {
        lock (_dbLock)
        {
            EnsureOpen();
            ackedSeq = Math.Min(ackedSeq, _lastSeq);
            var seqs = _index.Acknowledged(ackedSeq, stored ?? []);
            if (seqs.Count == 0 && ackedSeq <= _ackedSeq)
                return 0;
            // Written with the next commit, without an fsync of its own: losing an acknowledgement to a power
            // cut only means sending those records again, and the fleet stores each sequence number once.
            Drop(seqs);
            _ackedSeq = Math.Max(_ackedSeq, ackedSeq);
            _metaDirty = true;
            RequestWrite();
            return seqs.Count;
        }
    }

    /// <summary>Evicts records older than their kind's time to live; returns how many.</summary>
    public int Expire()
    {
        lock (_dbLock)
        {
            EnsureOpen();
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            var ttls = Enum.GetValues<TelemetryKind>().ToDictionary(k => k, k => TelemetryPolicy.TtlOf(_config, k));
            var victims = new List<long>();
            for (var cls = 0; cls < TelemetryPolicy.Classes; cls++)
            {
                foreach (var seq in _index.InClass(cls))
                {
                    _index.TryGet(seq, out var meta);
                    if (ttls[meta.Kind] is { } ttl && now - meta.TsMillis > ttl.TotalMilliseconds)
                        victims.Add(seq);
                }
            }
            if (victims.Count > 0)
                Evict(victims, expired: true);
            return victims.Count;
        }
    }

    /// <summary>Bytes of the daily budget spent on <paramref name="day"/> (UTC).</summary>
    public long BudgetSpent(DateOnly day)
    {
        lock (_dbLock)
            return _budgetDay == day ? _budgetSpent : 0;
    }

    public void SpendBudget(DateOnly day, long bytes)
    {
        lock (_dbLock)
        {
            EnsureOpen();
            _budgetSpent = (_budgetDay == day ? _budgetSpent : 0) + bytes;
            _budgetDay = day;
            _metaDirty = true;
            RequestWrite();
        }
    }

    private void Evict(List<long> victims, bool expired)
    {
        _evictions = _evictions.Add(victims.Select(MetaOf), expired);
        Drop(victims);
        _metaDirty = true;
        RequestWrite();
        LogEvicted(victims.Count, expired ? "their time to live passed" : "the buffer is full");
    }

    /// <summary>Takes records out of the index; their segments are rewritten (or deleted) by the next commit.</summary>
    private void Drop(IEnumerable<long> seqs)
    {
        foreach (var seq in seqs)
        {
            if (_index.TryGet(seq, out var meta))
            {
                _dirtySegments.Add(meta.Segment);
                _index.Remove(seq);
            }
        }
    }

    /// <summary>A full buffer evicts on every commit: log a summary at most every 10 s, not each time.</summary>
    private void LogEvicted(int count, string reason)
    {
        _evictedSinceLog += count;
        var now = _time.GetUtcNow();
        if (now - _evictionLoggedAt < TimeSpan.FromSeconds(10))
            return;
        Log.Evicted(_log, _evictedSinceLog, reason, _evictions.Records);
        _evictedSinceLog = 0;
        _evictionLoggedAt = now;
    }

    private RecordMeta MetaOf(long seq)
    {
        _index.TryGet(seq, out var meta);
        return meta;
    }

    public void Dispose()
    {
        lock (_queueLock)
        {
            if (_stopping)
                return;
            _stopping = true;
            Monitor.PulseAll(_queueLock);
        }
        _committer.Join();
        lock (_dbLock)
        {
            try
            {
                if (!_broken)
                    WritePending();
            }
            catch (TelemetryBufferException)
            {
                // Acknowledgements not written: those records are sent again after the restart.
            }
            CloseStorage();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(5001, LogLevel.Information, "Telemetry buffer {Path}: stream {StreamId}, {Records} records ({Bytes} bytes) waiting, last sequence {LastSeq}")]
        public static partial void Opened(ILogger logger, string path, string streamId, long records, long bytes, long lastSeq);

        [LoggerMessage(5002, LogLevel.Warning, "Telemetry buffer evicted {Count} records (latest because {Reason}); {Total} evicted since the stream began")]
        public static partial void Evicted(ILogger logger, long count, string reason, long total);

        [LoggerMessage(5003, LogLevel.Error, "Telemetry buffer refuses new records: {Reason}")]
        public static partial void Refusing(ILogger logger, string reason);

        [LoggerMessage(5004, LogLevel.Warning, "Telemetry buffer accepts records again; {Refused} were refused since {Since:O}")]
        public static partial void Accepting(ILogger logger, long refused, DateTimeOffset since);

        [LoggerMessage(5005, LogLevel.Debug, "Committed telemetry {First}..{Last}")]
        public static partial void CommittedGroup(ILogger logger, long first, long last);

        [LoggerMessage(5006, LogLevel.Error, "Could not record the refusal alarm: {Reason}")]
        public static partial void AlarmLost(ILogger logger, string reason);

        [LoggerMessage(5007, LogLevel.Error, "Telemetry buffer storage failed ({Reason}); reopening it")]
        public static partial void Reopening(ILogger logger, string reason);

        [LoggerMessage(5008, LogLevel.Information, "Moved {Records} records of the previous buffer format into segments")]
        public static partial void Migrated(ILogger logger, long records);
    }
}
