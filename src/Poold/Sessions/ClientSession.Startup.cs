using System.Buffers.Binary;
using System.Net.Security;
using System.Text;
using Poold.Auth;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

internal sealed partial class ClientSession
{
    /// <summary>The PasswordMessage a client sends before it is authenticated: PostgreSQL allows up to 1000 bytes.</summary>
    private const int MaxPasswordMessage = 1000;

    private Secret? _clientPassword;

    /// <summary>
    /// Reads untyped packets until the StartupMessage: SSLRequest → 'S' and a TLS handshake (or 'N'), GSSENCRequest →
    /// 'N', CancelRequest → forwarded, then the connection closes. Reads exactly each packet from the raw stream, so no
    /// byte sent before the TLS handshake can be carried into the encrypted session. Returns false for a cancel.
    /// </summary>
    private async Task<bool> NegotiateAsync(CancellationToken cancellationToken)
    {
        var lengthBytes = new byte[4];
        while (true)
        {
            await _client.ReadExactlyAsync(lengthBytes, cancellationToken);
            var length = StartupPacket.CheckLength(lengthBytes);
            var body = new byte[length - 4];
            await _client.ReadExactlyAsync(body, cancellationToken);
            var packet = StartupPacket.Parse(body);
            switch (packet.Kind)
            {
                case StartupKind.SslRequest when _clientIsTls:
                    throw new PgProtocolException(SqlState.ProtocolViolation, "SSL request received on an encrypted connection");
                case StartupKind.SslRequest when _services.Tls.Enabled && !_isUnixSocket:
                    if (_socket.Available > 0)
                    {
                        // A client waits for the answer before its handshake: bytes already here were not sent by one.
                        throw new PgProtocolException(SqlState.ProtocolViolation, "received unencrypted data after SSL request");
                    }

                    await _client.WriteAsync("S"u8.ToArray(), cancellationToken);
                    var ssl = new SslStream(_client, leaveInnerStreamOpen: false);
                    _client = ssl;
                    await ssl.AuthenticateAsServerAsync(_services.Tls.ServerOptions(), cancellationToken);
                    _clientIsTls = true;
                    LogTls(ssl);
                    break;
                case StartupKind.SslRequest or StartupKind.GssEncRequest:
                    await _client.WriteAsync("N"u8.ToArray(), cancellationToken);
                    break;
                case StartupKind.CancelRequest:
                    await HandleCancelRequestAsync(packet, cancellationToken);
                    return false;
                default:
                    await AcceptStartupAsync(packet, cancellationToken);
                    return true;
            }
        }
    }

    private async Task AcceptStartupAsync(StartupPacket packet, CancellationToken cancellationToken)
    {
        // Protocol 3.x with x > 0, or _pq_ options: answer as PostgreSQL 15 does, offering 3.0 and no options.
        var protocolOptions = packet.Parameters.Where(p => p.Key.StartsWith("_pq_.", StringComparison.Ordinal)).Select(p => p.Key).ToList();
        if (packet.MinorVersion > 0 || protocolOptions.Count > 0)
        {
            _out.Clear();
            _out.NegotiateProtocolVersion(0, protocolOptions);
            await _client.WriteAsync(_out.Written, cancellationToken);
            packet = packet with { Parameters = packet.Parameters.Where(p => !p.Key.StartsWith("_pq_.", StringComparison.Ordinal)).ToList() };
        }

        _startup = packet;
        if (string.IsNullOrEmpty(packet["user"]))
        {
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet");
        }

        if (packet["replication"] is { } replication && !replication.Equals("false", StringComparison.OrdinalIgnoreCase)
            && replication != "0" && !replication.Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            throw new ClientFatalException(SqlState.FeatureNotSupported,
                "Poold does not relay replication connections: connect to the PostgreSQL server directly");
        }

        LogStartup(packet["user"]!, Database!, _clientIsTls);
    }

    private async Task HandleCancelRequestAsync(StartupPacket packet, CancellationToken cancellationToken)
    {
        var target = _services.Cancels.Find(packet.CancelProcessId, packet.CancelSecretKey);
        if (target is null)
        {
            LogCancelUnknown(packet.CancelProcessId);
            return;
        }

        LogCancelForwarded(target.Id);
        await target.ForwardCancelAsync(cancellationToken);
    }

    /// <summary>
    /// With <c>enable_pool_hba = off</c> the backend's own method drives (pgpool-compat §3.4): trust needs nothing;
    /// cleartext, md5 and SCRAM are served by asking the client for its cleartext password (for md5 and SCRAM only
    /// with <c>allow_clear_text_frontend_auth = on</c>) and logging in to the backend with it. A cached connection
    /// is handed over only to a client that gives the password it was opened with.
    /// </summary>
    private async Task AuthenticateAsync(CancellationToken cancellationToken)
    {
        if (_services.Settings.Get(Params.EnablePoolHba))
        {
            throw new ClientFatalException(SqlState.FeatureNotSupported,
                "enable_pool_hba = on is not supported by this Poold build yet: set enable_pool_hba = off");
        }

        var snapshot = _services.Nodes.Current;
        var primary = snapshot.Primary ?? throw new ClientFatalException(SqlState.CannotConnectNow,
            "no backend node is available: the configuration defines no backend_port0 … or every node is down");
        var parameters = _startup!.Parameters;
        var key = PoolKey.Create(primary.Id, parameters);
        var pool = _services.Pool;

        if (pool.TryTake(key) is { } cached)
        {
            Volatile.Write(ref _backend, cached);
            if (cached.AuthMethod != BackendAuthMethod.Trust)
            {
                var password = await PasswordForBackendAsync(cached.AuthMethod, cancellationToken);
                if (!cached.AcceptsPassword(password))
                {
                    throw new ClientFatalException(SqlState.InvalidPassword, $"password authentication failed for user \"{User}\"");
                }
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
            var backend = await BackendConnection.OpenAsync(primary.Settings, key, parameters, PasswordForBackendAsync, _services.Tls,
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

    /// <summary>The <see cref="PasswordSource"/> for pass-through: asks the client once, in cleartext, and keeps the answer.</summary>
    private async ValueTask<Secret?> PasswordForBackendAsync(BackendAuthMethod method, CancellationToken cancellationToken)
    {
        if (_clientPassword is not null)
        {
            return _clientPassword;
        }

        if (method != BackendAuthMethod.Cleartext && !_services.Settings.Get(Params.AllowClearTextFrontendAuth))
        {
            throw new ClientFatalException(SqlState.InvalidAuthorizationSpecification,
                $"password authentication is not possible for user \"{User}\"",
                $"The backend asks for {method} authentication; Poold can log in for this user only with allow_clear_text_frontend_auth = on (pass-through) or a pool_passwd entry.");
        }

        _out.Clear();
        _out.Authentication(AuthRequest.CleartextPassword);
        await _client.WriteAsync(_out.Written, cancellationToken);
        await _client.FlushAsync(cancellationToken);
        _clientPassword = new Secret(await ReadPasswordMessageAsync(cancellationToken));
        return _clientPassword;
    }

    /// <summary>Reads a PasswordMessage ('p'), bounded before it is buffered.</summary>
    private async Task<string> ReadPasswordMessageAsync(CancellationToken cancellationToken)
    {
        var header = new byte[5];
        await _client.ReadExactlyAsync(header, cancellationToken);
        var length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
        if (header[0] != (byte)FrontendCode.Password)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, $"expected password response, got message type '{(char)header[0]}'");
        }

        if (length < 5 || length > MaxPasswordMessage)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, $"invalid password packet size {length}");
        }

        var body = new byte[length - 4];
        await _client.ReadExactlyAsync(body, cancellationToken);
        var end = Array.IndexOf(body, (byte)0);
        if (end != body.Length - 1)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, "invalid password packet: expected one NUL-terminated string");
        }

        if (end == 0)
        {
            throw new ClientFatalException(SqlState.InvalidPassword, $"empty password returned by client for user \"{User}\"");
        }

        return Encoding.UTF8.GetString(body, 0, end);
    }

    /// <summary>AuthenticationOk, the backend's ParameterStatus values, Poold's BackendKeyData, ReadyForQuery.</summary>
    private async Task SendStartupResponseAsync(CancellationToken cancellationToken)
    {
        var backend = _backend!;
        _out.Clear();
        _out.Authentication(AuthRequest.Ok);
        foreach (var (name, value) in backend.Parameters)
        {
            _out.ParameterStatus(name, value);
        }

        _out.BackendKeyData(Id, _secretKey);
        _out.ReadyForQuery(backend.TransactionStatus);
        await _client.WriteAsync(_out.Written, cancellationToken);
        await _client.FlushAsync(cancellationToken);
    }
}
