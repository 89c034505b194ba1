using System.Diagnostics;
using System.Runtime.InteropServices;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>
/// A device's own network: a network namespace (<c>ip netns</c>) joined to this host by a point-to-point IP link
/// that this process forwards packet by packet, dropping, delaying, throttling or cutting it as the test says.
/// The kernel's netem does this with <c>tc qdisc … netem</c>, but kernels built without <c>sch_netem</c> (this
/// sandbox's among them) cannot, so the link is two TUN devices, one in each namespace, and a forwarder here:
/// TCP in the agent and the broker sees real loss, delay and bandwidth, and retransmits as on a real link.
/// A process started with <see cref="Command"/> reaches the host only at <see cref="HostAddress"/>.
/// </summary>
public sealed partial class ImpairedLink : IDisposable
{
    private const uint TunSetIff = 0x400454ca;
    private const short IffTun = 0x0001;
    private const short IffNoPi = 0x1000;
    private const short PollIn = 0x0001;

    private readonly Direction _up;
    private readonly Direction _down;
    private readonly string _hostInterface;
    private volatile bool _stopped;

    public ImpairedLink()
    {
        var id = Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 3));
        var subnet = Random.Shared.Next(1, 250);
        Namespace = "ef-" + id;
        _hostInterface = "efh" + id;
        var deviceInterface = "efd" + id;
        HostAddress = $"10.199.{subnet}.1";
        DeviceAddress = $"10.199.{subnet}.2";
        Ip("netns", "add", Namespace);
        Ip("netns", "exec", Namespace, "ip", "link", "set", "lo", "up");
        var host = OpenTun(_hostInterface);
        var device = OpenTun(deviceInterface);
        // The device end moves into the namespace; this process keeps both ends' descriptors.
        Ip("link", "set", deviceInterface, "netns", Namespace);
        Ip("addr", "add", HostAddress, "peer", DeviceAddress, "dev", _hostInterface);
        Ip("link", "set", _hostInterface, "up");
        Ip("netns", "exec", Namespace, "ip", "addr", "add", DeviceAddress, "peer", HostAddress, "dev", deviceInterface);
        Ip("netns", "exec", Namespace, "ip", "link", "set", deviceInterface, "up");
        _up = new Direction(this, device, host, "up");
        _down = new Direction(this, host, device, "down");
    }

    /// <summary>Whether this machine can make one: root, <c>/dev/net/tun</c> and iproute2.</summary>
    public static bool Supported => OperatingSystem.IsLinux() && Environment.UserName == "root" && File.Exists("/dev/net/tun")
        && (File.Exists("/usr/sbin/ip") || File.Exists("/sbin/ip") || File.Exists("/usr/bin/ip"));

    public string Namespace { get; }

    /// <summary>This host's address on the link: where the device finds the broker and the fleet.</summary>
    public string HostAddress { get; }

    public string DeviceAddress { get; }

    /// <summary>Probability that a packet is lost, in each direction on its own.</summary>
    public double Loss { get; set; }

    /// <summary>One-way delay, in each direction (a round trip takes twice this).</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>Bytes per second in each direction (0: unlimited); the queue behind it holds at most 256 KiB.</summary>
    public long BytesPerSecond { get; set; }

    /// <summary>Nothing gets through, either way.</summary>
    public bool Partitioned { get; set; }

    /// <summary>Bytes (IP packets, headers included) delivered to the device: what a metered link would bill it for.</summary>
    public long BytesDown => Interlocked.Read(ref _down.ForwardedBytes);

    /// <summary>Packets forwarded and dropped (both directions).</summary>
    public (long Forwarded, long Dropped) Counts => (_up.Forwarded + _down.Forwarded, _up.Dropped + _down.Dropped);

    /// <summary>The arguments of <c>ip</c> that run <paramref name="command"/> inside the device's namespace.</summary>
    public string[] Command(params string[] command) => ["netns", "exec", Namespace, .. command];

    public void Dispose()
    {
        _stopped = true;
        _up.Join();
        _down.Join();
        _up.Close();
        _down.Close();
        TryIp("netns", "del", Namespace);
    }

    private static int OpenTun(string name)
    {
        var fd = Open("/dev/net/tun", 2 /* O_RDWR */);
        if (fd < 0)
            throw new IOException($"cannot open /dev/net/tun (errno {Marshal.GetLastPInvokeError()})");
        var request = new byte[40]; // struct ifreq: the name, then the flags
        System.Text.Encoding.ASCII.GetBytes(name, request);
        BitConverter.TryWriteBytes(request.AsSpan(16), (short)(IffTun | IffNoPi));
        if (Ioctl(fd, TunSetIff, request) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            _ = Close(fd);
            throw new IOException($"TUNSETIFF {name} failed (errno {errno})");
        }
        return fd;
    }

    private static void Ip(params string[] args)
    {
        var (exit, output) = Run(args);
        if (exit != 0)
            throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({exit}): {output}");
    }

    private static void TryIp(params string[] args) => _ = Run(args);

    private static (int Exit, string Output) Run(string[] args)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output.Trim());
    }

    /// <summary>One direction: a reader that decides each packet's fate and a writer that releases it on time.</summary>
    private sealed class Direction
    {
        private const int MaxQueueBytes = 256 * 1024;
        private readonly ImpairedLink _link;
        private readonly int _from;
        private readonly int _to;
        private readonly Queue<(long Release, byte[] Packet)> _queue = new();
        private readonly Thread _reader;
        private readonly Thread _writer;
        private readonly Random _random = new();
        private long _queuedBytes;
        private long _busyUntil;
        private long _lastRelease;

        public Direction(ImpairedLink link, int from, int to, string name)
        {
            (_link, _from, _to) = (link, from, to);
            _reader = new Thread(Read) { IsBackground = true, Name = $"link-{name}-read" };
            _writer = new Thread(Write) { IsBackground = true, Name = $"link-{name}-write" };
            _reader.Start();
            _writer.Start();
        }

        public long Forwarded;
        public long ForwardedBytes;
        public long Dropped;

        public void Join()
        {
            lock (_queue)
                Monitor.PulseAll(_queue);
            _reader.Join(2000);
            _writer.Join(2000);
        }

        public void Close() => _ = ImpairedLink.Close(_from);

        private void Read()
        {
            var buffer = new byte[65536];
            while (!_link._stopped)
            {
                if (Poll(_from, 200) <= 0)
                    continue;
                var n = (int)ReadFd(_from, buffer, buffer.Length);
                if (n <= 0)
                    continue;
                var now = Stopwatch.GetTimestamp();
                lock (_queue)
                {
                    if (_link.Partitioned || _random.NextDouble() < _link.Loss || _queuedBytes + n > MaxQueueBytes)
                    {
                        Dropped++;
                        continue;
                    }
                    // Serialised at the link's rate behind what is queued, then delayed; never overtaking.
                    var rate = _link.BytesPerSecond;
                    _busyUntil = Math.Max(_busyUntil, now) + (rate > 0 ? n * Stopwatch.Frequency / rate : 0);
                    var release = Math.Max(_lastRelease, _busyUntil + (long)(_link.Delay.TotalSeconds * Stopwatch.Frequency));
                    _lastRelease = release;
                    _queue.Enqueue((release, buffer.AsSpan(0, n).ToArray()));
                    _queuedBytes += n;
                    Monitor.Pulse(_queue);
                }
            }
        }

        private void Write()
        {
            while (!_link._stopped)
            {
                byte[] packet;
                lock (_queue)
                {
                    if (_queue.Count == 0)
                    {
                        Monitor.Wait(_queue, 200);
                        continue;
                    }
                    var wait = _queue.Peek().Release - Stopwatch.GetTimestamp();
                    if (wait > 0)
                    {
                        Monitor.Wait(_queue, TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
                        continue;
                    }
                    packet = _queue.Dequeue().Packet;
                    _queuedBytes -= packet.Length;
                    if (_link.Partitioned)
                    {
                        Dropped++; // cut while it was in flight
                        continue;
                    }
                }
                if (WriteFd(_to, packet, packet.Length) > 0)
                {
                    Interlocked.Increment(ref Forwarded);
                    Interlocked.Add(ref ForwardedBytes, packet.Length);
                }
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, nuint request, byte[] argument);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadFd(int fd, byte[] buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteFd(int fd, byte[] buffer, nint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    private static int Poll(int fd, int timeoutMs) => PollNative([new PollFd { Fd = fd, Events = PollIn }], 1, timeoutMs);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int PollNative([In, Out] PollFd[] fds, nuint count, int timeoutMs);
}
