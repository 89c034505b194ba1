using EdgeFleet.Agent.Telemetry;

namespace EdgeFleet.Agent.Tests;

/// <summary>How a simulated power cut treats the writes no fsync covered yet.</summary>
public enum CutMode
{
    /// <summary>Every unsynced write is lost.</summary>
    DropUnsynced,

    /// <summary>Any subset of the unsynced writes reached the disk, in any order (later ones without earlier ones).</summary>
    Reorder,

    /// <summary>As <see cref="Reorder"/>, and a write that reached the disk may be torn: only some of its 512-byte sectors.</summary>
    Tear,
}

/// <summary>
/// An in-memory disk that loses power the way real storage does (after SQLite's crash tests): each file keeps
/// what the last fsync made durable and the writes since; at a cut, the files become what a disk might hold
/// after the power came back. A cut is armed at the n-th write or fsync, so it can fall inside a commit. The program
/// does not notice (a real one is gone): from then on its writes change only its own view, never what
/// survives, and its fsyncs make nothing durable; <see cref="PoweredOff"/> tells a test which completions
/// came after the cut and so prove nothing.
/// </summary>
internal sealed class PowerCutDisk
{
    public const int Sector = 512;

    private readonly Dictionary<string, SimFile> _files = [];
    private readonly object _lock = new();
    private long _writes;
    private long _cutAtWrite = long.MaxValue;

    public bool PoweredOff { get; private set; }

    /// <summary>Writes and syncs seen, for tests that check the order the buffer issues them in.</summary>
    public List<(string File, string Op, long Position, int Length, byte FirstByteAtConfirm)> Trace { get; } = [];

    public bool Tracing { get; set; }

    public StorageFile Open(string path)
    {
        lock (_lock)
        {
            if (!_files.TryGetValue(path, out var file))
                _files[path] = file = new SimFile();
            return new Handle(this, path, file);
        }
    }

    /// <summary>The power goes at the n-th write or fsync from now (that one is lost, and all after it).</summary>
    public void CutAfterWrites(long n)
    {
        lock (_lock)
            _cutAtWrite = _writes + n;
    }

    public void CutNow()
    {
        lock (_lock)
            PoweredOff = true;
    }

    /// <summary>The disk as it is after the power returns: durable bytes plus what of the unsynced writes survived.</summary>
    public PowerCutDisk Recover(Random random, CutMode mode)
    {
        lock (_lock)
        {
            var after = new PowerCutDisk();
            foreach (var (path, file) in _files)
            {
                var image = file.Survivor(random, mode);
                after._files[path] = new SimFile { Durable = image, Current = (byte[])image.Clone() };
            }
            return after;
        }
    }

    /// <summary>Whether this write or fsync still reaches the disk (false once the power is off).</summary>
    private bool Powered()
    {
        if (!PoweredOff && ++_writes >= _cutAtWrite)
            PoweredOff = true;
        return !PoweredOff;
    }

    private sealed class SimFile
    {
        /// <summary>What survives any cut.</summary>
        public byte[] Durable { get; set; } = [];

        /// <summary>Writes and length changes since the last fsync, in order; null data means SetLength.</summary>
        public List<(long Position, byte[]? Data, long Length)> Pending { get; } = [];

        /// <summary>The file as the running program sees it: durable bytes with the pending changes applied.</summary>
        public byte[] Current { get; set; } = [];

        public byte[] Survivor(Random random, CutMode mode)
        {
            var image = (byte[])Durable.Clone();
            if (mode == CutMode.DropUnsynced || Pending.Count == 0)
                return image;
            // Length changes are metadata the file system orders with the writes after them: they reach the
            // disk in program order up to a point; the data writes before that point survive as any subset.
            var reached = random.Next(Pending.Count + 1);
            for (var i = 0; i < reached; i++)
            {
                var (position, data, length) = Pending[i];
                if (data is null)
                {
                    Array.Resize(ref image, (int)length);
                    continue;
                }
                if (random.Next(2) == 0)
                    continue;
                if (image.Length < position + data.Length)
                    Array.Resize(ref image, (int)(position + data.Length));
                for (var s = 0; s < data.Length; s += Sector)
                {
                    var n = Math.Min(Sector, data.Length - s);
                    if (mode == CutMode.Tear && random.Next(3) == 0)
                        continue;
                    Array.Copy(data, s, image, position + s, n);
                }
            }
            return image;
        }
    }

    private sealed class Handle(PowerCutDisk disk, string path, SimFile file) : StorageFile
    {
        private long _position;

        public override bool CanRead => true;

        public override bool CanSeek => true;

        public override bool CanWrite => true;

        public override long Length
        {
            get
            {
                lock (disk._lock)
                    return file.Current.Length;
            }
        }

        public override long Position
        {
            get => _position;
            set => _position = value;
        }

        public override void Sync()
        {
            lock (disk._lock)
            {
                // An fsync is a moment the power can go too: just before it, everything since the last one is at risk.
                if (!disk.Powered())
                    return;
                file.Durable = (byte[])file.Current.Clone();
                file.Pending.Clear();
                if (disk.Tracing)
                    disk.Trace.Add((Path.GetFileName(path), "sync", 0, 0, 0));
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            lock (disk._lock)
            {
                var n = (int)Math.Clamp(file.Current.Length - _position, 0, count);
                Array.Copy(file.Current, _position, buffer, offset, n);
                _position += n;
                return n;
            }
        }

        public override long Seek(long offset, SeekOrigin origin) => _position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => Length + offset,
        };

        public override void SetLength(long value)
        {
            lock (disk._lock)
            {
                var powered = disk.Powered();
                var current = file.Current;
                Array.Resize(ref current, (int)value);
                file.Current = current;
                if (powered)
                    file.Pending.Add((0, null, value));
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (disk._lock)
            {
                var powered = disk.Powered();
                var data = buffer.AsSpan(offset, count).ToArray();
                var current = file.Current;
                if (current.Length < _position + count)
                    Array.Resize(ref current, (int)(_position + count));
                data.CopyTo(current, _position);
                file.Current = current;
                if (powered)
                    file.Pending.Add((_position, data, 0));
                if (disk.Tracing && powered)
                    disk.Trace.Add((Path.GetFileName(path), "write", _position, count, count > DurableFileStream.ConfirmedOffset ? data[DurableFileStream.ConfirmedOffset] : (byte)0));
                _position += count;
            }
        }
    }
}
