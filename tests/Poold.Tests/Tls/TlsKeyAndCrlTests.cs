using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Poold.Config;
using Poold.Tls;

namespace Poold.Tests.Tls;

/// <summary>Encrypted server keys (ssl_passphrase_command), revocation lists and reloading, with files the openssl CLI made.</summary>
[NonParallelizable]
public class TlsKeyAndCrlTests
{
    private const string Passphrase = "s3cret pass";
    private string _dir = "";

    [OneTimeSetUp]
    public void CreatePki()
    {
        _dir = Directory.CreateTempSubdirectory("poold-pki-").FullName;
        OpenSslPki.Create(_dir, "ssl_user", Passphrase);
    }

    [OneTimeTearDown]
    public void DeletePki() => Directory.Delete(_dir, recursive: true);

    private TlsSetup Create(string key, string extra = "", string cert = "server.crt") => TlsSetup.Create(TestSettings.Parse($"""
        ssl = on
        ssl_cert = '{_dir}/{cert}'
        ssl_key = '{_dir}/{key}'
        {extra}
        """));

    private static void AssertKeyMatches(X509Certificate2 certificate)
    {
        Assert.That(certificate.HasPrivateKey, Is.True);
        var data = "poold"u8.ToArray();
        if (certificate.GetRSAPrivateKey() is { } rsa)
        {
            using (rsa)
            using (var pub = certificate.GetRSAPublicKey()!)
            {
                Assert.That(pub.VerifyData(data, rsa.SignData(data, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1), HashAlgorithmName.SHA256,
                    RSASignaturePadding.Pkcs1), Is.True);
            }
        }
        else
        {
            using var ec = certificate.GetECDsaPrivateKey()!;
            using var pub = certificate.GetECDsaPublicKey()!;
            Assert.That(pub.VerifyData(data, ec.SignData(data, HashAlgorithmName.SHA256), HashAlgorithmName.SHA256), Is.True);
        }
    }

    [TestCase("server.crt", "server.trad.key")]
    [TestCase("server.crt", "server.p8.key")]
    [TestCase("ec.crt", "ec.trad.key")]
    public void EncryptedKey_IsDecryptedWithThePassphraseCommand(string cert, string key)
    {
        using var certificate = TlsSetup.LoadServerCertificate(Path.Combine(_dir, cert), Path.Combine(_dir, key), $"echo '{Passphrase}'");
        AssertKeyMatches(certificate);
        Assert.That(Create(key, $"ssl_passphrase_command = 'echo \"{Passphrase}\"'", cert).ServerCertificateHash, Is.Not.Null);
    }

    [Test]
    public void TraditionalPemEncryption_IsWhatDotNetCannotReadAlone()
    {
        Assert.That(File.ReadAllText(Path.Combine(_dir, "server.trad.key")), Does.Contain("Proc-Type: 4,ENCRYPTED"));
        Assert.That(() => X509Certificate2.CreateFromEncryptedPemFile(Path.Combine(_dir, "server.crt"), Passphrase, Path.Combine(_dir, "server.trad.key")),
            Throws.InstanceOf<CryptographicException>().Or.InstanceOf<ArgumentException>());
    }

    [Test]
    public void PassphraseCommand_GetsThePromptForPercentP()
    {
        var prompt = Path.Combine(_dir, "prompt.txt");
        using var certificate = TlsSetup.LoadServerCertificate(Path.Combine(_dir, "server.crt"), Path.Combine(_dir, "server.trad.key"),
            $"printf '%s' %p > {prompt}; echo '{Passphrase}'");
        Assert.That(File.ReadAllText(prompt), Is.EqualTo("Enter PEM pass phrase:"));
    }

    [Test]
    public void WrongPassphrase_MissingCommand_FailingCommand_AreConfigErrors_WithoutThePassphrase()
    {
        var wrong = Assert.Throws<ConfigException>(() => Create("server.trad.key", "ssl_passphrase_command = 'echo wrong-horse'"));
        Assert.That(wrong!.Message + string.Join(" ", wrong.Diagnostics), Does.Contain("server.trad.key").And.Not.Contain("wrong-horse"));
        var missing = Assert.Throws<ConfigException>(() => Create("server.p8.key"));
        Assert.That(string.Join(" ", missing!.Diagnostics), Does.Contain("ssl_passphrase_command is not set"));
        var failing = Assert.Throws<ConfigException>(() => Create("server.p8.key", "ssl_passphrase_command = 'exit 3'"));
        Assert.That(string.Join(" ", failing!.Diagnostics), Does.Contain("exited with code 3"));
    }

    [Test]
    public void Crl_RevokesTheListedCertificateOnly()
    {
        var tls = Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/crl.pem'");
        Assert.That(tls.RevocationListCount, Is.EqualTo(1));
        using var revoked = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(_dir, "revoked.crt")));
        using var good = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(_dir, "good.crt")));
        Assert.That(tls.IsRevoked(revoked), Is.True);
        Assert.That(tls.IsRevoked(good), Is.False);
        var before = Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/empty-crl.pem'");
        Assert.That(before.IsRevoked(revoked), Is.False, "the list made before the revocation");
    }

    [Test]
    public void ExpiredCrl_RefusesEveryCertificateOfItsIssuer_UnlessACurrentListIsThere()
    {
        var tls = Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/expired-crl.pem'");
        using var revoked = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(_dir, "revoked.crt")));
        using var good = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(_dir, "good.crt")));
        var check = tls.CheckRevocation(good);
        Assert.That(check.Verdict, Is.EqualTo(RevocationVerdict.CrlExpired), "OpenSSL: X509_V_ERR_CRL_HAS_EXPIRED");
        Assert.That(check.CrlFile, Is.EqualTo(Path.Combine(_dir, "expired-crl.pem")));
        Assert.That(check.NextUpdate, Is.LessThan(DateTime.UtcNow.AddHours(-23)).And.GreaterThan(DateTime.UtcNow.AddHours(-25)));
        Assert.That(tls.IsRevoked(revoked), Is.True);

        var crls = Directory.CreateDirectory(Path.Combine(_dir, "crls-expired")).FullName;
        File.Copy(Path.Combine(_dir, "expired-crl.pem"), Path.Combine(crls, "a.r0"), overwrite: true);
        File.Copy(Path.Combine(_dir, "crl.pem"), Path.Combine(crls, "b.r0"), overwrite: true);
        var withCurrent = Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_dir = '{crls}'");
        Assert.That(withCurrent.CheckRevocation(good).Verdict, Is.EqualTo(RevocationVerdict.Good), "the current list is used");
        Assert.That(withCurrent.CheckRevocation(revoked).Verdict, Is.EqualTo(RevocationVerdict.Revoked));
    }

    [Test]
    public void ExpiredCrl_IsAWarningInTheLog_NamingTheFileAndNextUpdate()
    {
        var tls = Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/expired-crl.pem'");
        var log = new StringWriter();
        using (var logger = new Serilog.LoggerConfiguration().WriteTo.Sink(new TextSink(log)).CreateLogger())
        {
            tls.WarnAboutExpiredCrls(logger);
            Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/crl.pem'").WarnAboutExpiredCrls(logger);
        }

        Assert.That(log.ToString().TrimEnd().Split('\n'), Has.Length.EqualTo(1), "a current list is not warned about");
        Assert.That(log.ToString(), Does.Contain($"Warning the revocation list \"{_dir}/expired-crl.pem\"").And.Contain("expired at"));
    }

    private sealed class TextSink(TextWriter output) : Serilog.Core.ILogEventSink
    {
        public void Emit(Serilog.Events.LogEvent logEvent) => output.WriteLine($"{logEvent.Level} {logEvent.RenderMessage(System.Globalization.CultureInfo.InvariantCulture)}");
    }

    [Test]
    public void CrlDir_LoadsEveryList()
    {
        var crls = Directory.CreateDirectory(Path.Combine(_dir, "crls")).FullName;
        File.Copy(Path.Combine(_dir, "crl.pem"), Path.Combine(crls, "0a1b2c3d.r0"), overwrite: true);
        File.Copy(Path.Combine(_dir, "empty-crl.pem"), Path.Combine(crls, "old.crl"), overwrite: true);
        File.WriteAllText(Path.Combine(crls, "README"), "not a CRL");
        var tls = Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_dir = '{crls}'");
        Assert.That(tls.RevocationListCount, Is.EqualTo(2));
        using var revoked = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(_dir, "revoked.crt")));
        Assert.That(tls.IsRevoked(revoked), Is.True);
    }

    [Test]
    public void Crl_NotSignedByTheCa_OrWithoutCa_OrUnreadable_IsAConfigError()
    {
        var foreign = Assert.Throws<ConfigException>(() => Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/foreign-crl.pem'"));
        Assert.That(string.Join(" ", foreign!.Diagnostics), Does.Contain("not signed by any ssl_ca_cert"));
        var noCa = Assert.Throws<ConfigException>(() => Create("server.key", $"ssl_crl_file = '{_dir}/crl.pem'"));
        Assert.That(string.Join(" ", noCa!.Diagnostics), Does.Contain("need ssl_ca_cert"));
        var garbage = Assert.Throws<ConfigException>(() => Create("server.key", $"ssl_ca_cert = '{_dir}/ca.crt'\nssl_crl_file = '{_dir}/ca.cnf'"));
        Assert.That(string.Join(" ", garbage!.Diagnostics), Does.Contain("cannot load the revocation list"));
    }

    [Test]
    public void Reload_UsesNewFiles_AndKeepsTheOldSetupWhenAFileDoesNotLoad()
    {
        var current = Create("server.key");
        var log = new StringWriter();
        var logger = Poold.Hosting.Logging.Create(TestSettings.Parse(""), debug: false, log);
        var rotated = TlsSetup.Reload(TestSettings.Parse($"ssl = on\nssl_cert = '{_dir}/server2.crt'\nssl_key = '{_dir}/server2.key'"), current, logger);
        using var server2 = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(_dir, "server2.crt")));
        Assert.That(rotated, Is.Not.SameAs(current));
        Assert.That(rotated.ServerCertificateHash, Is.EqualTo(TlsSetup.ChannelBindingHash(server2)));
        var kept = TlsSetup.Reload(TestSettings.Parse($"ssl = on\nssl_cert = '{_dir}/server2.crt'\nssl_key = '{_dir}/server.key'"), rotated, logger);
        Assert.That(kept, Is.SameAs(rotated));
        logger.Dispose();
        Assert.That(log.ToString(), Does.Contain("keeping the TLS files loaded before"));
    }
}
