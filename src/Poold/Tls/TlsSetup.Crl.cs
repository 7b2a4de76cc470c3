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
/// <c>cert</c> method then refuses it with 28000 (<see cref="CheckRevocation"/>).
/// <para>
/// A list whose nextUpdate has passed is not trusted, as OpenSSL's CRL check (PostgreSQL's) fails with
/// X509_V_ERR_CRL_HAS_EXPIRED: a certificate whose issuer has only expired lists is refused too, and the log names the
/// file and its nextUpdate. A current list for the same issuer (a newer file in <c>ssl_crl_dir</c>) is used instead.
/// </para>
/// </summary>
internal sealed partial class TlsSetup
{
    private List<LoadedCrl> _crls = [];

    /// <summary>Client certificates whose chain failed the CRL check during a handshake with this setup, by thumbprint.</summary>
    private readonly ConcurrentDictionary<string, RevocationCheck> _revokedSeen = new(StringComparer.Ordinal);

    /// <summary>A revocation list and the file it came from.</summary>
    private sealed record LoadedCrl(X509Crl Crl, string File)
    {
        /// <summary>nextUpdate has passed (a list without nextUpdate never expires).</summary>
        public bool IsExpired(DateTime utcNow) => Crl.NextUpdate is { } next && next.ToUniversalTime() < utcNow;
    }

    /// <summary>Number of revocation lists in force (for tests and the log).</summary>
    public int RevocationListCount => _crls.Count;

    private static List<LoadedCrl> LoadCrls(PooldSettings settings, X509Certificate2Collection? cas, string where)
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
        var crls = new List<LoadedCrl>();
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

                    crls.Add(new LoadedCrl(crl, path));
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

    /// <summary>
    /// Logs a warning for each list already past its nextUpdate (at start and on reload): the certificates it covers are
    /// refused until a current list is installed.
    /// </summary>
    public void WarnAboutExpiredCrls(Serilog.ILogger log)
    {
        var now = DateTime.UtcNow;
        foreach (var expired in _crls.Where(c => c.IsExpired(now)))
        {
            log.Warning("the revocation list {File} of \"{Issuer}\" expired at {NextUpdate:u} (nextUpdate): client certificates it covers are "
                        + "refused until a current list is installed and Poold reloaded", expired.File, expired.Crl.IssuerDN.ToString(),
                expired.Crl.NextUpdate!.Value.ToUniversalTime());
        }
    }

    /// <summary>
    /// The CRL check of <paramref name="certificate"/>, or of its chain as seen in its handshake: revoked, or not
    /// checkable because its issuer's lists have all expired, or good.
    /// </summary>
    public RevocationCheck CheckRevocation(X509Certificate2 certificate)
    {
        if (_crls.Count == 0)
        {
            return RevocationCheck.Good;
        }

        return _revokedSeen.TryGetValue(certificate.Thumbprint, out var seen) ? seen : CheckByCrl(certificate);
    }

    /// <summary>True when <see cref="CheckRevocation"/> refuses <paramref name="certificate"/> (revoked, or only expired lists).</summary>
    public bool IsRevoked(X509Certificate2 certificate) => CheckRevocation(certificate).Verdict != RevocationVerdict.Good;

    private RevocationCheck CheckByCrl(X509Certificate2 certificate)
    {
        var bc = new X509CertificateParser().ReadCertificate(certificate.RawData);
        var now = DateTime.UtcNow;
        var lists = _crls.Where(c => c.Crl.IssuerDN.Equivalent(bc.IssuerDN)).ToList();
        // OpenSSL picks a current list over an expired one for the same issuer; with only expired ones, it fails.
        var current = lists.Where(c => !c.IsExpired(now)).ToList();
        if (current.Count > 0)
        {
            return current.Any(c => c.Crl.IsRevoked(bc)) ? RevocationCheck.Revoked : RevocationCheck.Good;
        }

        return lists.Count > 0
            ? new RevocationCheck(RevocationVerdict.CrlExpired, lists[0].File, lists[0].Crl.NextUpdate!.Value.ToUniversalTime())
            : RevocationCheck.Good;
    }

    /// <summary>The handshake's check: the chain must be valid; an element that fails the CRL check flags the leaf for <see cref="CheckRevocation"/>.</summary>
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
                if (CheckByCrl(element.Certificate) is { Verdict: not RevocationVerdict.Good } check)
                {
                    using var leaf = new X509Certificate2(certificate);
                    if (_revokedSeen.Count < 100_000)
                    {
                        _revokedSeen[leaf.Thumbprint] = check;
                    }

                    break;
                }
            }
        }

        return true;
    }
}

/// <summary>What the CRL check says of a client certificate.</summary>
internal enum RevocationVerdict
{
    Good,
    Revoked,

    /// <summary>Every list of its issuer is past its nextUpdate (OpenSSL: X509_V_ERR_CRL_HAS_EXPIRED).</summary>
    CrlExpired,
}

/// <summary>The CRL check's verdict; for <see cref="RevocationVerdict.CrlExpired"/>, the list's file and nextUpdate (UTC).</summary>
internal readonly record struct RevocationCheck(RevocationVerdict Verdict, string? CrlFile = null, DateTime? NextUpdate = null)
{
    public static RevocationCheck Good => new(RevocationVerdict.Good);

    public static RevocationCheck Revoked => new(RevocationVerdict.Revoked);
}
