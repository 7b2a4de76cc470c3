using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Poold.Protocol;

namespace Poold.Sessions;

internal sealed partial class ClientSession
{
    /// <summary>The PasswordMessage a client sends before it is authenticated: PostgreSQL allows up to 1000 bytes.</summary>
    private const int MaxPasswordMessage = 1000;

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
                case StartupKind.SslRequest when _services.Tls.Enabled && !_isUnixSocket && !_rejectAsTooMany:
                    if (_socket.Available > 0)
                    {
                        // A client waits for the answer before its handshake: bytes already here were not sent by one.
                        throw new PgProtocolException(SqlState.ProtocolViolation, "received unencrypted data after SSL request");
                    }

                    await _client.WriteAsync("S"u8.ToArray(), cancellationToken);
                    var ssl = new SslStream(_client, leaveInnerStreamOpen: false);
                    _client = ssl;
                    await ssl.AuthenticateAsServerAsync(_services.Tls.ServerOptions(), cancellationToken);
                    Tls.TlsIdleMemory.ReleaseBuffersWhenIdle(ssl);
                    _clientIsTls = true;
                    _services.Metrics?.TlsHandshake(succeeded: true);
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

        _replication = packet["replication"] is { } replication ? ParseReplication(replication) : ReplicationMode.None;

        LogStartup(packet["user"]!, Database!, _clientIsTls);
    }

    private async Task HandleCancelRequestAsync(StartupPacket packet, CancellationToken cancellationToken)
    {
        var target = _services.Cancels.Find(packet.CancelProcessId, packet.CancelSecretKey);
        if (target is null && _services.PeerCancels.ForwardTarget(_services.Settings, packet.CancelProcessId, packet.CancelSecretKey) is { } peer)
        {
            LogCancelToPeer(peer.Id, peer.Host, peer.Port);
            try
            {
                await PeerCancels.SendAsync(peer, packet.CancelProcessId, packet.CancelSecretKey, TimeSpan.FromSeconds(10), cancellationToken);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
                LogCancelToPeerFailed(peer.Id, e.Message);
            }

            return;
        }

        if (target is null)
        {
            LogCancelUnknown(packet.CancelProcessId);
            return;
        }

        LogCancelForwarded(target.Id);
        await target.ForwardCancelAsync(cancellationToken);
    }

    /// <summary>Reads a PasswordMessage ('p') holding one string (cleartext password or md5 response).</summary>
    private async Task<string> ReadPasswordMessageAsync(CancellationToken cancellationToken)
    {
        var body = await ReadAuthMessageAsync(MaxPasswordMessage, cancellationToken);
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

    /// <summary>Reads the body of a client's 'p' message (password, SASLInitialResponse, SASLResponse), bounded before it is buffered.</summary>
    private async Task<byte[]> ReadAuthMessageAsync(int maxLength, CancellationToken cancellationToken)
    {
        var header = new byte[5];
        await _client.ReadExactlyAsync(header, cancellationToken);
        var length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
        if (header[0] != (byte)FrontendCode.Password)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, $"expected password response, got message type '{(char)header[0]}'");
        }

        if (length < 5 || length > maxLength)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, $"invalid password packet size {length}");
        }

        var body = new byte[length - 4];
        await _client.ReadExactlyAsync(body, cancellationToken);
        return body;
    }

    /// <summary>AuthenticationOk, the backend's ParameterStatus values (or the pool's, <see cref="Pooling.LoginWelcome"/>), Poold's BackendKeyData, ReadyForQuery.</summary>
    private async Task SendStartupResponseAsync(CancellationToken cancellationToken)
    {
        var backend = _backendSide.LoginConnection;
        _out.Clear();
        _out.Authentication(AuthRequest.Ok);
        foreach (var (name, value) in backend?.Parameters ?? _welcome!.Parameters)
        {
            _out.ParameterStatus(name, value);
        }

        _welcome = null;
        _out.BackendKeyData(_cancelProcessId, _secretKey);
        _out.ReadyForQuery(backend?.TransactionStatus ?? TransactionStatus.Idle);
        await _client.WriteAsync(_out.Written, cancellationToken);
        await _client.FlushAsync(cancellationToken);
        _out.ReleaseStorage();
    }
}
