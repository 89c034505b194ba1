using System.Collections.Concurrent;
using System.Security.Cryptography;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Ota;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Ota;

/// <summary>
/// Artifacts through the broker, for sites whose devices reach only it: answers a device's
/// <see cref="ChunkRequest"/> on its own <c>ota/chunk/data</c> with a <see cref="ChunkFrame"/>. A device gets
/// only the artifacts (and deltas) its current desired state names (served model or shadow); anything else is refused with
/// <see cref="ChunkStatus.NotAllowed"/>. The request topic's device id is the one the broker authenticated, so
/// a device cannot ask in another's name, and the answer goes to the asker's own topic only.
/// </summary>
public sealed class ChunkServer(IFleetStore store, ArtifactStore artifacts, FleetMetrics metrics)
{
    /// <summary>Per device: the SHA-256 of its desired state as last read, and the artifacts it names.</summary>
    private readonly ConcurrentDictionary<string, (byte[] DesiredHash, HashSet<string> Allowed)> _allowed = new(StringComparer.Ordinal);

    /// <summary>The frame answering <paramref name="request"/> from <paramref name="deviceId"/>.</summary>
    public async Task<byte[]> AnswerAsync(string deviceId, ChunkRequest request, CancellationToken ct)
    {
        var allowed = await AllowedAsync(deviceId, ct).ConfigureAwait(false);
        if (!allowed.Contains(request.Sha256))
        {
            metrics.CountChunkRefused();
            return ChunkFrame.Refuse(ChunkStatus.NotAllowed, request.Sha256, request.Offset,
                $"artifact {request.Sha256} is not named by device {deviceId}'s desired state");
        }
        if (artifacts.Find(request.Sha256) is not { } path)
        {
            metrics.CountChunkRefused();
            return ChunkFrame.Refuse(ChunkStatus.Unknown, request.Sha256, request.Offset, $"the fleet has no artifact {request.Sha256}");
        }
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            var total = RandomAccess.GetLength(handle);
            if (request.Offset >= total)
            {
                metrics.CountChunkRefused();
                return ChunkFrame.Refuse(ChunkStatus.BadRequest, request.Sha256, request.Offset,
                    $"offset {request.Offset} is at or past the artifact's end ({total} bytes)");
            }
            var length = (int)Math.Min(request.Length, total - request.Offset);
            var frame = ChunkFrame.Allocate(request.Sha256, request.Offset, total, length);
            var read = 0;
            while (read < length)
            {
                var n = await RandomAccess.ReadAsync(handle, frame.AsMemory(ChunkFrame.HeaderBytes + read, length - read), request.Offset + read, ct)
                    .ConfigureAwait(false);
                if (n == 0)
                    throw new IOException($"artifact {request.Sha256} ended early");
                read += n;
            }
            metrics.CountChunkServed(length);
            return frame;
        }
        catch (FileNotFoundException)
        {
            metrics.CountChunkRefused();
            return ChunkFrame.Refuse(ChunkStatus.Unknown, request.Sha256, request.Offset, $"the fleet has no artifact {request.Sha256}");
        }
    }

    /// <summary>The SHA-256s of the artifacts (every profile's) that the device's desired state names.</summary>
    private async Task<HashSet<string>> AllowedAsync(string deviceId, CancellationToken ct)
    {
        var desired = await store.GetDesiredAsync(deviceId, ct).ConfigureAwait(false);
        if (desired is null)
            return [];
        var hash = SHA256.HashData(desired);
        if (_allowed.TryGetValue(deviceId, out var known) && known.DesiredHash.AsSpan().SequenceEqual(hash))
            return known.Allowed;
        var allowed = new HashSet<string>(StringComparer.Ordinal);
        var state = WireReader.Read(desired, WireJsonContext.Default.DesiredState, deviceId);
        if (state.Ok)
        {
            foreach (var envelope in new[] { state.Message!.Manifest, state.Message.Shadow })
            {
                if (envelope is not { } element)
                    continue;
                var manifest = SignedDocuments.Parse(System.Text.Encoding.UTF8.GetBytes(element.GetRawText()),
                    OtaJsonContext.Default.ModelManifest, ModelManifest.TypeName);
                if (manifest.Ok)
                {
                    foreach (var artifact in manifest.Document!.Body.Artifacts.Values)
                    {
                        allowed.Add(artifact.Sha256);
                        allowed.UnionWith((artifact.Deltas ?? []).Select(d => d.Sha256));
                    }
                }
            }
        }
        _allowed[deviceId] = (hash, allowed);
        return allowed;
    }
}
