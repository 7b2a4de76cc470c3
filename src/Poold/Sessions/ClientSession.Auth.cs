using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Poold.Auth;
using Poold.Auth.Hba;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>
/// Client authentication, as pgpool-II decides it (compat §3) and PostgreSQL reports it. With
/// <c>enable_pool_hba = on</c> the first matching pool_hba.conf record chooses the method and the client is proven
/// before any backend is touched. With it off, the backend's own method drives: Poold challenges the client with the
/// same method against its pool_passwd entry, or, without an entry, asks for the cleartext password (pass-through).
/// Either way every client is authenticated, whether its backend connection is fresh or cached.
/// </summary>
internal sealed partial class ClientSession
{
    /// <summary>SASL messages are small; PostgreSQL caps them at 64 kB.</summary>
    private const int MaxSaslMessage = 65535;

    /// <summary>The cleartext password the client gave (password method or pass-through).</summary>
    private Secret? _clientPassword;

    /// <summary>True once the client has been proven by pool_hba (trust, cert) or against its pool_passwd entry.</summary>
    private bool _clientVerified;

    /// <summary>What backends are logged in with, once known.</summary>
    private StoredCredential? _backendCredential;

    private async Task AuthenticateAsync(CancellationToken cancellationToken)
    {
        var auth = _services.Auth;
        if (_services.Settings.Get(Params.EnablePoolHba))
        {
            await AuthenticateByHbaAsync(auth, cancellationToken);
        }

        await AdmitAsync(cancellationToken);

        var snapshot = _services.Nodes.Current;
        var primary = snapshot.Primary ?? throw new ClientFatalException(SqlState.CannotConnectNow,
            "no backend node is available: the configuration defines no backend_port0 … or every node is down");
        var parameters = _startup!.Parameters;
        var key = PoolKey.Create(primary.Id, parameters);
        var pool = _services.Pool;

        if (pool.TryTake(key) is { } cached)
        {
            Volatile.Write(ref _backend, cached);
            if (!_clientVerified && cached.AuthMethod != BackendAuthMethod.Trust)
            {
                await VerifyClientForCachedAsync(cached, cancellationToken);
            }

            LogReused(cached);
            return;
        }

        if (pool.ReserveSlot(primary.Id) is { } evicted)
        {
            await evicted.DisposeAsync();
        }

        try
        {
            var backend = await BackendConnection.OpenAsync(primary.Settings, key, parameters, CredentialForBackendAsync, _services.Tls,
                _services.Settings.Get(Params.ConnectTimeout, primary.Id), _services.Time, cancellationToken);
            Volatile.Write(ref _backend, backend);
            LogConnected(backend);
        }
        catch
        {
            pool.Forget(primary.Id);
            throw;
        }
    }

    // ---- enable_pool_hba = on ----

    private async Task AuthenticateByHbaAsync(AuthFiles auth, CancellationToken cancellationToken)
    {
        var address = (_socket.RemoteEndPoint as IPEndPoint)?.Address;
        var request = new HbaRequest(_isUnixSocket, _clientIsTls, address, User!, Database!);
        var hba = auth.Hba;
        var sslEnabled = _services.Tls.Enabled;
        var record = hba is { UsesHostNames: true }
            ? await Task.Run(() => hba.Match(request, sslEnabled), cancellationToken)
            : hba?.Match(request, sslEnabled);
        var host = _isUnixSocket ? "[local]" : address?.ToString() ?? "unknown";
        var ssl = _clientIsTls ? "on" : "off";
        if (record is null)
        {
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                $"no pool_hba.conf entry for host \"{host}\", user \"{User}\", database \"{Database}\", SSL {ssl}");
        }

        LogHbaMatch(record);
        switch (record.Method)
        {
            case HbaMethod.Reject:
                throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                    $"pool_hba.conf rejects connection for host \"{host}\", user \"{User}\", database \"{Database}\", SSL {ssl}");
            case HbaMethod.Trust:
                _backendCredential = TryStoredCredential();
                break;
            case HbaMethod.Cert:
                CheckClientCertificate();
                _backendCredential = TryStoredCredential();
                break;
            case HbaMethod.Password:
                var stored = TryStoredCredential();
                await ChallengeCleartextAsync(stored, cancellationToken);
                _backendCredential = StoredCredential.FromPassword(_clientPassword!);
                if (stored is null)
                {
                    // Pass-through: nothing vouched for the password, so a cached connection still compares it.
                    return;
                }

                break;
            case HbaMethod.Md5:
                _backendCredential = RequireStoredCredential("md5");
                await ChallengeMd5Async(_backendCredential, cancellationToken);
                break;
            case HbaMethod.ScramSha256:
                _backendCredential = RequireStoredCredential("SCRAM");
                await ChallengeScramAsync(_backendCredential, cancellationToken);
                break;
        }

        _clientVerified = true;
    }

    /// <summary>pool_hba's <c>cert</c>: a certificate that chained to ssl_ca_cert during the handshake, whose CN is the user.</summary>
    private void CheckClientCertificate()
    {
        var certificate = (_client as SslStream)?.RemoteCertificate;
        if (certificate is null)
        {
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                _services.Tls.RequestsClientCertificates
                    ? "connection requires a valid client certificate"
                    : "connection requires a valid client certificate, and Poold asks for none: set ssl_ca_cert");
        }

        using var cert = new X509Certificate2(certificate);
        var commonName = cert.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (commonName != User)
        {
            LogCertificateMismatch(commonName);
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification, $"certificate authentication failed for user \"{User}\"");
        }
    }

    // ---- enable_pool_hba = off, and backend logins ----

    /// <summary>
    /// The <see cref="PasswordSource"/> for backend logins. Without pool_hba, the first backend's request decides
    /// how the client is challenged: with the same method against its pool_passwd entry, or, without an entry, by
    /// asking for the cleartext password (for md5 and SCRAM backends only with allow_clear_text_frontend_auth).
    /// </summary>
    private async ValueTask<StoredCredential?> CredentialForBackendAsync(BackendAuthMethod method, CancellationToken cancellationToken)
    {
        if (_backendCredential is not null || _clientVerified)
        {
            return _backendCredential;
        }

        if (_clientPassword is not null)
        {
            return StoredCredential.FromPassword(_clientPassword);
        }

        if (_primary is not null)
        {
            // The session is running: a node opened now must not ask the client anything.
            return null;
        }

        if (TryStoredCredential() is { } stored)
        {
            await ChallengeLikeBackendAsync(method, stored, cancellationToken);
            _backendCredential = method == BackendAuthMethod.Cleartext && _clientPassword is not null
                ? StoredCredential.FromPassword(_clientPassword)
                : stored;
            _clientVerified = true;
            return _backendCredential;
        }

        await AskPassThroughPasswordAsync(method, cancellationToken);
        return StoredCredential.FromPassword(_clientPassword!);
    }

    /// <summary>A cached connection is handed over only after the client proves itself as a fresh login would.</summary>
    private async Task VerifyClientForCachedAsync(BackendConnection cached, CancellationToken cancellationToken)
    {
        if (TryStoredCredential() is { } stored)
        {
            await ChallengeLikeBackendAsync(cached.AuthMethod, stored, cancellationToken);
            _clientVerified = true;
            _backendCredential = stored;
            return;
        }

        if (_clientPassword is null)
        {
            await AskPassThroughPasswordAsync(cached.AuthMethod, cancellationToken);
        }

        if (!cached.AcceptsPassword(_clientPassword))
        {
            throw PasswordFailed("the password differs from the one the cached backend connection was opened with");
        }
    }

    private Task ChallengeLikeBackendAsync(BackendAuthMethod method, StoredCredential stored, CancellationToken cancellationToken) => method switch
    {
        BackendAuthMethod.Md5 => ChallengeMd5Async(stored, cancellationToken),
        BackendAuthMethod.ScramSha256 => ChallengeScramAsync(stored, cancellationToken),
        _ => ChallengeCleartextAsync(stored, cancellationToken),
    };

    private async Task AskPassThroughPasswordAsync(BackendAuthMethod method, CancellationToken cancellationToken)
    {
        if (method != BackendAuthMethod.Cleartext && !_services.Settings.Get(Params.AllowClearTextFrontendAuth))
        {
            var file = _services.Auth.Passwords.Path;
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                file is null
                    ? $"password authentication is not possible for user \"{User}\": pool_passwd is disabled and allow_clear_text_frontend_auth is off"
                    : $"user \"{User}\" has no entry in pool_passwd file \"{file}\", and allow_clear_text_frontend_auth is off",
                $"The backend asks for {method} authentication; Poold can log in for this user only with a pool_passwd entry (pg_enc -m) or with allow_clear_text_frontend_auth = on (pass-through).");
        }

        await ChallengeCleartextAsync(null, cancellationToken);
    }

    // ---- pool_passwd ----

    /// <summary>The user's pool_passwd entry, resolved; null when there is none.</summary>
    private StoredCredential? TryStoredCredential()
    {
        var entry = _services.Auth.Passwords.Find(User!);
        if (entry is null)
        {
            return null;
        }

        try
        {
            return entry.Resolve(_services.Auth.Key);
        }
        catch (PoolPasswdException e)
        {
            LogStoredCredentialUnusable(e.Message);
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification, e.Message);
        }
    }

    private StoredCredential RequireStoredCredential(string method) => TryStoredCredential() ?? throw new ClientFatalException(
        SqlState.InvalidAuthorizationSpecification,
        _services.Auth.Passwords.Path is { } file
            ? $"{method} authentication failed: user \"{User}\" has no entry in pool_passwd file \"{file}\""
            : $"{method} authentication failed: pool_passwd is disabled (pool_passwd = '') so user \"{User}\" has no stored password");

    // ---- the three challenges ----

    /// <summary>AuthenticationCleartextPassword; the answer is checked against <paramref name="stored"/> when there is one.</summary>
    private async Task ChallengeCleartextAsync(StoredCredential? stored, CancellationToken cancellationToken)
    {
        _out.Clear();
        _out.Authentication(AuthRequest.CleartextPassword);
        await FlushOutAsync(cancellationToken);
        var password = await ReadPasswordMessageAsync(cancellationToken);
        if (stored is not null && !stored.Matches(password, User!))
        {
            throw PasswordFailed("the password does not match the pool_passwd entry");
        }

        _clientPassword = new Secret(password);
    }

    /// <summary>AuthenticationMD5Password with a fresh 4-byte salt, checked against the entry's md5 hash.</summary>
    private async Task ChallengeMd5Async(StoredCredential stored, CancellationToken cancellationToken)
    {
        var hash = stored.Md5For(User!) ?? throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
            $"md5 authentication failed: the pool_passwd entry of user \"{User}\" is a SCRAM verifier, which cannot check an md5 login (store the password with pg_enc)");
        var salt = RandomNumberGenerator.GetBytes(4);
        _out.Clear();
        _out.AuthenticationMd5(salt);
        await FlushOutAsync(cancellationToken);
        var response = await ReadPasswordMessageAsync(cancellationToken);
        if (!Md5Password.Verify(hash, salt, Encoding.UTF8.GetBytes(response)))
        {
            throw PasswordFailed("the md5 response does not match the pool_passwd entry");
        }
    }

    /// <summary>SCRAM-SHA-256, with SCRAM-SHA-256-PLUS offered first to a client on TLS.</summary>
    private async Task ChallengeScramAsync(StoredCredential stored, CancellationToken cancellationToken)
    {
        var verifier = stored.Verifier
                       ?? (stored.Password is { } password
                           ? ScramVerifier.ForPassword(User!, password)
                           : throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                               $"SCRAM authentication failed: pool_passwd file does not contain a valid SCRAM entry for user \"{User}\" (an md5 hash cannot check SCRAM; store the password with pg_enc)"));
        var binding = _clientIsTls ? _services.Tls.ServerCertificateHash : null;
        var exchange = new ScramServerExchange(verifier, binding);
        _out.Clear();
        _out.AuthenticationSasl(ScramServerExchange.Mechanisms(binding is not null));
        await FlushOutAsync(cancellationToken);

        var (mechanism, clientFirst) = ParseSaslInitialResponse(await ReadAuthMessageAsync(MaxSaslMessage, cancellationToken));
        var serverFirst = Scram(() => exchange.HandleClientFirst(mechanism, clientFirst));
        _out.Clear();
        _out.AuthenticationSaslData(AuthRequest.SaslContinue, serverFirst);
        await FlushOutAsync(cancellationToken);

        var clientFinal = await ReadAuthMessageAsync(MaxSaslMessage, cancellationToken);
        byte[] serverFinal = [];
        if (!Scram(() => exchange.HandleClientFinal(clientFinal, out serverFinal)))
        {
            throw PasswordFailed("the SCRAM proof does not match the pool_passwd entry");
        }

        _out.Clear();
        _out.AuthenticationSaslData(AuthRequest.SaslFinal, serverFinal);
        await FlushOutAsync(cancellationToken);
        LogScram(mechanism);
    }

    private static T Scram<T>(Func<T> step)
    {
        try
        {
            return step();
        }
        catch (ScramException e)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, e.Message);
        }
    }

    /// <summary>SASLInitialResponse: mechanism name, then Int32 length (-1 for none) and the client-first-message.</summary>
    private static (string Mechanism, byte[] Data) ParseSaslInitialResponse(byte[] body)
    {
        var end = Array.IndexOf(body, (byte)0);
        if (end <= 0 || body.Length < end + 5)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, "malformed SASLInitialResponse message");
        }

        var mechanism = Encoding.UTF8.GetString(body, 0, end);
        var length = BinaryPrimitives.ReadInt32BigEndian(body.AsSpan(end + 1));
        var data = body.AsSpan(end + 5);
        if (length != data.Length)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, "malformed SASLInitialResponse message: wrong length");
        }

        return (mechanism, data.ToArray());
    }

    private async Task FlushOutAsync(CancellationToken cancellationToken)
    {
        await _client.WriteAsync(_out.Written, cancellationToken);
        await _client.FlushAsync(cancellationToken);
    }

    /// <summary>PostgreSQL's answer to a wrong password; why is for the log only.</summary>
    private ClientFatalException PasswordFailed(string why)
    {
        LogPasswordFailed(why);
        return new ClientFatalException(SqlState.InvalidPassword, $"password authentication failed for user \"{User}\"");
    }
}
