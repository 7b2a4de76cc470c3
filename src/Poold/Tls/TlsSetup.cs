using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Poold.Config;

namespace Poold.Tls;

/// <summary>
/// TLS for both sides, built once per settings generation: the server context from <c>ssl_cert</c>/<c>ssl_key</c>
/// (PEM) for clients, and client options for backends. Backends' certificates are not verified (as libpq's
/// <c>sslmode=require</c> and pgpool-II); SCRAM-SHA-256-PLUS channel binding still detects interception.
/// </summary>
internal sealed class TlsSetup
{
    private readonly SslStreamCertificateContext? _serverContext;
    private readonly SslProtocols _protocols;
    private readonly CipherSuitesPolicy? _cipherPolicy;
    private readonly X509Certificate2Collection? _clientCas;

    private TlsSetup(SslStreamCertificateContext? serverContext, SslProtocols protocols, CipherSuitesPolicy? cipherPolicy, bool enabled,
        X509Certificate2Collection? clientCas = null)
    {
        _serverContext = serverContext;
        _protocols = protocols;
        _cipherPolicy = cipherPolicy;
        _clientCas = clientCas;
        Enabled = enabled;
        ServerCertificateHash = serverContext is null ? null : ChannelBindingHash(serverContext.TargetCertificate);
    }

    /// <summary>Poold's own certificate hash, for SCRAM-SHA-256-PLUS with clients.</summary>
    public byte[]? ServerCertificateHash { get; }

    /// <summary>With <c>ssl_ca_cert</c> or <c>ssl_ca_cert_dir</c>, clients are asked for a certificate, checked against those CAs.</summary>
    public bool RequestsClientCertificates => _clientCas is not null;

    /// <summary><c>ssl = on</c>: clients may ask for TLS, and Poold asks backends for it.</summary>
    public bool Enabled { get; }

    /// <summary>Loads the certificate and key; throws <see cref="ConfigException"/> naming the file on failure.</summary>
    public static TlsSetup Create(PooldSettings settings)
    {
        var protocols = Protocols(settings.Get(Params.SslMinProtocolVersion), settings.Get(Params.SslMaxProtocolVersion));
        var ciphers = CipherPolicy(settings.Get(Params.SslCiphers));
        if (!settings.Get(Params.Ssl))
        {
            return new TlsSetup(null, protocols, ciphers, enabled: false);
        }

        var certPath = settings.ResolvePath(settings.Get(Params.SslCert));
        var keyPath = settings.ResolvePath(settings.Get(Params.SslKey));
        var where = settings.ConfigFile ?? "configuration";
        X509Certificate2 certificate;
        X509Certificate2Collection chain = [];
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            chain.ImportFromPemFile(certPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new ConfigException([ConfigDiagnostic.Error(where, 0,
                $"cannot load the TLS certificate \"{certPath}\" with key \"{keyPath}\": {e.Message}")]);
        }

        if (!certificate.HasPrivateKey)
        {
            throw new ConfigException([ConfigDiagnostic.Error(where, 0, $"ssl_key \"{keyPath}\" holds no private key for \"{certPath}\"")]);
        }

        var intermediates = new X509Certificate2Collection();
        foreach (var c in chain)
        {
            if (c.Thumbprint != certificate.Thumbprint)
            {
                intermediates.Add(c);
            }
        }

        var context = SslStreamCertificateContext.Create(certificate, intermediates, offline: true);
        return new TlsSetup(context, protocols, ciphers, enabled: true, LoadClientCas(settings, where));
    }

    /// <summary>The CA certificates client certificates must chain to (pool_hba's <c>cert</c> method).</summary>
    private static X509Certificate2Collection? LoadClientCas(PooldSettings settings, string where)
    {
        var file = settings.Get(Params.SslCaCert);
        var dir = settings.Get(Params.SslCaCertDir);
        if (file.Length == 0 && dir.Length == 0)
        {
            return null;
        }

        var cas = new X509Certificate2Collection();
        var files = new List<string>();
        if (file.Length > 0)
        {
            files.Add(settings.ResolvePath(file));
        }

        if (dir.Length > 0 && Directory.Exists(settings.ResolvePath(dir)))
        {
            files.AddRange(Directory.EnumerateFiles(settings.ResolvePath(dir)).Where(f => f.EndsWith(".pem", StringComparison.OrdinalIgnoreCase)
                                                                                        || f.EndsWith(".crt", StringComparison.OrdinalIgnoreCase)));
        }

        foreach (var path in files)
        {
            try
            {
                cas.ImportFromPemFile(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
            {
                throw new ConfigException([ConfigDiagnostic.Error(where, 0, $"cannot load the CA certificates \"{path}\": {e.Message}")]);
            }
        }

        return cas.Count > 0 ? cas : throw new ConfigException([ConfigDiagnostic.Error(where, 0,
            $"ssl_ca_cert / ssl_ca_cert_dir name no CA certificate ({string.Join(", ", files)})")]);
    }

    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = _serverContext ?? throw new InvalidOperationException("TLS is off"),
        EnabledSslProtocols = _protocols,
        CipherSuitesPolicy = _cipherPolicy,
        ClientCertificateRequired = _clientCas is not null,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = _clientCas is null ? null : ValidateClientCertificate,
    };

    /// <summary>A client without a certificate gets in (pool_hba decides); one with a certificate must chain to our CAs.</summary>
    private bool ValidateClientCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null)
        {
            return true;
        }

        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(_clientCas!);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
        {
            foreach (var element in chain.ChainElements)
            {
                custom.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        using var cert = new X509Certificate2(certificate);
        return custom.Build(cert);
    }

    public SslClientAuthenticationOptions BackendOptions(string host) => new()
    {
        TargetHost = host,
        EnabledSslProtocols = _protocols,
        CipherSuitesPolicy = _cipherPolicy,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
#pragma warning disable CA5359 // As libpq's sslmode=require: encryption without verification; SCRAM-PLUS binding detects interception.
        RemoteCertificateValidationCallback = static (_, _, _, _) => true,
#pragma warning restore CA5359
    };

    /// <summary>The server certificate's hash for <c>tls-server-end-point</c> channel binding (RFC 5929 §4.1).</summary>
    public static byte[]? ChannelBindingHash(X509Certificate? certificate)
    {
        if (certificate is null)
        {
            return null;
        }

        using var cert = new X509Certificate2(certificate);
        var raw = cert.RawData;
        return cert.SignatureAlgorithm.FriendlyName?.ToUpperInvariant() switch
        {
            var n when n is not null && n.Contains("SHA384", StringComparison.Ordinal) => SHA384.HashData(raw),
            var n when n is not null && n.Contains("SHA512", StringComparison.Ordinal) => SHA512.HashData(raw),
            _ => SHA256.HashData(raw),
        };
    }

    private static SslProtocols Protocols(TlsVersion min, TlsVersion max)
    {
        var protocols = SslProtocols.None;
        if (min <= TlsVersion.Tls12 && max is TlsVersion.Any or TlsVersion.Tls12)
        {
            protocols |= SslProtocols.Tls12;
        }

        if (max is TlsVersion.Any or TlsVersion.Tls13)
        {
            protocols |= SslProtocols.Tls13;
        }

        return protocols;
    }

    /// <summary>
    /// OpenSSL cipher strings ('HIGH:MEDIUM:+3DES:!aNULL') have no .NET equivalent; a list of IANA suite names
    /// (TLS_AES_256_GCM_SHA384:TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) is applied exactly, anything else leaves the
    /// system's OpenSSL policy in force.
    /// </summary>
    private static CipherSuitesPolicy? CipherPolicy(string ciphers)
    {
        var names = ciphers.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var suites = new List<TlsCipherSuite>();
        foreach (var name in names)
        {
            if (!Enum.TryParse<TlsCipherSuite>(name, ignoreCase: false, out var suite) || !name.StartsWith("TLS_", StringComparison.Ordinal))
            {
                return null;
            }

            suites.Add(suite);
        }

        return suites.Count > 0 && OperatingSystem.IsLinux() ? new CipherSuitesPolicy(suites) : null;
    }
}
