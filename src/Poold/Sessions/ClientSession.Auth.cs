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
using Poold.Tls;

namespace Poold.Sessions;

/// <summary>
/// Client authentication, as pgpool-II decides it (compat §3) and PostgreSQL reports it. With
/// <c>enable_pool_hba = on</c> the first matching pool_hba.conf record chooses the method and the client is proven
/// before any backend is touched. With it off, the backend's own method drives: Poold challenges the client with the
/// same method against its pool_passwd entry, or, without an entry, asks for the cleartext password (pass-through).
/// Either way every client is authenticated before it gets a backend connection, fresh or cached, and a cached one
/// only when it was opened with the credential this client's own login would use. To a client that has not proven
/// anything, every failure looks alike: the challenge a real entry would get, then <c>28P01</c>; why is in the log.
/// A user without a usable pool_passwd entry is looked up with auth_query when <c>auth_user</c> is set (PgBouncer): a
/// SCRAM client proves itself against the verifier found, and the ClientKey recovered from its proof logs in to the
/// backends (<see cref="ScramClientKey"/>, zeroed when the session ends); an md5 hash serves md5 both ways.
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

    /// <summary>The ClientKey this client proved, when backends are logged in with it; zeroed when the session ends.</summary>
    private ScramClientKey? _clientKey;

    /// <summary>The stored credential came from auth_query's cache: a failed proof is checked again against a fresh fetch.</summary>
    private bool _credentialFromCache;

    /// <summary>What the fetch after a failed proof returned, when it matched.</summary>
    private StoredCredential? _refreshedCredential;

    /// <summary>What a fresh backend login of this client uses: the stored credential, else the client's own password.</summary>
    private StoredCredential? SessionCredential =>
        _backendCredential ?? (_clientPassword is { } password ? StoredCredential.FromPassword(password) : null);

    private async Task AuthenticateAsync(CancellationToken cancellationToken)
    {
        var auth = _services.Auth;
        if (_services.Settings.Get(Params.EnablePoolHba))
        {
            await AuthenticateByHbaAsync(auth, cancellationToken);
        }

        var transactionMode = _replication == ReplicationMode.None && PoolModes.For(_services.Settings, Database!) == PoolMode.Transaction;
        var backends = _backendSide;
        backends.Begin(_startup!, Database!, transactionMode);

        await AdmitAsync(cancellationToken);

        var snapshot = _services.Nodes.Current;
        var primary = snapshot.Primary ?? throw new ClientFatalException(SqlState.CannotConnectNow,
            snapshot.Nodes.Any(n => n.Status == Poold.Backends.NodeStatus.Up)
                ? "no primary node is available: the primary is down and Poold is looking for the new one (failover)"
                : "no backend node is available: the configuration defines no backend_port0 … or every node is down");

        if (!_clientVerified && _clientPassword is null && _services.Pool.PeekAuthMethod(backends.BackendKey(primary.Id)) is { } method
            and not BackendAuthMethod.Trust)
        {
            // enable_pool_hba = off, and a connection is cached: the client proves itself as the backend asked when that
            // connection was opened, while the connection stays in the pool, so a failed or abandoned login costs nothing.
            await CredentialForBackendAsync(method, cancellationToken);
        }

        _welcome = await backends.LogInAsync(snapshot, primary, cancellationToken);
    }

    /// <summary>Transaction mode: the login answered from <see cref="ConnectionPool.Welcomes"/>, with no server connection; null otherwise.</summary>
    private LoginWelcome? _welcome;

    /// <summary>
    /// An idle connection for <paramref name="key"/> that this client may have: one the backend let in without a
    /// password, or one opened with the credential a fresh login of this client would use. Others stay in the pool.
    /// </summary>
    private ValueTask<BackendConnection?> TakeCachedAsync(PoolKey key, CancellationToken cancellationToken) =>
        _services.Pool.TakeAsync(key, MayUse(), cancellationToken);

    /// <summary>
    /// What this client may take from the pool (<see cref="BackendConnection.WasOpenedWith"/>): its credential's tag, made
    /// once per credential, since a transaction-mode session asks at every transaction.
    /// </summary>
    private CredentialTag? MayUse()
    {
        var source = (object?)_backendCredential ?? _clientPassword;
        if (!_mayUseMade || !ReferenceEquals(source, _mayUseSource))
        {
            _mayUse = CredentialTag.Of(SessionCredential);
            _mayUseSource = source;
            _mayUseMade = true;
        }

        return _mayUse;
    }

    private CredentialTag? _mayUse;
    private object? _mayUseSource;
    private bool _mayUseMade;

    // ---- enable_pool_hba = on ----

    private async Task AuthenticateByHbaAsync(AuthFiles auth, CancellationToken cancellationToken)
    {
        var address = (_socket.RemoteEndPoint as IPEndPoint)?.Address;
        var request = new HbaRequest(_isUnixSocket, _clientIsTls, address, User!, Database!, _replication == ReplicationMode.Physical);
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
                _backendCredential = TrustedStoredCredential();
                break;
            case HbaMethod.Cert:
                CheckClientCertificate();
                _backendCredential = TrustedStoredCredential();
                break;
            case HbaMethod.Password:
                var (stored, problem) = await LookUpCredentialAsync(cancellationToken);
                if (problem is not null)
                {
                    throw await FailAfterMockAsync(BackendAuthMethod.Cleartext, problem, cancellationToken);
                }

                await ChallengeCleartextAsync(stored, cancellationToken);
                _backendCredential = StoredCredential.FromPassword(_clientPassword!);
                if (stored is null)
                {
                    // Pass-through: nothing vouched for the password; the backend, or a cached connection opened with it, will.
                    return;
                }

                break;
            case HbaMethod.Md5:
                var forMd5 = await RequireStoredCredentialAsync(BackendAuthMethod.Md5, cancellationToken);
                // As PostgreSQL: md5 in the hba file runs SCRAM for a user whose password is stored as a SCRAM verifier.
                _backendCredential = await ChallengeLikeBackendAsync(
                    forMd5.Md5For(User!) is null && forMd5.Verifier is not null ? BackendAuthMethod.ScramSha256 : BackendAuthMethod.Md5,
                    forMd5, cancellationToken);
                break;
            case HbaMethod.ScramSha256:
                var forScram = await RequireStoredCredentialAsync(BackendAuthMethod.ScramSha256, cancellationToken);
                _backendCredential = await ChallengeLikeBackendAsync(BackendAuthMethod.ScramSha256, forScram, cancellationToken);
                break;
        }

        _clientVerified = true;
    }

    /// <summary>pool_hba's <c>cert</c>: a certificate that chained to ssl_ca_cert during the handshake, whose CN attribute is exactly the user.</summary>
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
        switch (_services.Tls.CheckRevocation(cert))
        {
            case { Verdict: RevocationVerdict.Revoked }:
                LogCertificateRevoked(cert.SerialNumber);
                throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification, $"certificate authentication failed for user \"{User}\": the certificate has been revoked");
            case { Verdict: RevocationVerdict.CrlExpired } expired:
                LogCrlExpired(cert.SerialNumber, expired.CrlFile!, expired.NextUpdate!.Value);
                throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                    $"certificate authentication failed for user \"{User}\": the certificate revocation list has expired");
        }

        var commonName = CertificateNames.CommonName(cert);
        if (commonName is null || !string.Equals(commonName, User, StringComparison.Ordinal))
        {
            LogCertificateMismatch(commonName ?? "(none)");
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

        if (_backendSide.Running)
        {
            // The session is running: a node opened now must not ask the client anything.
            return null;
        }

        var (stored, problem) = await LookUpCredentialAsync(cancellationToken);
        if (problem is not null)
        {
            throw await FailAfterMockAsync(method, problem, cancellationToken);
        }

        if (stored is not null)
        {
            _backendCredential = await ChallengeLikeBackendAsync(method, stored, cancellationToken);
            _clientVerified = true;
            return _backendCredential;
        }

        await AskPassThroughPasswordAsync(method, cancellationToken);
        return StoredCredential.FromPassword(_clientPassword!);
    }

    /// <summary>
    /// Challenges the client against <paramref name="stored"/> with <paramref name="method"/>; an entry that cannot check
    /// it fails like a wrong password. Returns what backends are logged in with: the password when Poold has it (stored,
    /// or given by a cleartext client), else the md5 hash, else the SCRAM ClientKey the client just proved.
    /// </summary>
    private async Task<StoredCredential> ChallengeLikeBackendAsync(BackendAuthMethod method, StoredCredential stored, CancellationToken cancellationToken)
    {
        switch (method)
        {
            case BackendAuthMethod.Md5:
                if (stored.Md5For(User!) is not { } hash)
                {
                    throw await FailAfterMockAsync(method,
                        $"the {Source} is a SCRAM verifier, which cannot check an md5 login (store the password with pg_enc)", cancellationToken);
                }

                await ChallengeMd5Async(hash, cancellationToken);
                return _refreshedCredential ?? stored;
            case BackendAuthMethod.ScramSha256:
                var verifier = stored.Verifier ?? (stored.Password is { } password ? ScramVerifier.ForPassword(User!, password) : null);
                if (verifier is null)
                {
                    throw await FailAfterMockAsync(method,
                        $"the {Source} is an md5 hash, which cannot check SCRAM (store the password with pg_enc, or a SCRAM verifier in the database)",
                        cancellationToken);
                }

                var exchange = await ChallengeScramAsync(verifier, $"the SCRAM proof does not match the {Source}", cancellationToken);
                if (stored.Password is not null)
                {
                    CryptographicOperations.ZeroMemory(exchange.ClientKey);
                    return stored;
                }

                // Only a verifier: the key the client proved is what logs in to the backends.
                _clientKey = new ScramClientKey(exchange.ClientKey!, exchange.ProvenVerifier!);
                return StoredCredential.FromScramClientKey(_clientKey);
            default:
                await ChallengeCleartextAsync(stored, cancellationToken);
                return StoredCredential.FromPassword(_clientPassword!);
        }
    }

    /// <summary>Where the stored credential came from, for log lines.</summary>
    private string Source => _services.Auth.Passwords.Find(User!) is null && AuthQueryEnabled ? "auth_query verifier" : "pool_passwd entry";

    /// <summary>Zeroes the ClientKey at the end of the session; nothing may log in with it afterwards.</summary>
    private void ForgetClientKey() => _clientKey?.Dispose();

    private async Task AskPassThroughPasswordAsync(BackendAuthMethod method, CancellationToken cancellationToken)
    {
        if (method != BackendAuthMethod.Cleartext && !_services.Settings.Get(Params.AllowClearTextFrontendAuth))
        {
            throw await FailAfterMockAsync(method, _services.Auth.Passwords.Path is { } file
                ? $"no entry in pool_passwd file \"{file}\", and allow_clear_text_frontend_auth is off (the backend asks for {method}: add an entry with pg_enc, or allow pass-through)"
                : $"pool_passwd is disabled and allow_clear_text_frontend_auth is off (the backend asks for {method})", cancellationToken);
        }

        await ChallengeCleartextAsync(null, cancellationToken);
    }

    // ---- pool_passwd, then auth_query ----

    private bool AuthQueryEnabled => _services.Settings.Get(Params.AuthUser).Length > 0;

    /// <summary>
    /// The user's credential: its pool_passwd entry, else, with auth_user set, what auth_query returns. No credential and
    /// no problem means pass-through; a problem (for the log only) means the mock exchange, then 28P01. An auth_query
    /// that fails (an SQL error, more than one row, no primary) ends the login with 28000: it is not the client's doing.
    /// </summary>
    private async Task<(StoredCredential? Stored, string? Problem)> LookUpCredentialAsync(CancellationToken cancellationToken)
    {
        var stored = TryStoredCredential(out var problem);
        if (stored is not null || !AuthQueryEnabled)
        {
            return (stored, problem);
        }

        var (result, fromCache) = await _services.AuthQueries.LookupAsync(User!, Database!, _services.Settings, _services.Auth,
            _services.Nodes.Current.Primary?.Settings, _services.Tls, refresh: false, cancellationToken);
        _credentialFromCache = fromCache;
        switch (result.Status)
        {
            case AuthQueryStatus.Found:
                LogAuthQueryFound(fromCache);
                return (result.Credential, null);
            case AuthQueryStatus.NotFound:
                return (null, result.Problem);
            case AuthQueryStatus.Unusable:
                LogAuthQueryProblem(result.Problem!);
                return (null, result.Problem);
            default:
                LogAuthQueryProblem(result.Problem!);
                throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                    $"authentication failed for user \"{User}\": Poold could not look up the password (auth_query failed; see the Poold log)");
        }
    }

    /// <summary>
    /// After a proof failed against a verifier from auth_query's cache: fetches it again (a password changed a moment
    /// ago). Null when the credential was not cached, or the fetch finds nothing.
    /// </summary>
    private async Task<StoredCredential?> RefetchCredentialAsync(CancellationToken cancellationToken)
    {
        if (!_credentialFromCache)
        {
            return null;
        }

        _credentialFromCache = false;
        var (result, _) = await _services.AuthQueries.LookupAsync(User!, Database!, _services.Settings, _services.Auth,
            _services.Nodes.Current.Primary?.Settings, _services.Tls, refresh: true, cancellationToken);
        LogAuthQueryRefetched(result.Status);
        if (result.Status is AuthQueryStatus.Unusable or AuthQueryStatus.Failed && result.Problem is { } problem)
        {
            LogAuthQueryProblem(problem);
        }

        return result.Credential;
    }

    /// <summary>
    /// The user's pool_passwd entry, resolved; null when there is none, or when it cannot be used (then
    /// <paramref name="problem"/> says why, for the log: a file, a line, a key problem — never for the client).
    /// </summary>
    private StoredCredential? TryStoredCredential(out string? problem)
    {
        problem = null;
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
            problem = e.Message;
            return null;
        }
    }

    /// <summary>trust and cert: the entry, if any, for the backend login; an unusable one refuses the login without saying more.</summary>
    private StoredCredential? TrustedStoredCredential()
    {
        var stored = TryStoredCredential(out var problem);
        return problem is null ? stored : throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
            $"authentication failed for user \"{User}\": Poold cannot use its stored credential (see the Poold log)");
    }

    /// <summary>md5 and scram-sha-256 in pool_hba need an entry; without a usable one the client still gets the challenge, then 28P01.</summary>
    private async Task<StoredCredential> RequireStoredCredentialAsync(BackendAuthMethod method, CancellationToken cancellationToken)
    {
        var (stored, problem) = await LookUpCredentialAsync(cancellationToken);
        if (stored is not null)
        {
            return stored;
        }

        throw await FailAfterMockAsync(method, problem ?? (_services.Auth.Passwords.Path is { } file
            ? $"{method} authentication: user has no entry in pool_passwd file \"{file}\""
            : $"{method} authentication: pool_passwd is disabled (pool_passwd = ''), so no user has a stored password"), cancellationToken);
    }

    /// <summary>
    /// PostgreSQL's answer to a user it cannot check (its "mock authentication"): the exchange a usable entry would get
    /// — md5 with a fresh salt, SCRAM with the salt and iteration count a stored password would have, or a cleartext
    /// request — then the same 28P01 as a wrong password. An unauthenticated client cannot tell an unknown user from
    /// a wrong password; <paramref name="why"/> goes to the log only.
    /// </summary>
    private async Task<ClientFatalException> FailAfterMockAsync(BackendAuthMethod method, string why, CancellationToken cancellationToken)
    {
        // An answer from auth_query's cache (a cached "no such user" too) is fetched again after the failed proof, as for
        // a known user with a wrong password: the same round trips before the same 28P01, and the cache learns whether
        // the user exists now.
        var fromCache = _credentialFromCache;
        switch (method)
        {
            case BackendAuthMethod.Md5:
                _credentialFromCache = false;
                await ChallengeMd5Async(null, cancellationToken);
                break;
            case BackendAuthMethod.ScramSha256:
                // Fails at the proof, after fetching again when the answer was cached (no fresh verifier has the mock's salt).
                await ChallengeScramAsync(ScramVerifier.Mock(User!, likeAuthQuery: AuthQueryEnabled && _services.Auth.Passwords.Find(User!) is null),
                    why, cancellationToken);
                break;
            default:
                _credentialFromCache = false;
                _out.Clear();
                _out.Authentication(AuthRequest.CleartextPassword);
                await FlushOutAsync(cancellationToken);
                await ReadPasswordMessageAsync(cancellationToken);
                break;
        }

        if (fromCache)
        {
            _credentialFromCache = true;
            await RefetchCredentialAsync(cancellationToken);
        }

        return PasswordFailed(why);
    }

    // ---- the three challenges ----

    /// <summary>AuthenticationCleartextPassword; the answer is checked against <paramref name="stored"/> when there is one.</summary>
    private async Task ChallengeCleartextAsync(StoredCredential? stored, CancellationToken cancellationToken)
    {
        _out.Clear();
        _out.Authentication(AuthRequest.CleartextPassword);
        await FlushOutAsync(cancellationToken);
        var password = await ReadPasswordMessageAsync(cancellationToken);
        if (stored is not null && !stored.Matches(password, User!)
            && !(await RefetchCredentialAsync(cancellationToken) is { } fresh && fresh.Matches(password, User!)))
        {
            throw PasswordFailed($"the password does not match the {Source}");
        }

        _clientPassword = new Secret(password);
    }

    /// <summary>
    /// AuthenticationMD5Password with a fresh 4-byte salt, checked against the entry's md5 hash; with no hash (a mock
    /// exchange) the response is read and the caller fails the login.
    /// </summary>
    private async Task ChallengeMd5Async(string? hash, CancellationToken cancellationToken)
    {
        var salt = RandomNumberGenerator.GetBytes(4);
        _out.Clear();
        _out.AuthenticationMd5(salt);
        await FlushOutAsync(cancellationToken);
        var response = Encoding.UTF8.GetBytes(await ReadPasswordMessageAsync(cancellationToken));
        if (hash is not null && !Md5Password.Verify(hash, salt, response))
        {
            if (await RefetchCredentialAsync(cancellationToken) is { } fresh && fresh.Md5For(User!) is { } freshHash
                && Md5Password.Verify(freshHash, salt, response))
            {
                _refreshedCredential = fresh;
                return;
            }

            throw PasswordFailed($"the md5 response does not match the {Source}");
        }
    }

    /// <summary>
    /// SCRAM-SHA-256, with SCRAM-SHA-256-PLUS offered first to a client on TLS; a wrong proof fails with
    /// <paramref name="failure"/> in the log. A proof that fails against a cached auth_query verifier is checked again
    /// against a fresh one with the same salt. Returns the exchange, whose ClientKey the client has proven.
    /// </summary>
    private async Task<ScramServerExchange> ChallengeScramAsync(ScramVerifier verifier, string failure, CancellationToken cancellationToken)
    {
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
            // A new password has a new salt, which the client was not challenged with: then only its next attempt can work.
            if (!(await RefetchCredentialAsync(cancellationToken) is { Verifier: { } fresh } && exchange.RetryWith(fresh, out serverFinal)))
            {
                throw PasswordFailed(failure);
            }
        }

        _out.Clear();
        _out.AuthenticationSaslData(AuthRequest.SaslFinal, serverFinal);
        await FlushOutAsync(cancellationToken);
        LogScram(mechanism);
        return exchange;
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
