using EdgeFleet.Shared.IO;

namespace EdgeFleet.Tests.Common;

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
/// An in-memory file system that loses power the way real storage does (after SQLite's crash tests): each file
/// keeps what the last fsync made durable and the writes since, and each name created, renamed or removed is
/// durable only once a directory sync covers it. At a cut the files become what a disk might hold after the
/// power came back: file data as <see cref="CutMode"/> says, and of the name changes since the last directory
/// sync, those up to some point (a journal commits them in order). A rename can thus reach the disk before the
/// data it names, as on ext4 without <c>auto_da_alloc</c>. A cut is armed at the n-th write, fsync or name
/// change, so it can fall inside a commit. The program does not notice (a real one is gone): from then on its
/// writes change only its own view, never what survives, and its fsyncs make nothing durable;
/// <see cref="PoweredOff"/> tells a test which completions came after the cut and so prove nothing.
/// Directories are not modelled: paths are names, and a directory sync covers every name change before it.
/// </summary>
internal sealed class PowerCutDisk : FileSystem
{
    public const int Sector = 512;

    /// <summary>Names as the running program sees them.</summary>
    private readonly Dictionary<string, SimFile> _files = [];

    /// <summary>Names as they are on disk.</summary>
    private readonly Dictionary<string, SimFile> _durableNames = [];

    /// <summary>Name changes since the last directory sync, in order, each atomic: (path, file or null for a removal).</summary>
    private readonly List<(string Path, SimFile? File)[]> _pendingNames = [];
    private readonly object _lock = new();
    private long _writes;
    private long _cutAtWrite = long.MaxValue;

    public bool PoweredOff { get; private set; }

    /// <summary>Writes and syncs seen, for tests that check the order the buffer issues them in.</summary>
    public List<(string File, string Op, long Position, int Length, byte FirstByteAtConfirm)> Trace { get; } = [];

    public bool Tracing { get; set; }

    public override bool Exists(string path)
    {
        lock (_lock)
            return _files.ContainsKey(path);
    }

    public override byte[] ReadAll(string path)
    {
        lock (_lock)
            return _files.TryGetValue(path, out var file) ? file.Current.ToArray() : throw new FileNotFoundException($"{path} does not exist", path);
    }

    public override Stream OpenRead(string path) => new MemoryStream(ReadAll(path), writable: false);

    public override StorageStream Open(string path)
    {
        lock (_lock)
        {
            if (!_files.TryGetValue(path, out var file))
                Name(path, file = new SimFile());
            return new Handle(this, path, file);
        }
    }

    public override StorageStream Create(string path, bool privateFile)
    {
        lock (_lock)
        {
            if (_files.ContainsKey(path))
                throw new IOException($"{path} already exists");
            var file = new SimFile();
            Name(path, file);
            return new Handle(this, path, file);
        }
    }

    public override void Delete(string path)
    {
        lock (_lock)
        {
            if (_files.ContainsKey(path))
                Name(path, null);
        }
    }

    public override void Rename(string from, string to, bool overwrite)
    {
        lock (_lock)
        {
            if (!_files.TryGetValue(from, out var file))
                throw new FileNotFoundException($"{from} does not exist", from);
            if (!overwrite && _files.ContainsKey(to))
                throw new IOException($"{to} already exists");
            // One journal transaction: both names change on disk, or neither.
            var powered = Powered();
            _files[to] = file;
            _files.Remove(from);
            if (powered)
                _pendingNames.Add([(to, file), (from, null)]);
        }
    }

    public override void SyncDirectory(string directory)
    {
        lock (_lock)
        {
            if (!Powered())
                return;
            foreach (var change in _pendingNames)
                ApplyNames(_durableNames, change);
            _pendingNames.Clear();
            if (Tracing)
                Trace.Add((directory, "syncdir", 0, 0, 0));
        }
    }

    /// <summary>The power goes at the n-th write, fsync or name change from now (that one is lost, and all after it).</summary>
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

    /// <summary>The disk as it is after the power returns: durable names and bytes plus what of the unsynced changes survived.</summary>
    public PowerCutDisk Recover(Random random, CutMode mode)
    {
        lock (_lock)
        {
            var names = new Dictionary<string, SimFile>(_durableNames);
            var reached = mode == CutMode.DropUnsynced ? 0 : random.Next(_pendingNames.Count + 1);
            foreach (var change in _pendingNames.Take(reached))
                ApplyNames(names, change);
            var after = new PowerCutDisk();
            var images = new Dictionary<SimFile, SimFile>();
            foreach (var (path, file) in names)
            {
                if (!images.TryGetValue(file, out var copy))
                {
                    var image = file.Survivor(random, mode);
                    images[file] = copy = new SimFile(image);
                }
                after._files[path] = copy;
                after._durableNames[path] = copy;
            }
            return after;
        }
    }

    private static void ApplyNames(Dictionary<string, SimFile> names, (string Path, SimFile? File)[] change)
    {
        foreach (var (path, file) in change)
        {
            if (file is null)
                names.Remove(path);
            else
                names[path] = file;
        }
    }

    /// <summary>A new name (or a removal, when <paramref name="file"/> is null), pending until a directory sync.</summary>
    private void Name(string path, SimFile? file)
    {
        var powered = Powered();
        (string, SimFile?)[] change = [(path, file)];
        ApplyNames(_files, change);
        if (powered)
            _pendingNames.Add(change);
    }

    /// <summary>Whether this write, fsync or name change still reaches the disk (false once the power is off).</summary>
    private bool Powered()
    {
        if (!PoweredOff && ++_writes >= _cutAtWrite)
            PoweredOff = true;
        return !PoweredOff;
    }

    /// <summary>A file's bytes, grown by doubling so that appending to a large file costs the bytes appended.</summary>
    private sealed class Bytes
    {
        private byte[] _data;

        public Bytes(byte[] content) => (_data, Length) = (content, content.Length);

        public long Length { get; private set; }

        public byte[] ToArray() => _data.AsSpan(0, (int)Length).ToArray();

        public int Read(long position, Span<byte> buffer)
        {
            var n = (int)Math.Clamp(Length - position, 0, buffer.Length);
            _data.AsSpan((int)position, n).CopyTo(buffer);
            return n;
        }

        public void Write(long position, ReadOnlySpan<byte> data)
        {
            Reserve(position + data.Length);
            data.CopyTo(_data.AsSpan((int)position));
            Length = Math.Max(Length, position + data.Length);
        }

        public void SetLength(long length)
        {
            if (length < Length)
                Array.Clear(_data, (int)length, (int)(Length - length)); // bytes beyond the end read as zeros when it grows again
            Reserve(length);
            Length = length;
        }

        private void Reserve(long length)
        {
            if (length > _data.Length)
                Array.Resize(ref _data, (int)Math.Max(length, Math.Min(int.MaxValue / 2, _data.Length * 2L)));
        }
    }

    private sealed class SimFile
    {
        public SimFile(byte[]? content = null)
        {
            Durable = new Bytes(content ?? []);
            Current = new Bytes((byte[])(content ?? []).Clone());
        }

        /// <summary>What survives any cut.</summary>
        public Bytes Durable { get; }

        /// <summary>Writes and length changes since the last fsync, in order; null data means SetLength.</summary>
        public List<(long Position, byte[]? Data, long Length)> Pending { get; } = [];

        /// <summary>The file as the running program sees it: durable bytes with the pending changes applied.</summary>
        public Bytes Current { get; }

        /// <summary>fsync: the pending changes become durable (applied to the durable bytes, not a copy of the file).</summary>
        public void Sync()
        {
            foreach (var (position, data, length) in Pending)
            {
                if (data is null)
                    Durable.SetLength(length);
                else
                    Durable.Write(position, data);
            }
            Pending.Clear();
        }

        public byte[] Survivor(Random random, CutMode mode)
        {
            var image = Durable.ToArray();
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

    private sealed class Handle(PowerCutDisk disk, string path, SimFile file) : StorageStream
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
                file.Sync();
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
                var n = file.Current.Read(_position, buffer.AsSpan(offset, count));
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
                file.Current.SetLength(value);
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
                file.Current.Write(_position, data);
                if (powered)
                    file.Pending.Add((_position, data, 0));
                if (disk.Tracing && powered)
                    disk.Trace.Add((Path.GetFileName(path), "write", _position, count, count > DurableFileStream.ConfirmedOffset ? data[DurableFileStream.ConfirmedOffset] : (byte)0));
                _position += count;
            }
        }
    }
}
