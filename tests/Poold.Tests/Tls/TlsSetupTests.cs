using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Poold.Config;
using Poold.Tls;

namespace Poold.Tests.Tls;

public class TlsSetupTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("poold-tls-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private static X509Certificate2 CreateCa(string name, RSA key, X509Certificate2? issuer = null, RSA? issuerKey = null)
    {
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return issuer is null
            ? request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1))
            : request.Create(issuer.SubjectName, X509SignatureGenerator.CreateForRSA(issuerKey!, RSASignaturePadding.Pkcs1),
                DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
    }

    /// <summary>ssl = on with a server certificate, plus <paramref name="extra"/> lines; the files live in the test's directory.</summary>
    private TlsSetup Create(string extra = "")
    {
        using var key = RSA.Create(2048);
        using var cert = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(Path.Combine(_dir, "server.crt"), cert.ExportCertificatePem());
        File.WriteAllText(Path.Combine(_dir, "server.key"), key.ExportPkcs8PrivateKeyPem());
        return TlsSetup.Create(TestSettings.Parse($"""
            ssl = on
            ssl_cert = '{_dir}/server.crt'
            ssl_key = '{_dir}/server.key'
            {extra}
            """));
    }

    private string WriteCa(string name)
    {
        using var key = RSA.Create(2048);
        using var ca = CreateCa(name, key);
        var path = Path.Combine(_dir, name + ".crt");
        File.WriteAllText(path, ca.ExportCertificatePem());
        return path;
    }

    [Test]
    public void ServerOptions_ClientCertificatePolicy_TrustsOnlyOurCas_AndFetchesNothing()
    {
        var tls = Create($"ssl_ca_cert = '{WriteCa("client-ca")}'");
        var policy = tls.ServerOptions().CertificateChainPolicy;
        Assert.That(policy, Is.Not.Null);
        Assert.That((policy!.TrustMode, policy.DisableCertificateDownloads, policy.RevocationMode),
            Is.EqualTo((X509ChainTrustMode.CustomRootTrust, true, X509RevocationMode.NoCheck)));
        Assert.That(policy.CustomTrustStore.Cast<X509Certificate2>().Select(c => c.Subject), Is.EqualTo(new[] { "CN=client-ca" }));
        Assert.That(tls.ServerOptions().CertificateChainPolicy, Is.Not.SameAs(policy), "each handshake gets its own copy of the policy built once");
    }

    [Test]
    public void ServerOptions_WithoutClientCas_AsksForNoCertificate()
    {
        var options = Create().ServerOptions();
        Assert.That((options.ClientCertificateRequired, options.CertificateChainPolicy), Is.EqualTo((false, (X509ChainPolicy?)null)));
    }

    /// <summary>
    /// A client certificate whose issuer is missing and named by an AIA URL: the handshake must not fetch it (it would
    /// stall on the socket thread); the listener at that URL sees no connection and the certificate is refused.
    /// </summary>
    [Test]
    public async Task Handshake_ClientCertificateWithAiaUrl_FetchesNothing_AndIsRefused()
    {
        using var aia = new TcpListener(IPAddress.Loopback, 0);
        aia.Start();
        var aiaPort = ((IPEndPoint)aia.LocalEndpoint).Port;

        using var rootKey = RSA.Create(2048);
        using var root = CreateCa("Test Root", rootKey);
        using var intermediateKey = RSA.Create(2048);
        using var intermediate = CreateCa("Test Intermediate", intermediateKey, root, rootKey);
        File.WriteAllText(Path.Combine(_dir, "root.crt"), root.ExportCertificatePem());

        using var leafKey = RSA.Create(2048);
        var leafRequest = new CertificateRequest("CN=alice", leafKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        leafRequest.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [$"http://127.0.0.1:{aiaPort}/intermediate.crt"]));
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        using var leafPublic = leafRequest.Create(intermediate.SubjectName, X509SignatureGenerator.CreateForRSA(intermediateKey, RSASignaturePadding.Pkcs1),
            DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
        using var leaf = leafPublic.CopyWithPrivateKey(leafKey);

        var tls = Create($"ssl_ca_cert = '{_dir}/root.crt'");
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var clientSocket = new TcpClient();
        await clientSocket.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var serverSocket = await listener.AcceptTcpClientAsync();
        await using var server = new SslStream(serverSocket.GetStream());
        await using var client = new SslStream(clientSocket.GetStream());
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        var serverSide = server.AuthenticateAsServerAsync(tls.ServerOptions(), deadline.Token);
        var clientSide = client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            // offline: the client itself must not fetch its missing issuer, or it would be the one knocking on the AIA port.
            ClientCertificateContext = SslStreamCertificateContext.Create(leaf, additionalCertificates: null, offline: true),
#pragma warning disable CA5359 // The test client does not care who the server is.
            RemoteCertificateValidationCallback = static (_, _, _, _) => true,
#pragma warning restore CA5359
        }, deadline.Token);

        Assert.ThrowsAsync<AuthenticationException>(async () => await serverSide, "a certificate that does not chain to ssl_ca_cert is refused");
        try
        {
            await clientSide;
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            // The server ended the handshake.
        }

        Assert.That(deadline.IsCancellationRequested, Is.False, "the handshake ended without waiting on anything");
        Assert.That(aia.Pending(), Is.False, "nothing connected to the AIA URL");
    }

    [TestCase(true, "", "127.0.0.1", (int)BackendTlsMode.Prefer, TestName = "ModeFor_Default_WithSslOn_IsPrefer_AsBefore")]
    [TestCase(false, "", "127.0.0.1", (int)BackendTlsMode.Disable, TestName = "ModeFor_Default_WithSslOff_IsDisable_AsBefore")]
    [TestCase(false, "require", "127.0.0.1", (int)BackendTlsMode.Require, TestName = "ModeFor_Require_WithSslOff_StillUsesTls")]
    [TestCase(true, "disable", "db", (int)BackendTlsMode.Disable, TestName = "ModeFor_Disable_WithSslOn_IsDisable")]
    [TestCase(true, "require", "/var/run/postgresql", (int)BackendTlsMode.Disable, TestName = "ModeFor_UnixSocket_NeverTls")]
    public void ModeFor_ResolvesTheDefaultFromSsl(bool ssl, string mode, string host, int expected)
    {
        var lines = $"backend_hostname0 = '{host}'\nbackend_port0 = 5432\nbackend_sslmode0 = '{mode}'\n";
        var tls = ssl ? Create(lines) : TlsSetup.Create(TestSettings.Parse("ssl = off\n" + lines));
        var settings = TestSettings.Parse(lines);
        Assert.That(tls.ModeFor(settings.Backends[0]), Is.EqualTo((BackendTlsMode)expected));
    }

    [Test]
    public void BackendOptions_VerifyFull_TrustsOnlyTheNodesCa_FetchesNothing_AndChecksTheName()
    {
        var ca = WriteCa("backend-ca");
        var tls = Create($"backend_hostname0 = 'db.example'\nbackend_port0 = 5432\nbackend_sslmode0 = 'verify-full'\nbackend_ssl_ca_cert0 = '{ca}'\n");
        var node = TestSettings.Parse($"backend_hostname0 = 'db.example'\nbackend_port0 = 5432\nbackend_sslmode0 = 'verify-full'\nbackend_ssl_ca_cert0 = '{ca}'\n").Backends[0];
        var options = tls.BackendOptions(node, out var check);
        var policy = options.CertificateChainPolicy!;
        Assert.That((options.TargetHost, policy.TrustMode, policy.DisableCertificateDownloads),
            Is.EqualTo(("db.example", X509ChainTrustMode.CustomRootTrust, true)));
        Assert.That(policy.CustomTrustStore.Cast<X509Certificate2>().Single().Subject, Is.EqualTo("CN=backend-ca"));

        Assert.That(check.Validate(this, null, null, SslPolicyErrors.RemoteCertificateNameMismatch), Is.False);
        Assert.That(check.Failure, Does.Contain("backend_sslmode0 = verify-full"));
        using var some = X509Certificate2.CreateFromPem(File.ReadAllText(ca));
        Assert.That(check.Validate(this, some, null, SslPolicyErrors.RemoteCertificateNameMismatch), Is.False);
        Assert.That(check.Failure, Does.Contain("does not name host \"db.example\""));
        Assert.That(new BackendCertificateCheck(node, BackendTlsMode.VerifyCa).Validate(this, some, null, SslPolicyErrors.RemoteCertificateNameMismatch),
            Is.True, "verify-ca does not check the name");
        Assert.That(new BackendCertificateCheck(node, BackendTlsMode.Require).Validate(this, some, null, SslPolicyErrors.RemoteCertificateChainErrors),
            Is.True, "require encrypts without checking, as libpq");
    }

    [Test]
    public void Create_BackendCaFileMissing_StopsWithItsName()
    {
        var e = Assert.Throws<ConfigException>(() =>
            Create($"backend_hostname0 = 'db'\nbackend_port0 = 5432\nbackend_sslmode0 = 'verify-ca'\nbackend_ssl_ca_cert0 = '{_dir}/nope.crt'\n"));
        Assert.That(e!.Message, Does.Contain("backend_ssl_ca_cert0").And.Contain("nope.crt"));
    }
}
