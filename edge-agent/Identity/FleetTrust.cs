using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using EdgeFleet.Agent.Configuration;

namespace EdgeFleet.Agent.Identity;

/// <summary>
/// Which TLS certificates the agent trusts for the fleet (broker and HTTPS API): the system's CAs, or only the
/// CA in <c>fleetCaFile</c> for a fleet on a private PKI. Host names are always checked.
/// </summary>
public sealed class FleetTrust
{
    private readonly X509Certificate2Collection? _ca;

    private FleetTrust(X509Certificate2Collection? ca) => _ca = ca;

    public static FleetTrust System { get; } = new(null);

    /// <summary>Loads the CA file; a missing or unreadable file is a configuration error.</summary>
    public static FleetTrust From(string? caFile)
    {
        if (caFile is null)
            return System;
        var ca = new X509Certificate2Collection();
        try
        {
            ca.ImportFromPemFile(caFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or global::System.Security.Cryptography.CryptographicException)
        {
            throw new ConfigException($"fleetCaFile {caFile}: {e.Message}");
        }
        return ca.Count == 0 ? throw new ConfigException($"fleetCaFile {caFile} holds no PEM certificate") : new FleetTrust(ca);
    }

    public bool Validate(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (_ca is null)
            return errors == SslPolicyErrors.None;
        if (certificate is null || (errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0)
            return false;
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(_ca);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
            custom.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
        return custom.Build(certificate as X509Certificate2 ?? new X509Certificate2(certificate));
    }

    /// <summary>An HTTP client for the fleet's API that trusts what this trusts.</summary>
    public HttpClient CreateHttpClient(TimeSpan timeout, Uri? baseAddress = null)
    {
        var handler = new SocketsHttpHandler();
        if (_ca is not null)
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, chain, errors) => Validate(certificate, chain, errors);
        return new HttpClient(handler) { Timeout = timeout, BaseAddress = baseAddress };
    }
}
