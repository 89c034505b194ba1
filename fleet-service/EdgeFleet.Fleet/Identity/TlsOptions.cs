using System.Security.Cryptography.X509Certificates;

namespace EdgeFleet.Fleet.Identity;

/// <summary>
/// The fleet's TLS certificate, section <c>Fleet:Tls</c>: used by the HTTPS API (any <c>https://</c> URL in
/// <c>Urls</c>) and the embedded broker's TLS listener. PEM files; the certificate file may hold the chain.
/// </summary>
public sealed record TlsOptions
{
    public string? CertificatePath { get; init; }

    public string? KeyPath { get; init; }

    /// <summary>
    /// Mutual TLS on the embedded broker: a PEM file of the CA that issues device certificates. A device that
    /// presents a certificate chained to it, whose subject common name is its device id, connects without a
    /// device token (it must still be enrolled and not revoked). Devices without a certificate use tokens.
    /// </summary>
    public string? ClientCaPath { get; init; }

    public bool Enabled => CertificatePath is not null;

    public string? Validate()
    {
        if ((CertificatePath is null) != (KeyPath is null))
            return "Fleet:Tls:CertificatePath and Fleet:Tls:KeyPath go together";
        if (ClientCaPath is not null && !Enabled)
            return "Fleet:Tls:ClientCaPath needs Fleet:Tls:CertificatePath (mutual TLS runs over the TLS listener)";
        foreach (var path in new[] { CertificatePath, KeyPath, ClientCaPath })
        {
            if (path is not null && !File.Exists(path))
                return $"TLS file {path} does not exist";
        }
        return null;
    }

    public X509Certificate2 LoadCertificate() => X509Certificate2.CreateFromPemFile(CertificatePath!, KeyPath);

    public X509Certificate2Collection? LoadClientCa()
    {
        if (ClientCaPath is null)
            return null;
        var ca = new X509Certificate2Collection();
        ca.ImportFromPemFile(ClientCaPath);
        return ca;
    }
}
