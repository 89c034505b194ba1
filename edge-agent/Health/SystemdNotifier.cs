using System.Net.Sockets;
using System.Text;

namespace EdgeFleet.Agent.Health;

/// <summary>
/// The sd_notify protocol: newline-separated <c>KEY=value</c> datagrams to the Unix socket systemd names in
/// <c>NOTIFY_SOCKET</c> (a path, or an abstract name starting with '@'). Without that variable every call
/// is a no-op, so the agent behaves the same outside systemd.
/// </summary>
public sealed class SystemdNotifier : IDisposable
{
    private readonly Socket? _socket;
    private readonly UnixDomainSocketEndPoint? _endpoint;

    public SystemdNotifier(string? notifySocket)
    {
        if (string.IsNullOrEmpty(notifySocket))
            return;
        // An abstract socket's name starts with a NUL byte, which systemd writes as '@'.
        _endpoint = new UnixDomainSocketEndPoint(notifySocket[0] == '@' ? "\0" + notifySocket[1..] : notifySocket);
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    }

    public static SystemdNotifier FromEnvironment() => new(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"));

    public bool Enabled => _socket is not null;

    /// <summary>
    /// The watchdog interval systemd expects pings within (<c>WATCHDOG_USEC</c>), when it is meant for this
    /// process (<c>WATCHDOG_PID</c> absent or ours).
    /// </summary>
    public static TimeSpan? WatchdogInterval()
    {
        if (!long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), out var usec) || usec <= 0)
            return null;
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture))
            return null;
        return TimeSpan.FromMicroseconds(usec);
    }

    /// <summary>Sends one state message; returns false when not under systemd or the send failed.</summary>
    public bool Notify(string state)
    {
        if (_socket is null)
            return false;
        try
        {
            _socket.SendTo(Encoding.UTF8.GetBytes(state), _endpoint!);
            return true;
        }
        catch (SocketException)
        {
            // systemd gone or the socket replaced: the service manager decides what that means, not us.
            return false;
        }
    }

    public void Dispose() => _socket?.Dispose();
}
