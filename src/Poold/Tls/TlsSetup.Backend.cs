using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Poold.Config;

namespace Poold.Tls;

/// <summary>
/// TLS towards backends, per node (<c>backend_sslmodeN</c>, <c>backend_ssl_ca_certN</c>). Without a mode, Poold does
/// what it always did: with <c>ssl = on</c> it asks every TCP backend for TLS (for non-TLS clients too), goes on in
/// plaintext when the server declines, and accepts any certificate; with <c>ssl = off</c> it never asks.
/// </summary>
internal sealed partial class TlsSetup
{
    /// <summary>The word for "trust the system's root certificates" in backend_ssl_ca_certN, as libpq's sslrootcert=system.</summary>
    public const string SystemCas = "system";

    /// <summary>The mode in force for <paramref name="node"/>: the default resolved, and never TLS over a Unix socket.</summary>
    public BackendTlsMode ModeFor(BackendSettings node) => node.IsUnixSocket
        ? BackendTlsMode.Disable
        : node.TlsMode == BackendTlsMode.Default
            ? Enabled ? BackendTlsMode.Prefer : BackendTlsMode.Disable
            : node.TlsMode;

    /// <summary>
    /// Client options for one handshake with <paramref name="node"/>. <paramref name="check"/> receives why the
    /// certificate was refused, for the error the caller reports.
    /// </summary>
    public SslClientAuthenticationOptions BackendOptions(BackendSettings node, out BackendCertificateCheck check)
    {
        var mode = ModeFor(node);
        check = new BackendCertificateCheck(node, mode);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = node.Hostname,
            EnabledSslProtocols = _protocols,
            CipherSuitesPolicy = _cipherPolicy,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = check.Validate,
        };
        if (mode is BackendTlsMode.VerifyCa or BackendTlsMode.VerifyFull)
        {
            options.CertificateChainPolicy = BackendChainPolicy(node.SslCaCert);
        }

        return options;
    }

    /// <summary>The chain policy for a backend CA setting: its file's CAs only (or the system's roots), nothing downloaded.</summary>
    internal X509ChainPolicy BackendChainPolicy(string caSetting)
    {
        var policy = new X509ChainPolicy
        {
            RevocationMode = X509RevocationMode.NoCheck,
            DisableCertificateDownloads = true,
        };
        if (caSetting != SystemCas)
        {
            policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            policy.CustomTrustStore.AddRange(_backendCas.GetOrAdd(ResolveCaPath(caSetting), LoadCas));
        }

        return policy;
    }

    private string ResolveCaPath(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(Path.Combine(_configDirectory, path));

    private static X509Certificate2Collection LoadCas(string path)
    {
        var cas = new X509Certificate2Collection();
        try
        {
            cas.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new BackendTlsException($"cannot load the CA certificates \"{path}\": {e.Message}");
        }

        return cas.Count > 0 ? cas : throw new BackendTlsException($"\"{path}\" holds no PEM certificate");
    }

    /// <summary>Loads every configured backend's CA file now, so that a bad one stops the start with its name.</summary>
    private TlsSetup WithBackendCas(PooldSettings settings, string where)
    {
        foreach (var node in settings.Backends)
        {
            if (!node.IsConfigured || node.SslCaCert.Length == 0 || node.SslCaCert == SystemCas)
            {
                continue;
            }

            try
            {
                _ = BackendChainPolicy(node.SslCaCert);
            }
            catch (BackendTlsException e)
            {
                throw new ConfigException([ConfigDiagnostic.Error(where, 0, $"backend_ssl_ca_cert{node.Id}: {e.Message}")]);
            }
        }

        return this;
    }
}

/// <summary>A backend TLS setting that cannot be applied (a CA file that cannot be read).</summary>
internal sealed class BackendTlsException(string message) : Exception(message);

/// <summary>Checks one backend's certificate as its mode says, and remembers why it refused it.</summary>
internal sealed class BackendCertificateCheck(BackendSettings node, BackendTlsMode mode)
{
    /// <summary>Why the certificate was refused; null while it was not.</summary>
    public string? Failure { get; private set; }

    public bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (mode is not (BackendTlsMode.VerifyCa or BackendTlsMode.VerifyFull))
        {
            // prefer / require, as libpq without a root certificate: encryption, no authentication of the server.
            return true;
        }

        var setting = $"backend_sslmode{node.Id} = {Params.BackendSslMode.Show(mode)}";
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            Failure = $"the server sent no certificate ({setting})";
        }
        else if (errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors))
        {
            var status = chain is null ? "" : string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct());
            Failure = $"the server's certificate does not chain to backend_ssl_ca_cert{node.Id} = '{node.SslCaCert}' ({setting}){(status.Length > 0 ? ": " + status : "")}";
        }
        else if (mode == BackendTlsMode.VerifyFull && errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            Failure = $"the server's certificate does not name host \"{node.Hostname}\" ({setting})";
        }

        return Failure is null;
    }
}
