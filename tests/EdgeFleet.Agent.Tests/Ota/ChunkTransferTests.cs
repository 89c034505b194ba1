using System.Security.Cryptography;
using System.Threading.Channels;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Ota;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests.Ota;

/// <summary>
/// The device's side of artifacts through the broker, against a fleet that answers with real chunk frames: out of
/// order, across dropped connections, lying about the length; and the downloader choosing the broker when HTTP
/// cannot reach the artifact's host.
/// </summary>
public sealed class ChunkTransferTests : IDisposable
{
    private readonly TempDir _dir = new();

    /// <summary>A broker plus fleet in memory: answers each request after a random delay, and can drop the connection.</summary>
    private sealed class FakeBroker : IChunkLink
    {
        private readonly Channel<byte[]> _frames = Channel.CreateUnbounded<byte[]>();
        private readonly Dictionary<string, byte[]> _artifacts = [];
        private volatile bool _connected = true;
        private int _epoch = 1;
        private int _requests;

        public void Add(byte[] bytes) => _artifacts[Convert.ToHexStringLower(SHA256.HashData(bytes))] = bytes;

        /// <summary>Drops the connection (answers in flight are lost) on these request numbers, for 100 ms.</summary>
        public HashSet<int> DropOn { get; } = [];

        /// <summary>The fleet claims this total (an artifact longer or shorter than the manifest says).</summary>
        public long? ClaimTotal { get; set; }

        public List<(long Offset, int Length)> Requests { get; } = [];

        public long BytesAnswered;

        public bool Connected => _connected;

        public int ConnectionEpoch => Volatile.Read(ref _epoch);

        public ChannelReader<byte[]> ChunkFrames => _frames.Reader;

        public Task<bool> RequestChunkAsync(ChunkRequest request, CancellationToken ct)
        {
            if (!_connected)
                return Task.FromResult(false);
            lock (Requests)
                Requests.Add((request.Offset, request.Length));
            var number = Interlocked.Increment(ref _requests);
            var epoch = ConnectionEpoch;
            if (DropOn.Contains(number))
            {
                _connected = false;
                _ = Task.Delay(100, CancellationToken.None).ContinueWith(_ =>
                {
                    Interlocked.Increment(ref _epoch);
                    _connected = true;
                }, TaskScheduler.Default);
            }
            _ = Task.Delay(Random.Shared.Next(0, 15), CancellationToken.None).ContinueWith(_ =>
            {
                if (ConnectionEpoch != epoch || !_connected)
                    return; // lost with its connection
                byte[] frame;
                if (!_artifacts.TryGetValue(request.Sha256, out var bytes))
                {
                    frame = ChunkFrame.Refuse(ChunkStatus.NotAllowed, request.Sha256, request.Offset, "not named by this device's desired state");
                }
                else
                {
                    var length = (int)Math.Min(request.Length, bytes.Length - request.Offset);
                    frame = ChunkFrame.Write(request.Sha256, request.Offset, ClaimTotal ?? bytes.Length, bytes.AsSpan((int)request.Offset, length));
                    Interlocked.Add(ref BytesAnswered, length);
                }
                _frames.Writer.TryWrite(frame);
            }, TaskScheduler.Default);
            return Task.FromResult(true);
        }
    }

    private static byte[] Artifact(int length)
    {
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        return bytes;
    }

    private static ArtifactEntry Entry(byte[] bytes) => new()
    {
        Url = "/api/artifacts/x", Sha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)), Length = bytes.Length,
    };

    [Fact]
    public async Task Answers_out_of_order_and_across_dropped_connections_assemble_the_artifact_asking_only_for_what_was_lost()
    {
        var broker = new FakeBroker();
        var bytes = Artifact(700_000);
        broker.Add(bytes);
        broker.DropOn.UnionWith([5, 17, 30]);
        var transfer = new ChunkTransfer(broker, "d1", maxChunkBytes: 16 * 1024);
        var received = new MemoryStream();
        var failure = await transfer.FetchAsync(Entry(bytes).Sha256, 0, bytes.Length, b =>
        {
            received.Write(b.Span);
            return ValueTask.CompletedTask;
        }, new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.Null(failure);
        Assert.Equal(bytes, received.ToArray());
        // Each drop costs at most the window then in flight (16 chunks of 16 KiB), never a restart from zero.
        Assert.InRange(broker.BytesAnswered, bytes.Length, bytes.Length + (3 * 16 * 16 * 1024));
        Assert.All(broker.Requests.GroupBy(r => r.Offset), g => Assert.InRange(g.Count(), 1, 4));
        Assert.Equal(0, broker.Requests.Min(r => r.Offset));
    }

    [Fact]
    public async Task A_transfer_resumes_from_the_bytes_on_disk()
    {
        var broker = new FakeBroker();
        var bytes = Artifact(300_000);
        broker.Add(bytes);
        var folder = _dir.File("resume");
        Directory.CreateDirectory(folder);
        await File.WriteAllBytesAsync(Path.Combine(folder, "model.onnx.part"), bytes[..123_456]);
        using var http = new HttpClient();
        var downloader = new ArtifactDownloader(http, maxAttempts: 2, broker: new ChunkTransfer(broker, "d1"), mode: ArtifactTransportMode.Mqtt);
        Assert.Null(await downloader.DownloadAsync(null, folder, Entry(bytes), null, CancellationToken.None));
        Assert.Equal(bytes, await File.ReadAllBytesAsync(ArtifactDownloader.FinalPath(folder)));
        Assert.Equal(123_456, broker.Requests.Min(r => r.Offset));
        Assert.Equal(bytes.Length - 123_456, broker.BytesAnswered);
        Assert.Equal(OtaTransport.Mqtt, downloader.Transport);
    }

    [Theory]
    [InlineData(1, OtaError.ArtifactTooLong)]
    [InlineData(-1, OtaError.ArtifactTruncated)]
    public async Task A_fleet_that_claims_another_length_is_refused_and_nothing_is_installed(int delta, OtaError expected)
    {
        var broker = new FakeBroker();
        var bytes = Artifact(100_000);
        broker.Add(bytes);
        broker.ClaimTotal = bytes.Length + delta;
        var folder = _dir.File($"lies{delta}");
        using var http = new HttpClient();
        var downloader = new ArtifactDownloader(http, maxAttempts: 1, broker: new ChunkTransfer(broker, "d1"), mode: ArtifactTransportMode.Mqtt);
        var failure = await downloader.DownloadAsync(null, folder, Entry(bytes), null, CancellationToken.None);
        Assert.Equal(expected, failure?.Code);
        Assert.False(File.Exists(ArtifactDownloader.FinalPath(folder)));
    }

    [Fact]
    public async Task A_refusal_by_the_fleet_ends_the_transfer_with_its_reason()
    {
        var broker = new FakeBroker();
        var bytes = Artifact(10_000);
        using var http = new HttpClient();
        var downloader = new ArtifactDownloader(http, maxAttempts: 1, broker: new ChunkTransfer(broker, "d1"), mode: ArtifactTransportMode.Mqtt);
        var failure = await downloader.DownloadAsync(null, _dir.File("refused"), Entry(bytes), null, CancellationToken.None);
        Assert.Equal(OtaError.DownloadFailed, failure?.Code);
        Assert.Contains("not named by this device's desired state", failure!.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Auto_goes_through_the_broker_when_the_artifact_s_host_refuses_connections_and_http_only_does_not()
    {
        var broker = new FakeBroker();
        var bytes = Artifact(200_000);
        broker.Add(bytes);
        // A port nothing listens on: connection refused, as at a site whose firewall rejects all but the broker.
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        var closed = new Uri($"http://127.0.0.1:{((System.Net.IPEndPoint)probe.LocalEndpoint).Port}/api/artifacts/x");
        probe.Stop();
        using var http = new HttpClient();

        var auto = new ArtifactDownloader(http, maxAttempts: 2, minBackoffSeconds: 0.01, broker: new ChunkTransfer(broker, "d1"));
        var folder = _dir.File("auto");
        Assert.Null(await auto.DownloadAsync(closed, folder, Entry(bytes), null, CancellationToken.None));
        Assert.Equal(OtaTransport.Mqtt, auto.Transport);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(ArtifactDownloader.FinalPath(folder)));

        var httpOnly = new ArtifactDownloader(http, maxAttempts: 2, minBackoffSeconds: 0.01, broker: new ChunkTransfer(broker, "d1"), mode: ArtifactTransportMode.Http);
        var failure = await httpOnly.DownloadAsync(closed, _dir.File("http"), Entry(bytes), null, CancellationToken.None);
        Assert.Equal(OtaError.DownloadFailed, failure?.Code);
        Assert.Equal(OtaTransport.Http, httpOnly.Transport);
    }

    public void Dispose() => _dir.Dispose();
}
