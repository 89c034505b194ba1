using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent.LocalApi;

/// <summary>One request, read whole: the local API's bodies are tensors the handler needs entire anyway.</summary>
internal sealed class HttpRequest
{
    public required string Method { get; init; }

    /// <summary>The path as sent (percent-encoding kept), without the query.</summary>
    public required string Path { get; init; }

    /// <summary>Query parameters, decoded; a name given twice keeps its first value.</summary>
    public required IReadOnlyDictionary<string, string> Query { get; init; }

    /// <summary>Header fields by name (case-insensitive); repeated fields are joined with ", ".</summary>
    public required IReadOnlyDictionary<string, string> Headers { get; init; }

    public required byte[] Body { get; init; }

    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}

/// <summary>A response; the body is sent with its length (no chunking), so a client always knows where it ends.</summary>
internal sealed class HttpResponse
{
    public int Status { get; init; } = 200;

    public string? ContentType { get; init; }

    public List<KeyValuePair<string, string>> Headers { get; } = [];

    public ReadOnlyMemory<byte> Body { get; init; }
}

/// <summary>What the server runs: requests, and the answer to a request it refuses before the handler sees it.</summary>
internal interface IHttpApplication
{
    Task<HttpResponse> HandleAsync(HttpRequest request);

    /// <summary>The body of a refusal (400, 408, 413, 431, 500, 501, 505), in the application's error format.</summary>
    HttpResponse Refuse(int status, string code, string reason);
}

/// <summary>The limits a connection is held to.</summary>
internal sealed record HttpServerLimits
{
    public long MaxRequestBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>Request line and header fields together.</summary>
    public int MaxHeaderBytes { get; init; } = 32 * 1024;

    public int MaxConnections { get; init; } = 128;

    /// <summary>How long an open connection may wait between requests.</summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>How long a request may take to arrive, once its first byte has (slow clients hold a connection and a buffer).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// A small HTTP/1.1 server for the local API (RFC 9112: persistent connections, pipelining, chunked request
/// bodies, <c>Expect: 100-continue</c>), on sockets the caller binds: a Unix domain socket, a loopback port.
/// It replaces Kestrel in the agent, which cost 3.4 MB of the binary's 15 MB budget for features (TLS,
/// HTTP/2, routing, middleware) a local socket does not need. Every malformed or oversized request gets a
/// status and a reason, and the connection is closed where its framing can no longer be trusted.
/// </summary>
internal sealed partial class HttpServer(IHttpApplication application, HttpServerLimits limits, ILogger log) : IAsyncDisposable
{
    private static readonly byte[] ContinueLine = "HTTP/1.1 100 Continue\r\n\r\n"u8.ToArray();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private readonly CancellationTokenSource _stopping = new(); // no new connections or requests
    private readonly CancellationTokenSource _abort = new(); // requests in progress are cut off too
    private readonly SemaphoreSlim _slots = new(limits.MaxConnections, limits.MaxConnections);
    private readonly IdleConnections _idle = new();
    private long _nextConnection;

    /// <summary>Binds and listens; call before <see cref="Start"/>.</summary>
    public void Listen(EndPoint endPoint)
    {
        var protocol = endPoint is UnixDomainSocketEndPoint ? ProtocolType.Unspecified : ProtocolType.Tcp;
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, protocol);
        try
        {
            socket.Bind(endPoint);
            socket.Listen(128);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _listeners.Add(socket);
    }

    public void Start()
    {
        foreach (var listener in _listeners)
            _acceptLoops.Add(AcceptLoopAsync(listener));
    }

    /// <summary>Stops accepting, lets requests in progress finish until <paramref name="cancellationToken"/>, then closes every connection.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested)
            return;
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var listener in _listeners)
            listener.Dispose();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Values).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await _abort.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(_connections.Values).ConfigureAwait(false); // a handler already running finishes its call
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(new CancellationToken(canceled: true)).ConfigureAwait(false);
        _stopping.Dispose();
        _abort.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stopping.IsCancellationRequested)
                    return;
                Log.AcceptFailed(log, e.Message);
                await Task.Delay(100).ConfigureAwait(false); // e.g. out of file descriptors: do not spin
                continue;
            }
            try
            {
                // Every slot taken: the connection idle longest (between requests, or never sent one) makes room, so
                // idle connections cannot keep a client that has a request waiting. Busy ones finish their request.
                while (!_slots.Wait(0))
                {
                    // An evicted connection frees its slot as it closes; a busy one may be idle in a moment: look again.
                    var wait = _idle.EvictOldest() ? TimeSpan.FromSeconds(1) : TimeSpan.FromMilliseconds(50);
                    if (await _slots.WaitAsync(wait, _stopping.Token).ConfigureAwait(false))
                        break;
                }
            }
            catch (OperationCanceledException)
            {
                client.Dispose();
                return;
            }
            var id = Interlocked.Increment(ref _nextConnection);
            var serving = ServeAsync(client);
            _connections[id] = serving;
            // Removed by a continuation, which runs after the line above even when the connection is already over.
            _ = serving.ContinueWith(_ => _connections.TryRemove(id, out Task? _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        await Task.Yield(); // the accept loop goes on at once
        try
        {
            using var connection = new Connection(new NetworkStream(client, ownsSocket: true), limits);
            using var idleSlot = new IdleSlot(_idle);
            while (!_stopping.IsCancellationRequested)
            {
                var (request, refusal, keepAlive) = await connection.ReadRequestAsync(application, _stopping.Token, _abort.Token, idleSlot).ConfigureAwait(false);
                if (request is null && refusal is null)
                    return; // the client closed, the connection idled out, or the server is stopping
                HttpResponse response;
                if (refusal is not null)
                {
                    response = refusal;
                }
                else
                {
                    try
                    {
                        response = await application.HandleAsync(request!).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        Log.HandlerFailed(log, request!.Method, request.Path, e);
                        response = application.Refuse(500, "internal", $"the request failed: {e.GetType().Name}: {e.Message}");
                    }
                }
                keepAlive &= refusal is null && !_stopping.IsCancellationRequested;
                await connection.WriteAsync(response, keepAlive, _abort.Token).ConfigureAwait(false);
                if (!keepAlive)
                {
                    if (refusal is not null)
                        await connection.LingerAsync().ConfigureAwait(false);
                    return;
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer went away or the server stopped: nothing to answer.
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>One connection's buffered reading and writing.</summary>
    private sealed class Connection(NetworkStream stream, HttpServerLimits limits) : IDisposable
    {
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(4096);
        private int _start;
        private int _end;
        private bool _http10; // the request being answered: a 1.0 client needs to be told the connection persists

        public void Dispose()
        {
            stream.Dispose();
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }

        /// <summary>
        /// The next request, a refusal to send before closing, or neither when the connection ends quietly.
        /// The keep-alive flag says whether the client lets the connection persist. Waiting for a request ends
        /// with <paramref name="stopping"/>; a request that has begun to arrive is read until <paramref name="aborted"/>.
        /// </summary>
        public async Task<(HttpRequest? Request, HttpResponse? Refusal, bool KeepAlive)> ReadRequestAsync(IHttpApplication app, CancellationToken stopping, CancellationToken aborted,
            IdleSlot? idleSlot = null)
        {
            using var idle = CancellationTokenSource.CreateLinkedTokenSource(stopping, idleSlot?.Evicted ?? CancellationToken.None);
            idle.CancelAfter(limits.KeepAliveTimeout);
            try
            {
                idleSlot?.Enter();
                if (_start == _end && !await FillAsync(idle.Token).ConfigureAwait(false))
                    return (null, null, false);
            }
            catch (OperationCanceledException)
            {
                return (null, null, false); // idle past the keep-alive timeout, evicted for a new connection, or the server is stopping
            }
            finally
            {
                idleSlot?.Leave();
            }
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(aborted);
            deadline.CancelAfter(limits.RequestTimeout);
            try
            {
                return await ReadRequestCoreAsync(app, deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
            {
                return (null, app.Refuse(408, "timeout", $"the request did not arrive within {limits.RequestTimeout.TotalSeconds:0} s"), false);
            }
            catch (HttpProtocolException e)
            {
                return (null, app.Refuse(e.Status, e.Code, e.Message), false);
            }
        }

        private async Task<(HttpRequest? Request, HttpResponse? Refusal, bool KeepAlive)> ReadRequestCoreAsync(IHttpApplication app, CancellationToken token)
        {
            var headEnd = await ReadHeadAsync(token).ConfigureAwait(false);
            if (headEnd < 0)
                return (null, null, false); // closed mid-head: nobody to answer
            var head = Encoding.Latin1.GetString(_buffer, _start, headEnd - _start);
            _start = headEnd;
            var (method, target, version, headers) = ParseHead(head);
            _http10 = version == "HTTP/1.0";
            var keepAlive = _http10
                ? HasToken(headers, "Connection", "keep-alive")
                : !HasToken(headers, "Connection", "close");
            var (path, query) = SplitTarget(target);

            long? length = null;
            var chunked = false;
            if (headers.TryGetValue("Transfer-Encoding", out var coding))
            {
                if (!coding.Trim().Equals("chunked", StringComparison.OrdinalIgnoreCase))
                    throw new HttpProtocolException(501, "not-implemented", $"Transfer-Encoding '{coding}' is not supported: send Content-Length or chunked");
                if (headers.ContainsKey("Content-Length"))
                    throw new HttpProtocolException(400, "bad-request", "a request may not carry both Content-Length and Transfer-Encoding");
                chunked = true;
            }
            else if (headers.TryGetValue("Content-Length", out var lengthText))
            {
                // "5, 5" (a repeated field) is allowed when the values agree (RFC 9110 section 8.6).
                var values = lengthText.Split(',', StringSplitOptions.TrimEntries);
                if (!long.TryParse(values[0], NumberStyles.None, CultureInfo.InvariantCulture, out var n) || values.Any(v => v != values[0]))
                    throw new HttpProtocolException(400, "bad-request", $"Content-Length '{lengthText}' is not a length");
                length = n;
            }
            if (length > MaxBody)
                throw TooLarge();
            var hasBody = chunked || length > 0;
            if (hasBody && version == "HTTP/1.1" && headers.TryGetValue("Expect", out var expect))
            {
                if (!expect.Trim().Equals("100-continue", StringComparison.OrdinalIgnoreCase))
                    return (null, app.Refuse(417, "expectation-failed", $"Expect '{expect}' is not supported"), false);
                await stream.WriteAsync(ContinueLine, token).ConfigureAwait(false);
            }
            var body = chunked ? await ReadChunkedAsync(token).ConfigureAwait(false)
                : length is > 0 ? await ReadExactAsync((int)length.Value, token).ConfigureAwait(false)
                : [];
            return (new HttpRequest { Method = method, Path = path, Query = query, Headers = headers, Body = body }, null, keepAlive);
        }

        /// <summary>A body is read into one array, so the configured limit is capped at the largest one.</summary>
        private long MaxBody => Math.Min(limits.MaxRequestBytes, Array.MaxLength);

        private HttpProtocolException HeadersTooLarge() =>
            new(431, "headers-too-large", $"the request line and headers are over {limits.MaxHeaderBytes} bytes");

        private HttpProtocolException TooLarge() =>
            new(413, "too-large", $"the body is over localApi.maxRequestBytes ({limits.MaxRequestBytes} bytes)");

        /// <summary>Reads until the empty line that ends the head; returns the index after it, or -1 at end of stream.</summary>
        private async Task<int> ReadHeadAsync(CancellationToken token)
        {
            // Offsets from _start, which moves when FillAsync compacts the buffer.
            var scanned = 0;
            var line = 0;
            while (true)
            {
                // A line ends at LF, and a CR before it is dropped (RFC 9112 section 2.2 lets a recipient accept a bare LF).
                for (var i = _start + scanned; i < _end; i++)
                {
                    if (_buffer[i] != (byte)'\n')
                        continue;
                    var begin = _start + line;
                    if (i > begin + 1 || (i == begin + 1 && _buffer[begin] != (byte)'\r'))
                    {
                        line = i + 1 - _start;
                        continue;
                    }
                    if (begin > _start)
                    {
                        if (i + 1 - _start > limits.MaxHeaderBytes)
                            throw HeadersTooLarge();
                        return i + 1;
                    }
                    _start = i + 1; // an empty line before the request line is ignored (RFC 9112 section 2.2)
                    line = 0;
                }
                scanned = _end - _start;
                if (scanned >= limits.MaxHeaderBytes)
                    throw HeadersTooLarge();
                if (!await FillAsync(token).ConfigureAwait(false))
                    return -1;
            }
        }

        private static (string Method, string Target, string Version, Dictionary<string, string> Headers) ParseHead(string head)
        {
            var lines = head.Split('\n');
            if (lines[0].StartsWith("PRI * HTTP/2", StringComparison.Ordinal))
                throw new HttpProtocolException(505, "http-version-not-supported", "HTTP/2 is not served here: use HTTP/1.1");
            var requestLine = lines[0].TrimEnd('\r').Split(' ');
            if (requestLine.Length != 3 || requestLine[0].Length == 0 || !requestLine[0].All(IsTokenChar) || requestLine[1].Length == 0)
                throw new HttpProtocolException(400, "bad-request", "the request line is not 'METHOD /path HTTP/1.1'");
            var version = requestLine[2];
            if (version is not ("HTTP/1.1" or "HTTP/1.0"))
            {
                throw version.StartsWith("HTTP/", StringComparison.Ordinal)
                    ? new HttpProtocolException(505, "http-version-not-supported", $"{version} is not served here: use HTTP/1.1")
                    : new HttpProtocolException(400, "bad-request", "the request line is not 'METHOD /path HTTP/1.1'");
            }
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var raw in lines.AsSpan(1))
            {
                var line = raw.TrimEnd('\r');
                if (line.Length == 0)
                    continue;
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0 || !line.AsSpan(0, colon).ToString().All(IsTokenChar))
                    throw new HttpProtocolException(400, "bad-request", line[0] is ' ' or '\t' ? "folded header lines are not accepted" : $"'{Shorten(line)}' is not a header field");
                var name = line[..colon];
                var value = line[(colon + 1)..].Trim(' ', '\t');
                headers[name] = headers.TryGetValue(name, out var earlier) ? earlier + ", " + value : value;
            }
            return (requestLine[0], requestLine[1], version, headers);
        }

        private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";

        private static bool IsTokenChar(char c) =>
            c is > ' ' and < '\u007f' && "\"(),/:;<=>?@[\\]{}".IndexOf(c, StringComparison.Ordinal) < 0;

        private static bool HasToken(Dictionary<string, string> headers, string name, string token) =>
            headers.TryGetValue(name, out var value)
            && value.Split(',', StringSplitOptions.TrimEntries).Any(t => t.Equals(token, StringComparison.OrdinalIgnoreCase));

        private static (string Path, Dictionary<string, string> Query) SplitTarget(string target)
        {
            if (!target.StartsWith('/'))
            {
                // absolute-form (RFC 9112 section 3.2.2), which a server must accept
                if (!Uri.TryCreate(target, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                    throw new HttpProtocolException(400, "bad-request", $"the request target '{Shorten(target)}' is not a path");
                target = uri.PathAndQuery;
            }
            var mark = target.IndexOf('?', StringComparison.Ordinal);
            var query = new Dictionary<string, string>(StringComparer.Ordinal);
            if (mark >= 0)
            {
                foreach (var pair in target[(mark + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
                {
                    var eq = pair.IndexOf('=', StringComparison.Ordinal);
                    var name = Decode(eq < 0 ? pair : pair[..eq]);
                    query.TryAdd(name, eq < 0 ? "" : Decode(pair[(eq + 1)..]));
                }
            }
            return (mark >= 0 ? target[..mark] : target, query);
        }

        private static string Decode(string text) => Uri.UnescapeDataString(text.Replace('+', ' '));

        /// <summary>
        /// Reads <paramref name="count"/> bytes into an array that grows (doubling) as they arrive: memory follows what
        /// the client sends, not what it announces.
        /// </summary>
        private async Task<byte[]> ReadExactAsync(int count, CancellationToken token)
        {
            var body = GC.AllocateUninitializedArray<byte>(Math.Min(count, Math.Max(InitialBodyBytes, _end - _start)));
            var have = Math.Min(count, _end - _start);
            _buffer.AsSpan(_start, have).CopyTo(body);
            _start += have;
            while (have < count)
            {
                if (have == body.Length)
                {
                    var grown = GC.AllocateUninitializedArray<byte>((int)Math.Min(count, 2L * body.Length));
                    body.AsSpan(0, have).CopyTo(grown);
                    body = grown;
                }
                var n = await stream.ReadAsync(body.AsMemory(have), token).ConfigureAwait(false);
                if (n == 0)
                    throw new IOException("the client closed the connection before the whole body arrived");
                have += n;
            }
            return body;
        }

        private const int InitialBodyBytes = 64 * 1024;

        /// <summary>A chunked body (RFC 9112 section 7.1); extensions and trailer fields are read and dropped.</summary>
        private async Task<byte[]> ReadChunkedAsync(CancellationToken token)
        {
            using var body = new MemoryStream();
            while (true)
            {
                var sizeLine = await ReadLineAsync(token).ConfigureAwait(false);
                var hex = sizeLine.Split(';')[0].Trim();
                if (!long.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) || size < 0 || hex.Length == 0)
                    throw new HttpProtocolException(400, "bad-request", $"'{Shorten(sizeLine)}' is not a chunk size");
                if (size == 0)
                    break;
                if (body.Length + size > MaxBody)
                    throw TooLarge();
                var chunk = await ReadExactAsync((int)size, token).ConfigureAwait(false);
                body.Write(chunk);
                if ((await ReadLineAsync(token).ConfigureAwait(false)).Length != 0)
                    throw new HttpProtocolException(400, "bad-request", "a chunk is longer than its size says");
            }
            while ((await ReadLineAsync(token).ConfigureAwait(false)).Length != 0)
            {
                // trailer fields: nothing here uses them
            }
            return body.ToArray();
        }

        /// <summary>One line of at most <see cref="HttpServerLimits.MaxHeaderBytes"/>, without its CRLF.</summary>
        private async Task<string> ReadLineAsync(CancellationToken token)
        {
            var scanned = 0; // from _start, which moves when FillAsync compacts the buffer
            while (true)
            {
                var lf = Array.IndexOf(_buffer, (byte)'\n', _start + scanned, _end - _start - scanned);
                if (lf >= 0)
                {
                    var end = lf > _start && _buffer[lf - 1] == (byte)'\r' ? lf - 1 : lf;
                    var line = Encoding.Latin1.GetString(_buffer, _start, end - _start);
                    _start = lf + 1;
                    return line;
                }
                scanned = _end - _start;
                if (scanned >= limits.MaxHeaderBytes)
                    throw new HttpProtocolException(400, "bad-request", "a chunk line is too long");
                if (!await FillAsync(token).ConfigureAwait(false))
                    throw new IOException("the client closed the connection in the middle of a chunked body");
            }
        }

        /// <summary>Reads more into the buffer (compacting or growing it up to the head limit); false at end of stream.</summary>
        private async Task<bool> FillAsync(CancellationToken token)
        {
            if (_start > 0 && _start == _end)
                _start = _end = 0;
            if (_end == _buffer.Length)
            {
                if (_start > 0)
                {
                    Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                    _end -= _start;
                    _start = 0;
                }
                else
                {
                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(_buffer.Length * 2, limits.MaxHeaderBytes + 4096));
                    Buffer.BlockCopy(_buffer, 0, larger, 0, _end);
                    ArrayPool<byte>.Shared.Return(_buffer);
                    _buffer = larger;
                }
            }
            var n = await stream.ReadAsync(_buffer.AsMemory(_end), token).ConfigureAwait(false);
            _end += n;
            return n > 0;
        }

        /// <summary>
        /// After a refusal the client may still be sending the body it announced. Reading that (for a while, up to
        /// a bound) before closing keeps the kernel from resetting the connection under the answer.
        /// </summary>
        public async Task LingerAsync()
        {
            using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            var scratch = ArrayPool<byte>.Shared.Rent(16 * 1024);
            try
            {
                for (long total = 0; total < 4 * 1024 * 1024;)
                {
                    var n = await stream.ReadAsync(scratch, linger.Token).ConfigureAwait(false);
                    if (n == 0)
                        break;
                    total += n;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException)
            {
                // closed either way
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(scratch);
            }
        }

        public async Task WriteAsync(HttpResponse response, bool keepAlive, CancellationToken token)
        {
            var head = new StringBuilder(256)
                .Append(CultureInfo.InvariantCulture, $"HTTP/1.1 {response.Status} {ReasonPhrase(response.Status)}\r\n")
                .Append("Date: ").Append(DateTime.UtcNow.ToString("r", CultureInfo.InvariantCulture)).Append("\r\n");
            if (response.ContentType is { } type)
                head.Append("Content-Type: ").Append(type).Append("\r\n");
            head.Append(CultureInfo.InvariantCulture, $"Content-Length: {response.Body.Length}\r\n");
            foreach (var (name, value) in response.Headers)
                head.Append(name).Append(": ").Append(value.ReplaceLineEndings(" ")).Append("\r\n");
            if (!keepAlive)
                head.Append("Connection: close\r\n");
            else if (_http10)
                head.Append("Connection: keep-alive\r\n");
            head.Append("\r\n");
            var headBytes = Encoding.Latin1.GetBytes(head.ToString());
            if (response.Body.Length <= 16 * 1024)
            {
                var one = ArrayPool<byte>.Shared.Rent(headBytes.Length + response.Body.Length);
                try
                {
                    headBytes.CopyTo(one, 0);
                    response.Body.Span.CopyTo(one.AsSpan(headBytes.Length));
                    await stream.WriteAsync(one.AsMemory(0, headBytes.Length + response.Body.Length), token).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(one);
                }
            }
            else
            {
                await stream.WriteAsync(headBytes, token).ConfigureAwait(false);
                await stream.WriteAsync(response.Body, token).ConfigureAwait(false);
            }
            if (!keepAlive)
                stream.Socket.Shutdown(SocketShutdown.Send); // the client reads to the end, then both sides close
        }
    }

    internal static string ReasonPhrase(int status) => status switch
    {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    };

    /// <summary>A request the server refuses before the application sees it; the connection closes after the answer.</summary>
    private sealed class HttpProtocolException(int status, string code, string message) : Exception(message)
    {
        public int Status { get; } = status;

        public string Code { get; } = code;
    }

    private static partial class Log
    {
        [LoggerMessage(2303, LogLevel.Warning, "Local inference API cannot accept a connection: {Reason}")]
        public static partial void AcceptFailed(ILogger logger, string reason);

        [LoggerMessage(2304, LogLevel.Error, "Local inference API request {Method} {Path} failed")]
        public static partial void HandlerFailed(ILogger logger, string method, string path, Exception exception);
    }
}

/// <summary>The connections waiting for their next request, oldest first, so that a new connection can take a slot from one.</summary>
internal sealed class IdleConnections
{
    private readonly LinkedList<IdleSlot> _waiting = new();

    public void Add(LinkedListNode<IdleSlot> node)
    {
        lock (_waiting)
            _waiting.AddLast(node);
    }

    public void Remove(LinkedListNode<IdleSlot> node)
    {
        lock (_waiting)
        {
            if (node.List is not null)
                _waiting.Remove(node);
        }
    }

    /// <summary>Closes the connection idle longest; false when none is idle.</summary>
    public bool EvictOldest()
    {
        IdleSlot? oldest;
        lock (_waiting)
        {
            oldest = _waiting.First?.Value;
            if (oldest is not null)
                _waiting.RemoveFirst();
        }
        oldest?.Evict();
        return oldest is not null;
    }
}

/// <summary>One connection's place among the idle ones while it waits for a request.</summary>
internal sealed class IdleSlot : IDisposable
{
    private readonly IdleConnections _all;
    private readonly LinkedListNode<IdleSlot> _node;
    private readonly CancellationTokenSource _evict = new();

    public IdleSlot(IdleConnections all)
    {
        _all = all;
        _node = new LinkedListNode<IdleSlot>(this);
    }

    public CancellationToken Evicted => _evict.Token;

    public void Enter() => _all.Add(_node);

    public void Leave() => _all.Remove(_node);

    public void Evict()
    {
        try
        {
            _evict.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // the connection ended meanwhile: its slot is free already
        }
    }

    public void Dispose()
    {
        Leave();
        _evict.Dispose();
    }
}
