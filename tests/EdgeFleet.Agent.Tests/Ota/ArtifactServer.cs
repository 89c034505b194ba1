using System.Net;
using System.Net.Sockets;

namespace EdgeFleet.Agent.Tests.Ota;

/// <summary>
/// A real HTTP server on loopback that serves artifacts with range support, or misbehaves on purpose:
/// pads the body (endless data), closes early (truncation), or serves other bytes.
/// </summary>
internal sealed class ArtifactServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Dictionary<string, byte[]> _files = new();
    private readonly CancellationTokenSource _stop = new();

    public ArtifactServer()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _ = Task.Run(ServeAsync);
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Extra bytes after the file; with <see cref="AnnouncePadding"/> they are in Content-Length too.</summary>
    public int Padding { get; set; }

    public bool AnnouncePadding { get; set; }

    /// <summary>Close the connection after this many body bytes, this many times (then behave).</summary>
    public int CutAfterBytes { get; set; }

    public int CutTimes { get; set; }

    /// <summary>Send this many body bytes, then hold the connection open (sending nothing) for <see cref="HoldSeconds"/>, this many times.</summary>
    public int StallAfterBytes { get; set; }

    public int StallTimes { get; set; }

    /// <summary>How long a stalled or held connection stays open.</summary>
    public double HoldSeconds { get; set; } = 120;

    /// <summary>Send the whole body without a length (chunked), then hold the connection open instead of ending it.</summary>
    public bool HoldAfterBody { get; set; }

    public List<long> RangeStarts { get; } = [];

    public void Add(string name, byte[] content) => _files[name] = content;

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }
            // Each request on its own: a held connection must not stop the next one.
            _ = Task.Run(() =>
            {
                try
                {
                    Handle(context);
                }
                catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
                {
                    // The client went away or we cut it off on purpose.
                }
            });
        }
    }

    private void Handle(HttpListenerContext context)
    {
        var response = context.Response;
        if (!_files.TryGetValue(context.Request.Url!.AbsolutePath.TrimStart('/'), out var file))
        {
            response.StatusCode = 404;
            response.Close();
            return;
        }
        long start = 0;
        if (context.Request.Headers["Range"] is { } range && range.StartsWith("bytes=", StringComparison.Ordinal))
        {
            start = long.Parse(range[6..].TrimEnd('-'), System.Globalization.CultureInfo.InvariantCulture);
            response.StatusCode = 206;
        }
        lock (RangeStarts)
            RangeStarts.Add(start);
        var body = file.AsSpan((int)start).ToArray().Concat(new byte[Padding]).ToArray();
        if (CutTimes > 0)
        {
            CutTimes--;
            response.ContentLength64 = file.Length - start;
            response.OutputStream.Write(body, 0, Math.Min(CutAfterBytes, body.Length));
            response.OutputStream.Flush();
            response.Abort();
            return;
        }
        if (StallTimes > 0)
        {
            StallTimes--;
            response.SendChunked = true;
            response.OutputStream.Write(body, 0, Math.Min(StallAfterBytes, body.Length));
            response.OutputStream.Flush();
            _stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(HoldSeconds));
            response.Abort();
            return;
        }
        if (HoldAfterBody)
        {
            response.SendChunked = true;
            response.OutputStream.Write(body);
            response.OutputStream.Flush();
            _stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(HoldSeconds));
            response.Abort();
            return;
        }
        if (Padding == 0 || AnnouncePadding)
            response.ContentLength64 = body.Length;
        else
            response.SendChunked = true;
        response.OutputStream.Write(body);
        response.Close();
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Close();
        _stop.Dispose();
    }
}
