using System.Diagnostics;
using System.Threading.Channels;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Ota;

/// <summary>The device's side of the broker as the chunk transfer needs it (the sync service's MQTT connection).</summary>
public interface IChunkLink
{
    bool Connected { get; }

    /// <summary>Counts connections made: a request sent under an older one was lost with it.</summary>
    int ConnectionEpoch { get; }

    /// <summary>Publishes a request (at most once); false when not connected.</summary>
    Task<bool> RequestChunkAsync(ChunkRequest request, CancellationToken ct);

    /// <summary>Frames received on the device's <c>ota/chunk/data</c>, in arrival order.</summary>
    ChannelReader<byte[]> ChunkFrames { get; }
}

/// <summary>
/// Fetches an artifact's bytes through the broker: chunk requests (<see cref="ChunkRequest"/>) with a window of
/// several in flight, answered by the fleet on the device's own topic. Each request is a pure function of
/// (artifact, offset, length), so a connection drop costs only the chunks then in flight: they are asked again
/// on the next connection, and the transfer goes on from the bytes on disk, never from zero.
/// </summary>
/// <remarks>
/// Flow control: the window grows while answers come within half a second and shrinks when they take more than
/// two (a slow link), and the chunk size follows the measured rate (about half a second of it, between 4 KiB
/// and <see cref="MaxChunkBytes"/>), so that a drop on a 20 kB/s link wastes a few kilobytes, not a window of
/// large chunks. Requests are asked again after a reconnect, or when no answer at all has come for eight times the
/// recent answer time (at least 45 s): over one connection a late answer is queued, not lost.
/// </remarks>
public sealed class ChunkTransfer(IChunkLink link, string deviceId, int maxChunkBytes = ChunkRequest.MaxLength, int maxWindow = 16)
{
    public const int MinChunkBytes = 4 * 1024;

    public int MaxChunkBytes { get; } = Math.Clamp(maxChunkBytes, MinChunkBytes, ChunkRequest.MaxLength);

    private sealed record Asked(int Length, long SentAt, int Epoch);

    /// <summary>
    /// Fetches bytes <paramref name="from"/> to <paramref name="total"/> of artifact <paramref name="sha256"/>,
    /// handing them to <paramref name="write"/> in order. Null when all came; else the failure. Cancelled by
    /// <paramref name="ct"/> (the caller's stall and budget deadlines).
    /// </summary>
    public async Task<OtaFailure?> FetchAsync(string sha256, long from, long total, Func<ReadOnlyMemory<byte>, ValueTask> write, CancellationToken ct)
    {
        while (link.ChunkFrames.TryRead(out _))
        {
            // answers to an earlier transfer
        }
        var have = from;
        var next = from;
        var outstanding = new Dictionary<long, Asked>();
        var ahead = new SortedDictionary<long, ReadOnlyMemory<byte>>();
        double window = 2;
        var latency = 0.5;
        var rate = 0.0;
        var rateClock = Stopwatch.StartNew();
        long rateBytes = 0;
        var lastFrameAt = Stopwatch.GetTimestamp();
        while (have < total)
        {
            ct.ThrowIfCancellationRequested();
            if (!link.Connected)
            {
                await Task.Delay(100, ct).ConfigureAwait(false);
                continue;
            }
            var epoch = link.ConnectionEpoch;
            // Over one connection answers that are late are queued, not lost: after a cut, TCP's backoff can hold them
            // for tens of seconds, and asking again would only send them twice. Only a pipe silent for long (the fleet
            // restarted behind an external broker) is asked again; a reconnect asks again at once.
            var timeout = Math.Max(45, 8 * latency);
            var silent = Stopwatch.GetElapsedTime(lastFrameAt).TotalSeconds > timeout;
            foreach (var (offset, asked) in outstanding.ToList())
            {
                if (asked.Epoch != epoch || (silent && Stopwatch.GetElapsedTime(asked.SentAt).TotalSeconds > timeout))
                {
                    if (!await AskAsync(sha256, offset, asked.Length, epoch, outstanding, ct).ConfigureAwait(false))
                        break;
                }
            }
            var chunk = ChunkBytes(rate);
            while (outstanding.Count < (int)window && next < total)
            {
                var length = (int)Math.Min(chunk, total - next);
                if (!await AskAsync(sha256, next, length, epoch, outstanding, ct).ConfigureAwait(false))
                    break;
                next += length;
            }

            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromMilliseconds(250));
            byte[] payload;
            try
            {
                payload = await link.ChunkFrames.ReadAsync(wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                continue;
            }
            if (ChunkFrame.TryRead(payload, out _) is not { } frame || frame.Sha256 != sha256)
                continue; // not ours: garbage, or an answer to an earlier transfer
            if (frame.Status != ChunkStatus.Data)
                return new OtaFailure(OtaError.DownloadFailed, $"the fleet refused the artifact over MQTT ({frame.Status}): {frame.Reason}");
            if (frame.Total != total)
            {
                return frame.Total > total
                    ? new OtaFailure(OtaError.ArtifactTooLong, $"the fleet's artifact has {frame.Total} bytes; the manifest declares {total}")
                    : new OtaFailure(OtaError.ArtifactTruncated, $"the fleet's artifact has {frame.Total} bytes; the manifest declares {total}");
            }
            lastFrameAt = Stopwatch.GetTimestamp();
            if (!outstanding.Remove(frame.Offset, out var answered))
                continue; // a repeat of an answer already in
            if (frame.Body.Length != answered.Length)
                return new OtaFailure(OtaError.ArtifactTruncated, $"the fleet answered {frame.Body.Length} bytes at {frame.Offset} for {answered.Length} asked");
            var took = Stopwatch.GetElapsedTime(answered.SentAt).TotalSeconds;
            latency = (0.8 * latency) + (0.2 * took);
            window = took < 0.5 ? Math.Min(maxWindow, window + 0.5) : took > 2 ? Math.Max(1, window / 2) : window;
            rateBytes += frame.Body.Length;
            if (rateClock.Elapsed.TotalSeconds >= 1)
            {
                var measured = rateBytes / rateClock.Elapsed.TotalSeconds;
                rate = rate == 0 ? measured : (0.5 * rate) + (0.5 * measured);
                rateBytes = 0;
                rateClock.Restart();
            }
            ahead[frame.Offset] = frame.Body;
            while (ahead.Remove(have, out var bytes))
            {
                await write(bytes).ConfigureAwait(false);
                have += bytes.Length;
            }
        }
        return null;
    }

    /// <summary>About half a second of the measured rate, as a power of two within the limits; the largest before a measurement.</summary>
    private int ChunkBytes(double bytesPerSecond)
    {
        if (bytesPerSecond <= 0)
            return Math.Min(MaxChunkBytes, 16 * 1024);
        var size = MinChunkBytes;
        while (size * 2 <= bytesPerSecond / 2 && size * 2 <= MaxChunkBytes)
            size *= 2;
        return MaxChunkBytes <= bytesPerSecond / 2 ? MaxChunkBytes : size;
    }

    private async Task<bool> AskAsync(string sha256, long offset, int length, int epoch, Dictionary<long, Asked> outstanding, CancellationToken ct)
    {
        var request = new ChunkRequest { DeviceId = deviceId, Sha256 = sha256, Offset = offset, Length = length };
        if (!await link.RequestChunkAsync(request, ct).ConfigureAwait(false))
            return false;
        outstanding[offset] = new Asked(length, Stopwatch.GetTimestamp(), epoch);
        return true;
    }
}
