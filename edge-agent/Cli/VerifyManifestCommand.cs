using System.Globalization;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Ota;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Agent.Cli;

/// <summary>
/// <c>edgefleet-agent verify-manifest</c>: the device's own checks, offline, for a field engineer or a
/// pipeline: the chain of trust, expiry, version floor and profile, and with <c>--artifact</c> the file's
/// length, hash, loadability, schema and health check. Prints <c>ok</c> or <c>code: reason</c>.
/// </summary>
public static class VerifyManifestCommand
{
    public static async Task<int> RunAsync(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("manifest", "keyset", "root", "profile", "installed", "artifact", "model-id", "json");
        var manifest = Read(args.Require("manifest"));
        var keySet = Read(args.Require("keyset"));
        var root = Read(args.Get("root") ?? "/etc/edgefleet/root.json");
        var profile = args.Get("profile") ?? "x86-64-generic";
        var installed = long.TryParse(args.Get("installed") ?? "0", CultureInfo.InvariantCulture, out var v) ? v : throw new UsageException("--installed must be an integer");

        var verified = UpdateVerifier.Verify(root, null, manifest, keySet, [], DateTimeOffset.UtcNow, profile, _ => installed, args.Get("model-id"));
        if (!verified.Ok)
            return Fail(args, stdout, stderr, verified.Failure!);
        var m = verified.Document!.Manifest;
        if (args.Get("artifact") is { } artifactPath)
        {
            var failure = await CheckArtifactAsync(artifactPath, m, m.Artifacts[profile]).ConfigureAwait(false);
            if (failure is not null)
                return Fail(args, stdout, stderr, failure);
        }
        stdout.WriteLine(args.Has("json")
            ? $"{{\"ok\":true,\"modelId\":\"{m.ModelId}\",\"version\":{m.Version}}}"
            : $"ok: {m.ModelId} v{m.Version} for {profile}, expires {m.Expires:u}");
        return 0;
    }

    private static async Task<OtaFailure?> CheckArtifactAsync(string path, ModelManifest manifest, ArtifactEntry artifact)
    {
        var length = new FileInfo(path).Length;
        if (length > artifact.Length)
            return new OtaFailure(OtaError.ArtifactTooLong, $"{path} is {length} bytes; the manifest declares {artifact.Length}");
        if (length < artifact.Length)
            return new OtaFailure(OtaError.ArtifactTruncated, $"{path} is {length} bytes; the manifest declares {artifact.Length}");
        if (!await ArtifactDownloader.HashMatchesAsync(path, artifact, CancellationToken.None).ConfigureAwait(false))
            return new OtaFailure(OtaError.HashMismatch, $"the SHA-256 of {path} is not {artifact.Sha256}");
        ModelSession session;
        try
        {
            session = ModelSession.Load(path);
        }
        catch (InferenceException e)
        {
            return new OtaFailure(OtaError.ModelLoadFailed, e.Message);
        }
        using (session)
            return HealthChecker.CheckSchema(session, manifest.Schema) ?? HealthChecker.Run(session, manifest.HealthCheck);
    }

    private static byte[] Read(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"cannot read {path}: {e.Message}");
        }
    }

    private static int Fail(CommandLine args, TextWriter stdout, TextWriter stderr, OtaFailure failure)
    {
        if (args.Has("json"))
            stdout.WriteLine($"{{\"ok\":false,\"error\":\"{OtaErrors.Name(failure.Code)}\",\"reason\":{System.Text.Json.JsonSerializer.Serialize(failure.Reason, OtaJsonContext.Default.String)}}}");
        else
            stderr.WriteLine(failure.ToString());
        return 1;
    }
}
