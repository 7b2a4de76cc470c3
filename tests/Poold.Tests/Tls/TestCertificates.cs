using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Poold.Tests.Tls;

internal static class TestCertificates
{
    /// <summary>A self-signed RSA certificate for localhost, valid for the next hour, with its private key.</summary>
    public static X509Certificate2 SelfSignedLocalhost()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pfx), null);
    }
}
