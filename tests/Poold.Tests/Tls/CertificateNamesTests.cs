using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Poold.Tls;

namespace Poold.Tests.Tls;

public class CertificateNamesTests
{
    private static X509Certificate2 SelfSigned(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new CertificateRequest(subject, key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1),
            DateTimeOffset.UtcNow.AddHours(1));
    }

    [TestCase("CN=alice", "alice", TestName = "CommonName_OnlyCn_IsTheCn")]
    [TestCase("CN=alice, OU=ops, O=Example", "alice", TestName = "CommonName_WithOuAndO_IsTheCn")]
    [TestCase("O=Example, CN=Alice", "Alice", TestName = "CommonName_CaseIsKept")]
    [TestCase("E=alice, OU=alice, O=alice", null, TestName = "CommonName_NoCnButEmailOuAndOEqualToTheUser_IsNull")]
    [TestCase("OU=alice", null, TestName = "CommonName_OnlyOu_IsNull")]
    public void CommonName_ReadsTheCnAttributeOnly(string subject, string? expected)
    {
        using var cert = SelfSigned(subject);
        Assert.That(CertificateNames.CommonName(cert), Is.EqualTo(expected));
    }

    [Test]
    public void CommonName_NoCnButAnEmailEqualToTheUser_IsNull_WhereSimpleNameFallsBackToTheEmail()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=Example", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddEmailAddress("alice");
        request.CertificateExtensions.Add(san.Build());
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));

        // The hole this closes: .NET's SimpleName, which pool_hba's cert used to compare, falls back to the e-mail.
        Assert.That(cert.GetNameInfo(X509NameType.SimpleName, forIssuer: false), Is.EqualTo("alice"));
        Assert.That(CertificateNames.CommonName(cert), Is.Null);
    }
}
