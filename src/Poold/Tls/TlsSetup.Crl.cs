using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.X509;
using Poold.Config;
using BcCertificate = Org.BouncyCastle.X509.X509Certificate;
using X509Certificate = System.Security.Cryptography.X509Certificates.X509Certificate;

namespace Poold.Tls;

/// <summary>
/// Revocation lists for client certificates (<c>ssl_crl_file</c>, <c>ssl_crl_dir</c>), parsed with BouncyCastle: .NET
/// on Linux reads CRLs only from its own cache, never from a file given to it. Each list must be signed by one of the
/// client CAs. A certificate in the chain that a list revokes passes the handshake but is flagged: pool_hba's
/// <c>cert</c> method then refuses it with 28000 (<see cref="IsRevoked"/>).
/// </summary>
internal sealed partial class TlsSetup
{
    private List<X509Crl> _crls = [];

    /// <summary>Thumbprints of client certificates whose chain a CRL revoked during a handshake with this setup.</summary>
    private readonly ConcurrentDictionary<string, bool> _revokedSeen = new(StringComparer.Ordinal);

    /// <summary>Number of revocation lists in force (for tests and the log).</summary>
    public int RevocationListCount => _crls.Count;

    private static List<X509Crl> LoadCrls(PooldSettings settings, X509Certificate2Collection? cas, string where)
    {
        var files = new List<string>();
        if (settings.Get(Params.SslCrlFile) is { Length: > 0 } file)
        {
            files.Add(settings.ResolvePath(file));
        }

        if (settings.Get(Params.SslCrlDir) is { Length: > 0 } dir)
        {
            var path = settings.ResolvePath(dir);
            if (!Directory.Exists(path))
            {
                throw new ConfigException([ConfigDiagnostic.Error(where, 0, $"ssl_crl_dir \"{path}\" does not exist")]);
            }

            files.AddRange(Directory.EnumerateFiles(path).Where(IsCrlName).Order(StringComparer.Ordinal));
        }

        if (files.Count == 0)
        {
            return [];
        }

        if (cas is null)
        {
            throw new ConfigException([ConfigDiagnostic.Error(where, 0, "ssl_crl_file / ssl_crl_dir need ssl_ca_cert or ssl_ca_cert_dir")]);
        }

        var issuers = cas.Select(c => new X509CertificateParser().ReadCertificate(c.RawData)).ToList();
        var crls = new List<X509Crl>();
        foreach (var path in files)
        {
            try
            {
                using var stream = File.OpenRead(path);
                var read = new X509CrlParser().ReadCrls(stream).ToList();
                if (read.Count == 0)
                {
                    throw new IOException("no CRL in the file");
                }

                foreach (var crl in read)
                {
                    if (!issuers.Any(i => i.SubjectDN.Equivalent(crl.IssuerDN) && Verifies(crl, i)))
                    {
                        throw new IOException($"the CRL of \"{crl.IssuerDN}\" is not signed by any ssl_ca_cert certificate");
                    }

                    crls.Add(crl);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or Org.BouncyCastle.Security.GeneralSecurityException
                                          or Org.BouncyCastle.Crypto.CryptoException or ArgumentException)
            {
                throw new ConfigException([ConfigDiagnostic.Error(where, 0, $"cannot load the revocation list \"{path}\": {e.Message}")]);
            }
        }

        return crls;
    }

    private static bool IsCrlName(string path)
    {
        var name = Path.GetFileName(path);
        var ext = Path.GetExtension(name);
        return ext.Equals(".pem", StringComparison.OrdinalIgnoreCase) || ext.Equals(".crl", StringComparison.OrdinalIgnoreCase)
               || (ext.Length > 2 && ext[1] == 'r' && ext[2..].All(char.IsAsciiDigit));
    }

    private static bool Verifies(X509Crl crl, BcCertificate issuer)
    {
        try
        {
            crl.Verify(issuer.GetPublicKey());
            return true;
        }
        catch (Exception e) when (e is Org.BouncyCastle.Security.InvalidKeyException or Org.BouncyCastle.Security.SignatureException
                                      or Org.BouncyCastle.Crypto.CryptoException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>True when a CRL of this setup revokes <paramref name="certificate"/> or, as seen in its handshake, a certificate of its chain.</summary>
    public bool IsRevoked(X509Certificate2 certificate) =>
        _crls.Count > 0 && (_revokedSeen.ContainsKey(certificate.Thumbprint) || RevokedByCrl(certificate));

    private bool RevokedByCrl(X509Certificate2 certificate)
    {
        var bc = new X509CertificateParser().ReadCertificate(certificate.RawData);
        foreach (var crl in _crls)
        {
            if (crl.IssuerDN.Equivalent(bc.IssuerDN) && crl.IsRevoked(bc))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The handshake's check: the chain must be valid; a revoked element flags the leaf for <see cref="IsRevoked"/>.</summary>
    private bool ValidateClientCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null)
        {
            return true;
        }

        if (errors != SslPolicyErrors.None)
        {
            return false;
        }

        if (_crls.Count > 0 && chain is not null)
        {
            foreach (var element in chain.ChainElements)
            {
                if (RevokedByCrl(element.Certificate))
                {
                    using var leaf = new X509Certificate2(certificate);
                    if (_revokedSeen.Count < 100_000)
                    {
                        _revokedSeen[leaf.Thumbprint] = true;
                    }

                    break;
                }
            }
        }

        return true;
    }
}
