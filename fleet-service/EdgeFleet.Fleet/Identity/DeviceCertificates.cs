using System.Security.Cryptography.X509Certificates;

namespace EdgeFleet.Fleet.Identity;

/// <summary>Device client certificates for mutual TLS on the embedded broker.</summary>
public static class DeviceCertificates
{
    /// <summary>True when <paramref name="certificate"/> is valid now and chains to one of <paramref name="ca"/> (and only those).</summary>
    public static bool ChainsTo(X509Certificate2 certificate, X509Certificate2Collection ca)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck; // revocation is the fleet's: devices are revoked by id
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")); // client authentication
        return chain.Build(certificate);
    }
}
