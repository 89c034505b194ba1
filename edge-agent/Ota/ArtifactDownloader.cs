using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Sync;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.IO;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Ota;

/// <summary>
/// Fetches one artifact into <c>{folder}/model.onnx</c>: HTTP range requests or chunk requests through the broker
/// (<see cref="ChunkTransfer"/>; <see cref="ArtifactTransportMode"/> chooses), either resuming from the bytes
/// already in <c>model.onnx.part</c> (after a dropped connection or an agent restart), never more than the
/// manifest's declared length (endless-data attack), then SHA-256 over the whole file before the final
/// rename. Returns null on success, else the failure.
/// </summary>
/// <remarks>
/// Deadlines: an attempt that receives nothing for <see cref="DownloadDeadlines.Stall"/> (headers or body) is
/// abandoned, and so is one that runs past its budget (<see cref="DownloadDeadlines.Budget"/>: a base plus the
/// declared length at a minimum rate); the bytes so far stay for the next attempt. Once the declared bytes are in,
/// the check for endless data waits only <see cref="DownloadDeadlines.TrailingGrace"/>: a host that then holds the
/// connection open has sent all it should.
/// </remarks>
/// <param name="authorize">The Authorization header for a URL (the device's token on the fleet's own origin), or null.</param>
/// <param name="files">Where the files are (tests pass a power-cut simulator); the operating system's when null.</param>
/// <param name="broker">Chunk requests through the broker, for <see cref="ArtifactTransportMode.Mqtt"/> and as the fallback of <see cref="ArtifactTransportMode.Auto"/>.</param>
public sealed class ArtifactDownloader(HttpClient http, int maxAttempts, double minBackoffSeconds = 0.5, double maxBackoffSeconds = 30,
    Func<Uri, AuthenticationHeaderValue?>? authorize = null, DownloadDeadlines? deadlines = null, FileSystem? files = null,
    ChunkTransfer? broker = null, ArtifactTransportMode mode = ArtifactTransportMode.Auto)
{
    /// <summary>After HTTP could not reach the artifact's host, <see cref="ArtifactTransportMode.Auto"/> goes through the broker this long before trying HTTP again.</summary>
    private static readonly TimeSpan PreferBrokerFor = TimeSpan.FromMinutes(10);

    private long? _httpUnreachableAt;

    /// <summary>How the current (or last) download's bytes are coming.</summary>
    public OtaTransport? Transport { get; private set; }

    /// <summary>Raised with the count of each block of artifact bytes received, over either transport (the byte budget counts them).</summary>
    public event Action<long>? BytesReceived;

    private readonly FileSystem _files = files ?? FileSystem.Os;
    private const long SpaceMarginBytes = 1 << 20;
    private readonly DownloadDeadlines _deadlines = deadlines ?? new DownloadDeadlines();

    public static string FinalPath(string folder) => Path.Combine(folder, "model.onnx");

    /// <param name="url">The artifact's HTTP URL; null when it has none the device can resolve (the broker is then the only way).</param>
    public async Task<OtaFailure?> DownloadAsync(Uri? url, string folder, ArtifactEntry artifact, Action<long>? progress, CancellationToken ct)
    {
        Transport = null;
        Directory.CreateDirectory(folder);
        var final = FinalPath(folder);
        if (_files.Exists(final))
        {
            // A previous run finished the download; its hash is checked again (it may be what a crash left).
            if (await HashMatchesAsync(_files, final, artifact, ct).ConfigureAwait(false))
                return null;
            _files.Delete(final);
        }
        var part = final + ".part";
        var resumedAtStart = LengthOf(part) > 0;
        var failure = await FetchAsync(url, part, artifact, progress, ct).ConfigureAwait(false);
        if (failure is not null)
            return failure;
        if (!await HashMatchesAsync(_files, part, artifact, ct).ConfigureAwait(false))
        {
            _files.Delete(part);
            // Bytes resumed from before a power loss may be garbage: one clean download before giving up.
            if (!resumedAtStart || await FetchAsync(url, part, artifact, progress, ct).ConfigureAwait(false) is not null
                || !await HashMatchesAsync(_files, part, artifact, ct).ConfigureAwait(false))
            {
                _files.Delete(part);
                return new OtaFailure(OtaError.HashMismatch, $"the artifact's SHA-256 is not {artifact.Sha256}");
            }
        }
        // The .part file was synced when its last byte came: the name can only reach the disk after the data.
        _files.Rename(part, final, overwrite: true);
        _files.SyncDirectory(folder);
        return null;
    }

    /// <summary>The transport of the next attempt: as configured, or for auto, HTTP unless its host was unreachable lately.</summary>
    private OtaTransport? Choose(Uri? url) => mode switch
    {
        ArtifactTransportMode.Http => url is null ? null : OtaTransport.Http,
        ArtifactTransportMode.Mqtt => broker is null ? null : OtaTransport.Mqtt,
        _ when broker is null => url is null ? null : OtaTransport.Http,
        _ when url is null => OtaTransport.Mqtt,
        _ => _httpUnreachableAt is { } at && System.Diagnostics.Stopwatch.GetElapsedTime(at) < PreferBrokerFor ? OtaTransport.Mqtt : OtaTransport.Http,
    };

    /// <summary>Whether an HTTP failure means the host cannot be reached at all (no connection), rather than a failed transfer.</summary>
    private static bool Unreachable(Exception e) =>
        e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError }
        || (e is HttpRequestException { InnerException: System.Net.Sockets.SocketException });

    private async Task<OtaFailure?> FetchAsync(Uri? url, string part, ArtifactEntry artifact, Action<long>? progress, CancellationToken ct)
    {
        OtaFailure? last = null;
        var switched = false;
        for (var attempt = 0; attempt < maxAttempts; attempt++)
        {
            if (attempt > 0 && !switched)
                await Task.Delay(Backoff.Next(attempt - 1, minBackoffSeconds, maxBackoffSeconds), ct).ConfigureAwait(false);
            var have = LengthOf(part);
            if (have > artifact.Length)
            {
                _files.Delete(part);
                have = 0;
            }
            if (have == artifact.Length)
                return null;
            var free = new DriveInfo(Path.GetDirectoryName(Path.GetFullPath(part))!).AvailableFreeSpace;
            if (free < artifact.Length - have + SpaceMarginBytes)
                return new OtaFailure(OtaError.InsufficientSpace, $"the artifact needs {artifact.Length - have} more bytes; {free} are free");
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(_deadlines.Stall);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var budget = _deadlines.Budget(artifact.Length - have);
            var transport = Choose(url);
            if (transport is null)
                return new OtaFailure(OtaError.DownloadFailed, url is null
                    ? "the artifact's url is a path and ota.fleetUrl is not configured, and ota.transport does not allow the broker"
                    : "ota.transport is mqtt but the agent has no broker connection");
            Transport = transport;
            var source = transport == OtaTransport.Mqtt ? "the broker" : url!.ToString();
            var headersSeen = false;
            try
            {
                last = transport == OtaTransport.Mqtt
                    ? await FetchOverBrokerAsync(part, have, artifact, progress, deadline, clock, budget).ConfigureAwait(false)
                    : await FetchOnceAsync(url!, part, have, artifact, progress, deadline, clock, budget, () => headersSeen = true).ConfigureAwait(false);
                if (last is null || last.Code == OtaError.ArtifactTooLong)
                    return last;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                last = clock.Elapsed >= budget
                    ? new OtaFailure(OtaError.DownloadFailed, $"download from {source} ran past its budget of {budget.TotalSeconds:0} s for {artifact.Length - have} bytes")
                    : new OtaFailure(OtaError.DownloadFailed, $"download from {source} made no progress for {_deadlines.Stall.TotalSeconds:0} s");
                if (transport == OtaTransport.Http && !headersSeen)
                    _httpUnreachableAt = System.Diagnostics.Stopwatch.GetTimestamp(); // no answer at all: a black hole
            }
            catch (Exception e) when (e is HttpRequestException or IOException && !ct.IsCancellationRequested)
            {
                last = new OtaFailure(OtaError.DownloadFailed, $"download from {source} failed: {e.Message}");
                if (transport == OtaTransport.Http && Unreachable(e))
                    _httpUnreachableAt = System.Diagnostics.Stopwatch.GetTimestamp();
            }
            // The host is out of reach: the broker at once, its attempts counted on their own.
            switched = transport == OtaTransport.Http && Choose(url) == OtaTransport.Mqtt;
            if (switched)
                attempt--;
        }
        return last;
    }

    /// <summary>One attempt. <paramref name="deadline"/> fires after a stall (reset by every read that brings bytes) or at the budget's end.</summary>
    private async Task<OtaFailure?> FetchOnceAsync(Uri url, string part, long have, ArtifactEntry artifact, Action<long>? progress,
        CancellationTokenSource deadline, System.Diagnostics.Stopwatch clock, TimeSpan budget, Action answered)
    {
        var ct = deadline.Token;
        void Progressed() => Extend(deadline, clock, budget);
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Authorization = authorize?.Invoke(url);
        if (have > 0)
            request.Headers.Range = new RangeHeaderValue(have, null);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        answered();
        Progressed();
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // The server's file is no longer than what we have, yet we lack bytes: start over.
            _files.Delete(part);
            return new OtaFailure(OtaError.ArtifactTruncated, $"the server has fewer than {artifact.Length} bytes");
        }
        if (!response.IsSuccessStatusCode)
            return new OtaFailure(OtaError.DownloadFailed, $"{url} answered {(int)response.StatusCode}");
        if (response.StatusCode != HttpStatusCode.PartialContent)
            have = 0; // The server ignored the range: take the whole file again.
        var remaining = artifact.Length - have;
        if (response.Content.Headers.ContentLength is { } announced && announced > remaining)
            return new OtaFailure(OtaError.ArtifactTooLong, $"the server announced {announced + have} bytes; the manifest declares {artifact.Length}");

        await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        await using var file = _files.Open(part);
        if (have == 0)
            file.SetLength(0);
        file.Seek(have, SeekOrigin.Begin);
        var buffer = new byte[64 * 1024];
        while (remaining > 0)
        {
            int read;
            try
            {
                read = await body.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                // The bytes so far stay in the .part file; the next attempt resumes from them.
                return new OtaFailure(OtaError.ArtifactTruncated, $"the connection ended {remaining} bytes short of the declared {artifact.Length}: {e.Message}");
            }
            if (read == 0)
                return new OtaFailure(OtaError.ArtifactTruncated, $"the connection ended {remaining} bytes short of the declared {artifact.Length}");
            await file.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
            BytesReceived?.Invoke(read);
            remaining -= read;
            have += read;
            progress?.Invoke(have);
            Progressed();
        }
        file.Sync();
        // Endless data: the declared length is all we take; one more byte means the server lies. A server that
        // neither sends more nor closes has sent everything: the hash decides.
        deadline.CancelAfter(_deadlines.TrailingGrace);
        try
        {
            if (await body.ReadAsync(buffer.AsMemory(0, 1), ct).ConfigureAwait(false) > 0)
            {
                file.Close();
                _files.Delete(part);
                return new OtaFailure(OtaError.ArtifactTooLong, $"the server sent more than the declared {artifact.Length} bytes");
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException && deadline.IsCancellationRequested)
        {
            // silent after the declared bytes: complete
        }
        return null;
    }

    /// <summary>Bytes came: the stall deadline starts again, within the attempt's budget.</summary>
    private void Extend(CancellationTokenSource deadline, System.Diagnostics.Stopwatch clock, TimeSpan budget)
    {
        var left = budget - clock.Elapsed;
        deadline.CancelAfter(left < _deadlines.Stall ? (left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1)) : _deadlines.Stall);
    }

    /// <summary>
    /// One attempt through the broker (<see cref="ChunkTransfer"/>): the bytes from <paramref name="have"/> on, in
    /// order, into the .part file; never more than the declared length is asked for, and an answer that says the
    /// fleet's artifact is longer is refused as endless data.
    /// </summary>
    private async Task<OtaFailure?> FetchOverBrokerAsync(string part, long have, ArtifactEntry artifact, Action<long>? progress,
        CancellationTokenSource deadline, System.Diagnostics.Stopwatch clock, TimeSpan budget)
    {
        await using var file = _files.Open(part);
        if (have == 0)
            file.SetLength(0);
        file.Seek(have, SeekOrigin.Begin);
        OtaFailure? failure;
        try
        {
            failure = await broker!.FetchAsync(artifact.Sha256, have, artifact.Length, async bytes =>
            {
                await file.WriteAsync(bytes, deadline.Token).ConfigureAwait(false);
                BytesReceived?.Invoke(bytes.Length);
                have += bytes.Length;
                progress?.Invoke(have);
                Extend(deadline, clock, budget);
            }, deadline.Token).ConfigureAwait(false);
        }
        finally
        {
            file.Sync(); // what came stays for the next attempt, durably
        }
        if (failure?.Code == OtaError.ArtifactTooLong)
        {
            file.Close();
            _files.Delete(part);
        }
        return failure;
    }

    private long LengthOf(string path)
    {
        if (!_files.Exists(path))
            return 0;
        using var stream = _files.OpenRead(path);
        return stream.Length;
    }

    /// <summary>Streams the file through SHA-256 (1 MiB reads; see the OTA benchmark for the rate).</summary>
    public static Task<bool> HashMatchesAsync(string path, ArtifactEntry artifact, CancellationToken ct) =>
        HashMatchesAsync(FileSystem.Os, path, artifact, ct);

    /// <summary>Whether the file exists with the artifact's length and SHA-256.</summary>
    public static async Task<bool> HashMatchesAsync(FileSystem files, string path, ArtifactEntry artifact, CancellationToken ct)
    {
        if (!files.Exists(path))
            return false;
        await using var stream = files.OpenRead(path);
        if (stream.Length != artifact.Length)
            return false;
        var actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct).ConfigureAwait(false));
        return string.Equals(actual, artifact.Sha256, StringComparison.Ordinal);
    }

    public static async Task<string> Sha256Async(string path, CancellationToken ct)
    {
        await using var stream = FileSystem.Os.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct).ConfigureAwait(false));
    }
}

/// <summary>How long a download may stall or take (<see cref="ArtifactDownloader"/>).</summary>
/// <param name="StallSeconds">No byte (or no response headers) for this long abandons the attempt.</param>
/// <param name="MinBytesPerSecond">The slowest rate an attempt's budget allows for (on top of <paramref name="BaseSeconds"/>).</param>
/// <param name="BaseSeconds">The fixed part of an attempt's budget (connection set-up, slow start).</param>
/// <param name="TrailingGraceSeconds">After the declared bytes, how long to wait for the end of the body.</param>
public sealed record DownloadDeadlines(double StallSeconds = 30, double MinBytesPerSecond = 1024, double BaseSeconds = 60, double TrailingGraceSeconds = 2)
{
    public TimeSpan Stall => TimeSpan.FromSeconds(StallSeconds);

    public TimeSpan TrailingGrace => TimeSpan.FromSeconds(TrailingGraceSeconds);

    public TimeSpan Budget(long bytes) => TimeSpan.FromSeconds(BaseSeconds + (bytes / MinBytesPerSecond));
}
