using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;
using MQTTnet.Server;

namespace EdgeFleet.Fleet.Broker.Listener;

/// <summary>
/// The embedded broker's TCP (and TLS) listener, in place of MQTTnet's own, bounding what a client gets before it
/// has authenticated: at most <see cref="ListenerLimits.PendingConnections"/> connections may be waiting for
/// their CONNECT (more are closed at once), each has <see cref="ListenerLimits.ConnectTimeout"/> from accept to a
/// complete CONNECT (TLS handshake included), and no packet is read beyond <see cref="PacketLimits"/>
/// (<see cref="MqttPacketLimitStream"/>).
/// </summary>
public sealed partial class GuardedTcpServerAdapter(ListenerLimits limits, FleetMetrics metrics, ILogger log) : IMqttServerAdapter
{
    private readonly List<Socket> _listeners = [];
    private CancellationTokenSource? _stop;
    private MqttServerOptions? _options;
    private int _pending;

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    /// <summary>Connections waiting for their CONNECT now.</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>The ports bound, in the order of the endpoints (a port of 0 in the options is filled in here).</summary>
    public IReadOnlyList<IPEndPoint> Bound => [.. _listeners.Select(s => (IPEndPoint)s.LocalEndPoint!)];

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
    {
        _options = options;
        _stop = new CancellationTokenSource();
        try
        {
            if (options.DefaultEndpointOptions.IsEnabled)
                Listen(options.DefaultEndpointOptions, tls: null);
            if (options.TlsEndpointOptions?.IsEnabled == true)
                Listen(options.TlsEndpointOptions, options.TlsEndpointOptions);
        }
        catch
        {
            Close();
            throw;
        }
        return Task.CompletedTask;
    }

    public Task StopAsync()
    {
        Close();
        return Task.CompletedTask;
    }

    public void Dispose() => Close();

    private void Close()
    {
        _stop?.Cancel();
        foreach (var socket in _listeners)
            socket.Dispose();
        _listeners.Clear();
    }

    private void Listen(MqttServerTcpEndpointBaseOptions endpoint, MqttServerTlsTcpEndpointOptions? tls)
    {
        foreach (var address in new[] { endpoint.BoundInterNetworkAddress, endpoint.BoundInterNetworkV6Address })
        {
            if (address.Equals(IPAddress.None) || (address.AddressFamily == AddressFamily.InterNetworkV6 && !Socket.OSSupportsIPv6))
                continue;
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (address.AddressFamily == AddressFamily.InterNetworkV6)
                    socket.DualMode = false;
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(address, endpoint.Port));
                socket.Listen(endpoint.ConnectionBacklog);
            }
            catch (SocketException) when (address.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.Dispose(); // no IPv6 on this host (or that loopback is missing): IPv4 serves
                continue;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            endpoint.Port = ((IPEndPoint)socket.LocalEndPoint!).Port;
            _listeners.Add(socket);
            _ = AcceptAsync(socket, tls, endpoint.NoDelay, _stop!.Token);
        }
    }

    private async Task AcceptAsync(Socket listener, MqttServerTlsTcpEndpointOptions? tls, bool noDelay, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                Log.AcceptFailed(log, e.SocketErrorCode.ToString());
                await Task.Delay(100, CancellationToken.None).ConfigureAwait(false); // e.g. out of file descriptors: do not spin
                continue;
            }
            if (Interlocked.Increment(ref _pending) > limits.PendingConnections)
            {
                Interlocked.Decrement(ref _pending);
                metrics.CountRefusedUnauthenticated();
                client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                continue;
            }
            client.NoDelay = noDelay;
            // Runs here up to its first read, which completes later on the pool: a burst of connections queues
            // no work items (which would make the thread pool add threads, each with its own stack).
            _ = HandleAsync(client, tls, ct);
        }
    }

    private async Task HandleAsync(Socket socket, MqttServerTlsTcpEndpointOptions? tls, CancellationToken ct)
    {
        var released = 0;
        void Release()
        {
            if (Interlocked.Exchange(ref released, 1) == 0)
                Interlocked.Decrement(ref _pending);
        }
        // From accept to a complete CONNECT: a client that takes longer loses its connection.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(limits.ConnectTimeout);
        using var closeOnDeadline = deadline.Token.Register(() => socket.Dispose());
        EndPoint? remote = null;
        Stream? stream = null;
        try
        {
            remote = socket.RemoteEndPoint; // throws for a client that reset the connection before this line
            stream = new NetworkStream(socket, ownsSocket: true);
            X509Certificate2? clientCertificate = null;
            if (tls is not null)
            {
                var ssl = new SslStream(stream, false, tls.RemoteCertificateValidationCallback);
                stream = ssl;
                await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificate = tls.CertificateProvider.GetCertificate(),
                    ClientCertificateRequired = tls.ClientCertificateRequired,
                    EnabledSslProtocols = tls.SslProtocol,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    EncryptionPolicy = EncryptionPolicy.RequireEncryption,
                }, deadline.Token).ConfigureAwait(false);
                if (ssl.RemoteCertificate is { } certificate)
                    clientCertificate = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.Export(X509ContentType.Cert));
            }
            var guarded = new MqttPacketLimitStream(stream, limits.Packets, () =>
            {
                Release();
                deadline.CancelAfter(Timeout.InfiniteTimeSpan);
            });
            stream = guarded;
            if (ClientHandler is { } handler)
            {
                var channel = new MqttTcpChannel(stream, socket.LocalEndPoint, remote, clientCertificate);
                var formatter = new MqttPacketFormatterAdapter(new MqttBufferWriter(_options!.WriterBufferSize, _options.WriterBufferSizeMax));
                using var adapter = new MqttChannelAdapter(channel, formatter, MqttNetNullLogger.Instance);
                await handler(adapter).ConfigureAwait(false);
            }
            if (!guarded.ConnectReceived)
                metrics.CountRefusedUnauthenticated();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException
            or System.Security.Authentication.AuthenticationException)
        {
            metrics.CountRefusedUnauthenticated();
            Log.ConnectionDropped(log, remote?.ToString() ?? "?", e.Message);
        }
        finally
        {
            Release();
            if (stream is not null)
                await stream.DisposeAsync().ConfigureAwait(false);
            socket.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(3010, LogLevel.Warning, "MQTT listener could not accept a connection: {Error}")]
        public static partial void AcceptFailed(ILogger logger, string error);

        [LoggerMessage(3011, LogLevel.Debug, "MQTT connection from {Remote} closed before authentication: {Reason}")]
        public static partial void ConnectionDropped(ILogger logger, string remote, string reason);
    }
}

/// <summary>What the embedded broker's listener allows a client before and after it authenticates.</summary>
public sealed record ListenerLimits(int PendingConnections, TimeSpan ConnectTimeout, PacketLimits Packets);
