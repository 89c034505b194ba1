using EdgeFleet.Fleet.Storage;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// A fresh fleet has no operators. At start-up, if the store holds no API key, this creates an admin key and
/// writes it (mode 0600) to <see cref="SecurityOptions.AdminKeyPath"/>: the operator reads it from there
/// once, makes personal keys with it, and may then revoke it. The key is never logged.
/// </summary>
public sealed partial class AdminKeyBootstrap(IFleetStore store, string keyPath, TimeProvider time, ILogger<AdminKeyBootstrap> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if ((await store.ListApiKeysAsync(cancellationToken).ConfigureAwait(false)).Count > 0)
            return;
        var (id, key, hash) = Secrets.NewApiKey();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(keyPath))!);
        var temp = keyPath + ".tmp";
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        await using (var stream = new FileStream(temp, options))
        {
            await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(key + "\n"), cancellationToken).ConfigureAwait(false);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, keyPath, overwrite: true);
        // Stored after the file is written: a crash in between leaves no key in the store, and the next start tries again.
        await store.CreateApiKeyAsync(new ApiKeyRecord
        {
            Id = id,
            Name = "initial admin",
            Role = OperatorRole.Admin,
            SecretHash = hash,
            CreatedAt = time.GetUtcNow(),
            CreatedBy = "bootstrap",
        }, cancellationToken).ConfigureAwait(false);
        Log.Created(log, id, Path.GetFullPath(keyPath));
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static partial class Log
    {
        [LoggerMessage(6101, LogLevel.Warning, "No API key existed: created admin key {KeyId} and wrote it to {Path} (mode 0600); use it to create personal keys, then revoke it")]
        public static partial void Created(ILogger logger, string keyId, string path);
    }
}
