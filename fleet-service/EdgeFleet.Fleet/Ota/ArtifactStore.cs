using System.Security.Cryptography;

namespace EdgeFleet.Fleet.Ota;

/// <summary>
/// Model files by content: each stored once under its lower-case hex SHA-256. An upload is hashed while it
/// is written to a temporary file, made durable, then renamed into place, so a half-written upload is
/// never served.
/// </summary>
public sealed class ArtifactStore
{
    private readonly string _directory;

    public ArtifactStore(string directory)
    {
        // Rooted: files are served by path, and a relative one would follow the working directory.
        _directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(directory);
    }

    /// <summary>The folder the artifacts are in.</summary>
    public string Directory => _directory;

    /// <summary>Stores bytes made here (a delta): written to a temporary file, made durable, renamed into place.</summary>
    public string Put(ReadOnlySpan<byte> content)
    {
        var sha = Convert.ToHexStringLower(SHA256.HashData(content));
        if (!File.Exists(PathOf(sha)))
            EdgeFleet.Shared.IO.AtomicFile.Write(PathOf(sha), content);
        return sha;
    }

    public async Task<(string Sha256, long Length)> PutAsync(Stream content, long maxBytes, CancellationToken ct)
    {
        var temp = Path.Combine(_directory, $".upload-{Guid.NewGuid():N}");
        try
        {
            long length = 0;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                int read;
                while ((read = await content.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    length += read;
                    if (length > maxBytes)
                        throw new InvalidDataException($"the upload exceeds {maxBytes} bytes");
                    hash.AppendData(buffer, 0, read);
                    await file.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
                }
                file.Flush(flushToDisk: true);
            }
            if (length == 0)
                throw new InvalidDataException("the upload is empty");
            var sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            File.Move(temp, PathOf(sha), overwrite: true);
            return (sha, length);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>The file of an artifact, or null when the hash is malformed or unknown.</summary>
    public string? Find(string sha256) =>
        sha256.Length == 64 && sha256.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f') && File.Exists(PathOf(sha256)) ? PathOf(sha256) : null;

    private string PathOf(string sha256) => Path.Combine(_directory, sha256);
}
