using System.Buffers.Binary;
using System.Text;
using Poold.Auth;
using Poold.Config;
using Poold.Protocol;

namespace Poold.Pooling;

internal sealed partial class BackendConnection
{
    /// <summary>
    /// StartupMessage, then answer each Authentication request until AuthenticationOk, then collect ParameterStatus
    /// and BackendKeyData until ReadyForQuery. An ErrorResponse becomes <see cref="BackendRejectedException"/>.
    /// </summary>
    private async Task StartupAsync(IReadOnlyList<KeyValuePair<string, string>> startup, PasswordSource passwords, CancellationToken cancellationToken)
    {
        _out.Startup(startup);
        await SendAsync(cancellationToken);
        await AuthenticateAsync(passwords, cancellationToken);

        while (true)
        {
            var (code, body) = await ReadFrameAsync(cancellationToken);
            switch ((BackendCode)code)
            {
                case BackendCode.ParameterStatus:
                    var (name, value) = ParseParameterStatus(new(body));
                    UpdateParameter(name, value);
                    break;
                case BackendCode.BackendKeyData when body.Length == 8:
                    ProcessId = BinaryPrimitives.ReadInt32BigEndian(body);
                    SecretKey = BinaryPrimitives.ReadInt32BigEndian(body.AsSpan(4));
                    break;
                case BackendCode.ReadyForQuery when body.Length == 1:
                    TransactionStatus = (TransactionStatus)body[0];
                    return;
                case BackendCode.ErrorResponse:
                    throw new BackendRejectedException(NodeId, ErrorFields.Parse(new(body)), ErrorFrame(body));
                case BackendCode.NoticeResponse or BackendCode.NegotiateProtocolVersion:
                    break;
                default:
                    throw Unexpected(code, "after authentication");
            }
        }
    }

    private async Task AuthenticateAsync(PasswordSource passwords, CancellationToken cancellationToken)
    {
        ScramClientSteps? scram = null;
        var asked = false;
        while (true)
        {
            var (code, body) = await ReadFrameAsync(cancellationToken);
            if (code == (byte)BackendCode.ErrorResponse)
            {
                throw new BackendRejectedException(NodeId, ErrorFields.Parse(new(body)), ErrorFrame(body));
            }

            if (code == (byte)BackendCode.NegotiateProtocolVersion)
            {
                continue;
            }

            if (code != (byte)BackendCode.Authentication || body.Length < 4)
            {
                throw Unexpected(code, "during authentication");
            }

            var request = (AuthRequest)BinaryPrimitives.ReadInt32BigEndian(body);
            var data = body.AsMemory(4);
            switch (request)
            {
                case AuthRequest.Ok:
                    if (scram is { Completed: false })
                    {
                        throw new BackendException(NodeId, SqlState.ProtocolViolation,
                            $"backend node {NodeId} ended SCRAM authentication without proving it knows the password");
                    }

                    if (!asked)
                    {
                        Require(BackendAuthSet.None, "let Poold in without authentication");
                    }

                    AuthMethod = scram is not null ? BackendAuthMethod.ScramSha256 : AuthMethod;
                    return;
                case AuthRequest.CleartextPassword:
                    Require(BackendAuthSet.Password, "asks for the password in cleartext");
                    asked = true;
                    AuthMethod = BackendAuthMethod.Cleartext;
                    var clear = await RequirePasswordAsync(passwords, BackendAuthMethod.Cleartext, cancellationToken);
                    _out.Password(PlainPassword(clear, "password").Reveal());
                    await SendAsync(cancellationToken);
                    break;
                case AuthRequest.Md5Password when data.Length == 4:
                    Require(BackendAuthSet.Md5, "asks for md5 authentication");
                    asked = true;
                    AuthMethod = BackendAuthMethod.Md5;
                    var md5 = await RequirePasswordAsync(passwords, BackendAuthMethod.Md5, cancellationToken);
                    var hash = md5.Md5For(Key.User) ?? throw NoUsablePassword(md5, "md5");
                    _out.Password(Md5Password.SaltedResponse(hash, data.Span));
                    await SendAsync(cancellationToken);
                    break;
                case AuthRequest.Sasl:
                    Require(BackendAuthSet.ScramSha256, "asks for SASL (SCRAM-SHA-256) authentication");
                    asked = true;
                    AuthMethod = BackendAuthMethod.ScramSha256;
                    var scramCredential = await RequirePasswordAsync(passwords, BackendAuthMethod.ScramSha256, cancellationToken);
                    if (scramCredential.ClientKey is null)
                    {
                        PlainPassword(scramCredential, "SCRAM-SHA-256");
                    }

                    scram = new ScramClientSteps(scramCredential, IsTls ? Tls.TlsSetup.ChannelBindingHash(((System.Net.Security.SslStream)_stream).RemoteCertificate) : null);
                    var (mechanism, first) = Scram(scram, s => s.Start(ParseMechanisms(data.Span)));
                    _out.SaslInitialResponse(mechanism, first);
                    await SendAsync(cancellationToken);
                    break;
                case AuthRequest.SaslContinue when scram is not null:
                    _out.SaslResponse(Scram(scram, s => s.Continue(data.Span)));
                    await SendAsync(cancellationToken);
                    break;
                case AuthRequest.SaslFinal when scram is not null:
                    Scram(scram, s =>
                    {
                        s.Finish(data.Span);
                        return true;
                    });
                    break;
                default:
                    throw new BackendException(NodeId, SqlState.FeatureNotSupported,
                        $"backend node {NodeId} asks for authentication method {(int)request} ({request}), which Poold does not support: use trust, password, md5 or scram-sha-256 for Poold's connections");
            }
        }
    }

    /// <summary>
    /// backend_require_authN, checked before anything is sent: a server (or an impostor on the path) that asks for a
    /// weaker method than the node's setting allows gets no password, no hash and no proof.
    /// </summary>
    private void Require(BackendAuthSet method, string what)
    {
        if (!Node.RequireAuth.HasFlag(method))
        {
            throw new BackendException(NodeId, SqlState.InvalidAuthorizationSpecification,
                $"backend node {NodeId} ({Describe(Node)}) {what}, but backend_require_auth{NodeId} = '{Params.BackendRequireAuth.Show(Node.RequireAuth)}' does not allow it: Poold refused to log in there");
        }
    }

    /// <summary>A SCRAM step; a malformed, hostile or failed exchange becomes an error naming the node.</summary>
    private T Scram<T>(ScramClientSteps steps, Func<ScramClientSteps, T> step)
    {
        try
        {
            return step(steps);
        }
        catch (ScramException e)
        {
            throw new BackendException(NodeId, SqlState.InvalidAuthorizationSpecification,
                $"backend node {NodeId} ({Describe(Node)}): SCRAM authentication failed: {e.Message}");
        }
    }

    private async ValueTask<StoredCredential> RequirePasswordAsync(PasswordSource passwords, BackendAuthMethod method, CancellationToken cancellationToken)
    {
        var credential = await passwords(method, cancellationToken) ?? throw new BackendException(NodeId, SqlState.InvalidPassword,
            $"backend node {NodeId} asks user \"{Key.User}\" for a password ({method}) and Poold has none to give (no pool_passwd entry, or one Poold cannot log in with)");
        _openedWith = CredentialTag.Of(credential);
        return credential;
    }

    private Secret PlainPassword(StoredCredential credential, string method) => credential.Password ?? throw NoUsablePassword(credential, method);

    private BackendException NoUsablePassword(StoredCredential credential, string method) => new(NodeId, SqlState.InvalidPassword, credential switch
    {
        { ClientKey: not null } =>
            $"backend node {NodeId} ({Describe(Node)}) asks user \"{Key.User}\" for {method} authentication, but Poold holds no password for this user, only the SCRAM key its client proved: make the node ask for scram-sha-256 (pg_hba.conf), or give the user a pool_passwd entry with the password (pg_enc)",
        { Verifier: not null, Md5Hash: null } =>
            $"backend node {NodeId} ({Describe(Node)}) asks user \"{Key.User}\" for {method} authentication, but Poold has only a SCRAM-SHA-256 verifier for this user, which can check a client's proof but cannot log in by itself (store the password with pg_enc, as AES)",
        _ =>
            $"backend node {NodeId} asks user \"{Key.User}\" for {method} authentication, which needs the password itself; the pool_passwd entry holds only a hash (store the password with pg_enc, as AES)",
    });

    private static List<string> ParseMechanisms(ReadOnlySpan<byte> data)
    {
        var list = new List<string>();
        while (data.Length > 0 && data[0] != 0)
        {
            var end = data.IndexOf((byte)0);
            if (end < 0)
            {
                break;
            }

            list.Add(Encoding.UTF8.GetString(data[..end]));
            data = data[(end + 1)..];
        }

        return list;
    }

    private BackendException Unexpected(byte code, string when) =>
        new(NodeId, SqlState.ProtocolViolation, $"backend node {NodeId} sent unexpected message type '{(char)code}' {when}");

    /// <summary>
    /// Runs <c>reset_query_list</c> before the connection is offered to another client (ABORT only inside a transaction,
    /// as pgpool-II does). Returns false when the connection is not clean afterwards and must be closed.
    /// </summary>
    public async Task<bool> ResetAsync(IReadOnlyList<string> resetQueries, CancellationToken cancellationToken)
    {
        foreach (var query in resetQueries)
        {
            if (TransactionStatus == TransactionStatus.Idle && IsAbort(query))
            {
                continue;
            }

            _out.Query(query);
            await SendAsync(cancellationToken);
            var failed = false;
            while (true)
            {
                var (code, body) = await ReadFrameAsync(cancellationToken);
                if (code == (byte)BackendCode.ErrorResponse)
                {
                    failed = true;
                }
                else if (code == (byte)BackendCode.ParameterStatus)
                {
                    var (name, value) = ParseParameterStatus(new(body));
                    UpdateParameter(name, value);
                }
                else if (code == (byte)BackendCode.ReadyForQuery && body.Length == 1)
                {
                    TransactionStatus = (TransactionStatus)body[0];
                    break;
                }
            }

            if (failed)
            {
                return false;
            }
        }

        return TransactionStatus == TransactionStatus.Idle;
    }

    private static bool IsAbort(string query) =>
        query.Trim().TrimEnd(';').Trim() is var q
        && (q.Equals("ABORT", StringComparison.OrdinalIgnoreCase) || q.Equals("ROLLBACK", StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Runs one simple query on an idle connection (before or outside the relay) and returns its rows as text; an
    /// ErrorResponse becomes <see cref="BackendRejectedException"/>.
    /// </summary>
    public async Task<List<string?[]>> QueryRowsAsync(string sql, CancellationToken cancellationToken)
    {
        _out.Query(sql);
        await SendAsync(cancellationToken);
        var rows = new List<string?[]>();
        BackendRejectedException? error = null;
        while (true)
        {
            var (code, body) = await ReadFrameAsync(cancellationToken);
            switch ((BackendCode)code)
            {
                case BackendCode.DataRow:
                    rows.Add(ParseDataRow(body));
                    break;
                case BackendCode.ErrorResponse:
                    error = new BackendRejectedException(NodeId, ErrorFields.Parse(new(body)), ErrorFrame(body));
                    break;
                case BackendCode.ReadyForQuery when body.Length == 1:
                    TransactionStatus = (TransactionStatus)body[0];
                    return error is null ? rows : throw error;
            }
        }
    }

    private static string?[] ParseDataRow(byte[] body)
    {
        var count = BinaryPrimitives.ReadInt16BigEndian(body);
        var values = new string?[count];
        var at = 2;
        for (var i = 0; i < count; i++)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(body.AsSpan(at));
            at += 4;
            if (length >= 0)
            {
                values[i] = Encoding.UTF8.GetString(body, at, length);
                at += length;
            }
        }

        return values;
    }
}
