using System.Globalization;
using System.Net.Sockets;
using System.Text;
using EdgeFleet.Agent.LocalApi;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeFleet.Agent.Tests;

/// <summary>
/// The local API's HTTP/1.1 server at the byte level, on a real Unix socket: framing (persistent connections,
/// pipelining, chunked bodies, 100-continue) and every way a request can be malformed, oversized or slow.
/// </summary>
[Collection(ProcessWideAllocations.Name)]
public sealed class HttpServerTests : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private HttpServer _server = null!;
    private string _socket = null!;

    /// <summary>Echoes the request: the body back, and what the server parsed in headers.</summary>
    private sealed class Echo : IHttpApplication
    {
        public TaskCompletionSource? Gate { get; set; }

        public async Task<HttpResponse> HandleAsync(HttpRequest request)
        {
            if (Gate is { } gate)
                await gate.Task;
            if (request.Path == "/throw")
                throw new InvalidOperationException("the handler broke");
            var response = new HttpResponse { ContentType = "application/octet-stream", Body = request.Body };
            response.Headers.Add(new("X-Method", request.Method));
            response.Headers.Add(new("X-Path", request.Path));
            response.Headers.Add(new("X-Query", string.Join("&", request.Query.Select(kv => kv.Key + "=" + kv.Value))));
            response.Headers.Add(new("X-Test", request.Header("x-test") ?? "-"));
            return response;
        }

        public HttpResponse Refuse(int status, string code, string reason) =>
            new() { Status = status, ContentType = "text/plain", Body = Encoding.UTF8.GetBytes(code + ": " + reason) };
    }

    private readonly Echo _echo = new();

    public Task InitializeAsync() => StartAsync(new HttpServerLimits { MaxRequestBytes = 1000, MaxHeaderBytes = 2048, RequestTimeout = TimeSpan.FromSeconds(1), KeepAliveTimeout = TimeSpan.FromSeconds(1) });

    private async Task StartAsync(HttpServerLimits limits)
    {
        if (_server is not null)
            await _server.DisposeAsync();
        _socket = _dir.File($"http-{Guid.NewGuid():N}.sock");
        _server = new HttpServer(_echo, limits, NullLogger.Instance);
        _server.Listen(new UnixDomainSocketEndPoint(_socket));
        _server.Start();
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(_socket));
        return socket;
    }

    private static Task SendAsync(Socket socket, string text) => socket.SendAsync(Encoding.Latin1.GetBytes(text));

    /// <summary>Everything until the server closes (bounded by a timeout, so a server that wrongly keeps the connection fails the test).</summary>
    private static async Task<string> ReadToCloseAsync(Socket socket, int timeoutMs = 5000)
    {
        using var timeout = new CancellationTokenSource(timeoutMs);
        var all = new MemoryStream();
        var buffer = new byte[8192];
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (n == 0)
                return Encoding.Latin1.GetString(all.ToArray());
            all.Write(buffer, 0, n);
        }
    }

    private sealed record Response(int Status, Dictionary<string, string> Headers, string Body);

    /// <summary>Reads exactly one response (by its Content-Length) from a connection that stays open.</summary>
    private static async Task<Response> ReadResponseAsync(Socket socket, StringBuilder pending)
    {
        using var timeout = new CancellationTokenSource(5000);
        var buffer = new byte[8192];
        while (true)
        {
            var text = pending.ToString();
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                var lines = text[..end].Split("\r\n");
                var headers = lines.Skip(1).Select(l => l.Split(": ", 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);
                var length = int.Parse(headers["Content-Length"], CultureInfo.InvariantCulture);
                if (text.Length >= end + 4 + length)
                {
                    pending.Remove(0, end + 4 + length);
                    return new Response(int.Parse(lines[0].Split(' ')[1], CultureInfo.InvariantCulture), headers, text.Substring(end + 4, length));
                }
            }
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.True(n > 0, $"the server closed the connection; had: {pending}");
            pending.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
    }

    [Fact]
    public async Task Pipelined_requests_on_one_connection_are_answered_in_order()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket,
            "POST /a?x=1&y=two+words&z=%2F HTTP/1.1\r\nHost: agent\r\nContent-Length: 5\r\nX-Test: first\r\n\r\nhello"
            + "GET /b HTTP/1.1\r\nHost: agent\r\n\r\n"
            + "\r\nPOST /c HTTP/1.1\nContent-Length: 3\nX-Test: bare-lf\n\nabc"); // a stray CRLF between requests, bare LFs
        var pending = new StringBuilder();
        var a = await ReadResponseAsync(socket, pending);
        var b = await ReadResponseAsync(socket, pending);
        var c = await ReadResponseAsync(socket, pending);
        Assert.Equal((200, "POST", "/a", "x=1&y=two words&z=/", "first", "hello"), (a.Status, a.Headers["X-Method"], a.Headers["X-Path"], a.Headers["X-Query"], a.Headers["X-Test"], a.Body));
        Assert.Equal(("GET", "/b", ""), (b.Headers["X-Method"], b.Headers["X-Path"], b.Body));
        Assert.Equal(("/c", "bare-lf", "abc"), (c.Headers["X-Path"], c.Headers["X-Test"], c.Body));
        Assert.False(a.Headers.ContainsKey("Connection"));
        Assert.True(a.Headers.ContainsKey("Date"));

        // absolute-form, which a server must accept (RFC 9112 section 3.2.2); repeated fields are joined
        await SendAsync(socket, "GET http://agent/abs?q=1 HTTP/1.1\r\nX-Test: a\r\nX-Test: b\r\n\r\n");
        var absolute = await ReadResponseAsync(socket, pending);
        Assert.Equal(("/abs", "q=1", "a, b"), (absolute.Headers["X-Path"], absolute.Headers["X-Query"], absolute.Headers["X-Test"]));

        await SendAsync(socket, "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n");
        var last = await ReadToCloseAsync(socket);
        Assert.Contains("Connection: close", last, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_1_0_closes_after_the_answer_unless_asked_to_keep_alive()
    {
        using (var socket = await ConnectAsync())
        {
            await SendAsync(socket, "GET /old HTTP/1.0\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 200 OK", await ReadToCloseAsync(socket), StringComparison.Ordinal);
        }
        using var kept = await ConnectAsync();
        await SendAsync(kept, "GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /two HTTP/1.0\r\n\r\n");
        var pending = new StringBuilder();
        var one = await ReadResponseAsync(kept, pending);
        Assert.Equal(("/one", "keep-alive"), (one.Headers["X-Path"], one.Headers["Connection"]));
        var two = pending + await ReadToCloseAsync(kept);
        Assert.Contains("X-Path: /two", two, StringComparison.Ordinal);
        Assert.Contains("Connection: close", two, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_chunked_body_arrives_whole_with_extensions_and_trailers_dropped()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, "POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n");
        await Task.Delay(50); // in pieces, as a streaming client sends it
        await SendAsync(socket, "1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
        var pending = new StringBuilder();
        Assert.Equal("hello 0123456789", (await ReadResponseAsync(socket, pending)).Body);
        Assert.Equal("/after", (await ReadResponseAsync(socket, pending)).Headers["X-Path"]);
    }

    [Fact]
    public async Task Expect_100_continue_is_answered_before_the_body_and_an_oversized_body_is_refused_unread()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, "POST /big HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        var buffer = new byte[256];
        var n = await socket.ReceiveAsync(buffer, SocketFlags.None);
        Assert.Equal("HTTP/1.1 100 Continue\r\n\r\n", Encoding.Latin1.GetString(buffer, 0, n));
        await SendAsync(socket, "body");
        Assert.Equal("body", (await ReadResponseAsync(socket, new StringBuilder())).Body);

        using var refused = await ConnectAsync();
        await SendAsync(refused, "POST /big HTTP/1.1\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n");
        var answer = await ReadToCloseAsync(refused);
        Assert.StartsWith("HTTP/1.1 413 Content Too Large\r\n", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("100 Continue", answer, StringComparison.Ordinal);
        Assert.EndsWith("too-large: the body is over localApi.maxRequestBytes (1000 bytes)", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_refused_even_when_it_is_already_being_sent()
    {
        // No Expect: the client sends everything at once. The server answers 413 and reads what is in flight
        // before closing, so the client sees the answer rather than a reset connection.
        using var socket = await ConnectAsync();
        await SendAsync(socket, "POST /big HTTP/1.1\r\nContent-Length: 50000\r\n\r\n" + new string('x', 50000));
        Assert.StartsWith("HTTP/1.1 413 ", await ReadToCloseAsync(socket), StringComparison.Ordinal);

        using var chunked = await ConnectAsync();
        await SendAsync(chunked, "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n300\r\n" + new string('y', 768) + "\r\n300\r\n" + new string('y', 768) + "\r\n0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 413 ", await ReadToCloseAsync(chunked), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("GARBAGE\r\n\r\n", "400 Bad Request", "the request line is not 'METHOD /path HTTP/1.1'")]
    [InlineData("\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003\r\n\r\n", "400 Bad Request", "the request line")] // a TLS hello
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "505 HTTP Version Not Supported", "HTTP/2 is not served here")]
    [InlineData("GET / HTTP/3.0\r\n\r\n", "505 HTTP Version Not Supported", "HTTP/3.0 is not served here")]
    [InlineData("GET nowhere HTTP/1.1\r\n\r\n", "400 Bad Request", "the request target 'nowhere' is not a path")]
    [InlineData("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "400 Bad Request", "'No colon here' is not a header field")]
    [InlineData("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", "400 Bad Request", "folded header lines are not accepted")]
    [InlineData("GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n", "400 Bad Request", "is not a header field")]
    [InlineData("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400 Bad Request", "Content-Length '-1' is not a length")]
    [InlineData("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "400 Bad Request", "Content-Length '5, 6' is not a length")]
    [InlineData("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "400 Bad Request", "both Content-Length and Transfer-Encoding")]
    [InlineData("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "501 Not Implemented", "Transfer-Encoding 'gzip' is not supported")]
    [InlineData("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400 Bad Request", "'zz' is not a chunk size")]
    [InlineData("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "a chunk is longer than its size says")]
    [InlineData("POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: something-else\r\n\r\n", "417 Expectation Failed", "Expect 'something-else' is not supported")]
    public async Task Malformed_requests_get_a_status_and_a_reason_and_the_connection_closes(string request, string status, string reason)
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, request);
        var answer = await ReadToCloseAsync(socket);
        Assert.StartsWith("HTTP/1.1 " + status + "\r\n", answer, StringComparison.Ordinal);
        Assert.Contains(reason, answer, StringComparison.Ordinal);
        Assert.Contains("Connection: close", answer, StringComparison.Ordinal);
        await ServerStillAnswersAsync();
    }

    [Fact]
    public async Task Headers_over_the_limit_get_431()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, "GET / HTTP/1.1\r\nX-Big: " + new string('h', 3000) + "\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n", await ReadToCloseAsync(socket), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_that_stalls_gets_408_and_an_idle_connection_is_closed()
    {
        using var stalled = await ConnectAsync();
        await SendAsync(stalled, "POST /slow HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf");
        Assert.StartsWith("HTTP/1.1 408 Request Timeout\r\n", await ReadToCloseAsync(stalled), StringComparison.Ordinal);

        using var idle = await ConnectAsync();
        await SendAsync(idle, "GET /once HTTP/1.1\r\n\r\n");
        Assert.Equal(200, (await ReadResponseAsync(idle, new StringBuilder())).Status);
        Assert.Equal("", await ReadToCloseAsync(idle)); // closed quietly after the keep-alive timeout (1 s here)
    }

    [Fact]
    public async Task A_failing_handler_gets_500_and_the_connection_serves_the_next_request()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, "GET /throw HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
        var pending = new StringBuilder();
        var failed = await ReadResponseAsync(socket, pending);
        Assert.Equal((500, "internal: the request failed: InvalidOperationException: the handler broke"), (failed.Status, failed.Body));
        Assert.Equal("/next", (await ReadResponseAsync(socket, pending)).Headers["X-Path"]);
    }

    [Fact]
    public async Task Clients_that_vanish_mid_request_do_not_disturb_the_others()
    {
        for (var i = 0; i < 20; i++)
        {
            using var gone = await ConnectAsync();
            await SendAsync(gone, i % 2 == 0 ? "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc" : "GET / HT");
            gone.Close();
        }
        await ServerStillAnswersAsync();
    }

    [Fact]
    public async Task Connections_over_the_limit_wait_while_every_slot_is_busy_with_a_request()
    {
        await StartAsync(new HttpServerLimits { MaxConnections = 2 });
        _echo.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var a = await ConnectAsync();
        using var b = await ConnectAsync();
        await SendAsync(a, "GET /a HTTP/1.1\r\n\r\n");
        await SendAsync(b, "GET /b HTTP/1.1\r\n\r\n");
        await Task.Delay(200); // both are in the handler now
        using var c = await ConnectAsync(); // accepted by the kernel's backlog, served once a slot is free
        await SendAsync(c, "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n");
        var waiting = ReadToCloseAsync(c, 10_000);
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted);
        _echo.Gate.SetResult();
        Assert.Equal(200, (await ReadResponseAsync(a, new StringBuilder())).Status);
        Assert.Equal(200, (await ReadResponseAsync(b, new StringBuilder())).Status);
        Assert.Contains("X-Path: /c\r\n", await waiting, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Idle_connections_cannot_starve_a_client_with_a_request_the_oldest_idle_one_makes_room()
    {
        await StartAsync(new HttpServerLimits { MaxConnections = 4 });
        var idle = new List<Socket>();
        for (var i = 0; i < 4; i++)
        {
            idle.Add(await ConnectAsync()); // never sends a byte
            await Task.Delay(20);
        }
        try
        {
            for (var round = 0; round < 3; round++)
            {
                using var client = await ConnectAsync();
                var clock = System.Diagnostics.Stopwatch.StartNew();
                await SendAsync(client, "GET /now HTTP/1.1\r\nConnection: close\r\n\r\n");
                Assert.Contains("X-Path: /now\r\n", await ReadToCloseAsync(client, 5000), StringComparison.Ordinal);
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"waited {clock.Elapsed.TotalMilliseconds:0} ms");
            }
            // The oldest idle connections were the ones closed.
            Assert.Equal("", await ReadToCloseAsync(idle[0], 2000));
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task A_body_that_is_announced_but_never_sent_allocates_nothing_like_its_size()
    {
        await StartAsync(new HttpServerLimits { MaxRequestBytes = 64L * 1024 * 1024, RequestTimeout = TimeSpan.FromSeconds(30) });
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var clients = new List<Socket>();
        try
        {
            for (var i = 0; i < 100; i++)
            {
                var socket = await ConnectAsync();
                clients.Add(socket);
                await SendAsync(socket, $"POST /big HTTP/1.1\r\nContent-Length: {64 * 1024 * 1024}\r\n\r\nabc");
            }
            await Task.Delay(1000);
            var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            // 100 × 64 MiB were announced; what the server holds follows the 3 bytes each sent (64 KiB to begin with).
            Assert.True(allocated < 200L << 20, $"{allocated >> 20} MB allocated for 100 announced 64 MiB bodies");
        }
        finally
        {
            clients.ForEach(s => s.Dispose());
        }
        // A body that does arrive in full is read whole, across its growth steps.
        var body = new string('x', 300_000);
        using var client = await ConnectAsync();
        await SendAsync(client, $"POST /echo HTTP/1.1\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}");
        Assert.EndsWith(body, await ReadToCloseAsync(client, 10_000), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stopping_finishes_the_request_in_progress_and_refuses_new_connections()
    {
        _echo.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var socket = await ConnectAsync();
        await SendAsync(socket, "POST /inflight HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
        await Task.Delay(100);
        var stopping = _server.StopAsync(new CancellationTokenSource(5000).Token);
        await Task.Delay(100);
        Assert.False(stopping.IsCompleted);
        _echo.Gate.SetResult();
        var answer = await ReadToCloseAsync(socket);
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", answer, StringComparison.Ordinal);
        Assert.Contains("Connection: close", answer, StringComparison.Ordinal);
        Assert.EndsWith("ok", answer, StringComparison.Ordinal);
        await stopping;
        await Assert.ThrowsAsync<SocketException>(ConnectAsync);
    }

    private async Task ServerStillAnswersAsync()
    {
        using var socket = await ConnectAsync();
        await SendAsync(socket, "POST /fine HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
        Assert.Equal("ok", (await ReadResponseAsync(socket, new StringBuilder())).Body);
    }
}

/// <summary>
/// Tests that count the whole process's allocations (<see cref="GC.GetTotalAllocatedBytes"/>) run alone: another
/// test running beside them (the power-cut tortures copy megabytes) would count as theirs.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideAllocations
{
    public const string Name = "process-wide allocations";
}
