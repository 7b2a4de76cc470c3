using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Poold.Config;

namespace Poold.Tls;

/// <summary>
/// TLS for both sides, built once at start: the server context from <c>ssl_cert</c>/<c>ssl_key</c> (PEM) for clients,
/// the chain policy client certificates are checked with, and client options for backends. A backend's certificate is
/// checked as <c>backend_sslmodeN</c> says (<see cref="ModeFor"/>); by default it is not (as pgpool-II), and
/// SCRAM-SHA-256-PLUS channel binding still detects interception.
/// </summary>
internal sealed partial class TlsSetup
{
    private readonly SslStreamCertificateContext? _serverContext;
    private readonly SslProtocols _protocols;
    private readonly CipherSuitesPolicy? _cipherPolicy;
    private readonly X509ChainPolicy? _clientChainPolicy;
    private readonly string _configDirectory;

    /// <summary>backend_ssl_ca_certN files, loaded once each (at start, or at the first connection after a reload names a new one).</summary>
    private readonly ConcurrentDictionary<string, X509Certificate2Collection> _backendCas = new(StringComparer.Ordinal);

    private TlsSetup(SslStreamCertificateContext? serverContext, SslProtocols protocols, CipherSuitesPolicy? cipherPolicy, bool enabled,
        string configDirectory, X509Certificate2Collection? clientCas = null)
    {
        _serverContext = serverContext;
        _protocols = protocols;
        _cipherPolicy = cipherPolicy;
        _configDirectory = configDirectory;
        _clientChainPolicy = clientCas is null ? null : ClientChainPolicy(clientCas);
        Enabled = enabled;
        ServerCertificateHash = serverContext is null ? null : ChannelBindingHash(serverContext.TargetCertificate);
    }

    /// <summary>Poold's own certificate hash, for SCRAM-SHA-256-PLUS with clients.</summary>
    public byte[]? ServerCertificateHash { get; }

    /// <summary>With <c>ssl_ca_cert</c> or <c>ssl_ca_cert_dir</c>, clients are asked for a certificate, checked against those CAs.</summary>
    public bool RequestsClientCertificates => _clientChainPolicy is not null;

    /// <summary><c>ssl = on</c>: clients may ask for TLS, and Poold asks backends for it.</summary>
    public bool Enabled { get; }

    /// <summary>Loads the certificate and key; throws <see cref="ConfigException"/> naming the file on failure.</summary>
    public static TlsSetup Create(PooldSettings settings)
    {
        var protocols = Protocols(settings.Get(Params.SslMinProtocolVersion), settings.Get(Params.SslMaxProtocolVersion));
        var ciphers = CipherPolicy(settings.Get(Params.SslCiphers));
        var where = settings.ConfigFile ?? "configuration";
        if (!settings.Get(Params.Ssl))
        {
            return new TlsSetup(null, protocols, ciphers, enabled: false, settings.ConfigDirectory).WithBackendCas(settings, where);
        }

        var certPath = settings.ResolvePath(settings.Get(Params.SslCert));
        var keyPath = settings.ResolvePath(settings.Get(Params.SslKey));
        X509Certificate2 certificate;
        X509Certificate2Collection chain = [];
        try
        {
            certificate = LoadServerCertificate(certPath, keyPath, settings.Get(Params.SslPassphraseCommand));
            chain.ImportFromPemFile(certPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException
                                      or System.ComponentModel.Win32Exception)
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
        var clientCas = LoadClientCas(settings, where);
        var crls = LoadCrls(settings, clientCas, where);
        return new TlsSetup(context, protocols, ciphers, enabled: true, settings.ConfigDirectory, clientCas) { _crls = crls }
            .WithBackendCas(settings, where);
    }

    /// <summary>
    /// On reload (SIGHUP, <c>poold reload</c>, pcp_reload_config): the certificate, key, CA and CRL files read again.
    /// New handshakes use the result; sessions already open keep the setup they started with. When a file does not
    /// load, the current setup stays in force and the reason is logged.
    /// </summary>
    public static TlsSetup Reload(PooldSettings settings, TlsSetup current, Serilog.ILogger log)
    {
        try
        {
            var fresh = Create(settings);
            if (fresh.Enabled)
            {
                log.Information("reload: TLS certificate, key, CA and revocation files loaded again ({Crls} revocation lists)",
                    fresh.RevocationListCount);
                fresh.WarnAboutExpiredCrls(log);
            }

            return fresh;
        }
        catch (ConfigException e)
        {
            foreach (var d in e.Diagnostics)
            {
                log.Error("reload: keeping the TLS files loaded before: {Diagnostic}", d.ToString());
            }

            return current;
        }
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

    /// <summary>
    /// How client certificates are checked, built once: they must chain to ssl_ca_cert / ssl_ca_cert_dir, nothing is
    /// fetched from the network (no AIA downloads, no revocation lookups: the handshake runs on a socket thread, and a
    /// certificate naming a slow URL would stall every session), and the system's roots are not trusted.
    /// </summary>
    internal static X509ChainPolicy ClientChainPolicy(X509Certificate2Collection cas)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
            DisableCertificateDownloads = true,
            VerificationTimeIgnored = false,
        };
        policy.CustomTrustStore.AddRange(cas);
        return policy;
    }

    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = _serverContext ?? throw new InvalidOperationException("TLS is off"),
        EnabledSslProtocols = _protocols,
        CipherSuitesPolicy = _cipherPolicy,
        ClientCertificateRequired = _clientChainPolicy is not null,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        CertificateChainPolicy = _clientChainPolicy?.Clone(),
        RemoteCertificateValidationCallback = _clientChainPolicy is null ? null : ValidateClientCertificate,
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
