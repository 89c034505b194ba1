using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Identity;

namespace EdgeFleet.Agent.Tests;

public class FleetTrustTests
{
    private static X509Certificate2 SelfSigned(string name, out ECDsa key)
    {
        key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    private static X509Certificate2 Issue(X509Certificate2 ca, string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        return request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(1), [1, 2, 3, 4]);
    }

    [Fact]
    public void A_private_ca_is_trusted_for_what_it_issued_and_nothing_else()
    {
        using var dir = new TempDir();
        using var ca = SelfSigned("Fleet CA", out var caKey);
        using var other = SelfSigned("Other CA", out var otherKey);
        File.WriteAllText(dir.File("ca.pem"), ca.ExportCertificatePem());
        var trust = FleetTrust.From(dir.File("ca.pem"));
        using var server = Issue(ca, "fleet.example");
        using var stranger = Issue(other, "fleet.example");
        // The platform reports an untrusted root (our CA is not in the system store); the CA file decides.
        Assert.True(trust.Validate(server, null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.False(trust.Validate(stranger, null, SslPolicyErrors.RemoteCertificateChainErrors));
        // A name mismatch is never forgiven.
        Assert.False(trust.Validate(server, null, SslPolicyErrors.RemoteCertificateNameMismatch));
        Assert.False(FleetTrust.System.Validate(server, null, SslPolicyErrors.RemoteCertificateChainErrors));
        caKey.Dispose();
        otherKey.Dispose();
    }

    [Fact]
    public void A_ca_file_without_a_certificate_is_a_configuration_error()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("empty.pem"), "not a certificate");
        Assert.Contains("holds no PEM certificate", Assert.Throws<ConfigException>(() => FleetTrust.From(dir.File("empty.pem"))).Message, StringComparison.Ordinal);
    }
}
