using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Poold.Config;
using Poold.Io;
using Poold.Protocol;
using Poold.Tls;

namespace Poold.Pooling;

/// <summary>
/// One authenticated connection to a backend node. Owned by exactly one party at a time: the session that checked it
/// out, or the pool while idle. Remembers what a new owner needs: the backend's parameter status values, its key for
/// cancel requests, how it authenticated, and a salted hash of the password that opened it (never the password).
/// </summary>
internal sealed partial class BackendConnection : IAsyncDisposable
{
    /// <summary>Frames read during login and reset are whole in memory; anything larger is a broken backend.</summary>
    private const int MaxStartupFrame = 1 << 20;

    private readonly Socket _socket;
    private readonly Stream _stream;

    /// <summary>The stream on the socket itself when it is Poold's engine's (under TLS, if any): its readiness spares a poll.</summary>
    private readonly SocketStream? _engineStream;
    private readonly MessageBuffer _out = new();
    private readonly List<KeyValuePair<string, string>> _parameters = [];
    /// <summary>The credential of the login that opened this connection (null after a trust login).</summary>
    private CredentialTag? _openedWith;
    private int _disposed;

    private BackendConnection(BackendSettings node, PoolKey key, Socket socket, Stream stream, SocketStream? engineStream, bool isTls, long createdAt)
    {
        _engineStream = engineStream;
        Node = node;
        Key = key;
        _socket = socket;
        _stream = stream;
        IsTls = isTls;
        CreatedAt = createdAt;
        LastUsedAt = createdAt;
        Reader = new ContiguousPipeReader(stream, bufferSize: 64 * 1024, minimumReadSize: 4096, transport: engineStream);
    }

    /// <summary>
    /// Moves the connection's socket to the event thread of <paramref name="client"/>'s (see
    /// <see cref="SocketStream.JoinEventThreadOf"/>); nothing when either is not on Poold's engine.
    /// </summary>
    public void JoinEventThreadOf(SocketStream? client)
    {
        if (client is not null)
        {
            _engineStream?.JoinEventThreadOf(client);
        }
    }

    public BackendSettings Node { get; }

    public int NodeId => Node.Id;

    public PoolKey Key { get; }

    public bool IsTls { get; }

    public PipeReader Reader { get; }

    /// <summary>The backend's process id and secret key, for cancel requests.</summary>
    public int ProcessId { get; private set; }

    public int SecretKey { get; private set; }

    public BackendAuthMethod AuthMethod { get; private set; }

    public TransactionStatus TransactionStatus { get; set; } = TransactionStatus.Idle;

    /// <summary>
    /// Set when the stream's position or state is uncertain (a reply abandoned mid-frame, a drain that gave up, a
    /// write that failed): such a connection is closed, never pooled (Npgsql's <c>Break()</c>).
    /// </summary>
    public bool IsBroken => Volatile.Read(ref _broken) != 0;

    private int _broken;

    public void Break() => Volatile.Write(ref _broken, 1);

    /// <summary>The backend's current ParameterStatus values, in the order first reported.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Parameters => _parameters;

    /// <summary><see cref="TimeProvider.GetTimestamp"/> values.</summary>
    public long CreatedAt { get; }

    public long LastUsedAt { get; set; }

    /// <summary>
    /// Opens, optionally encrypts, starts up and authenticates a connection to <paramref name="node"/>. <paramref name="dial"/>
    /// replaces the socket engine's connect (the health check uses blocking sockets that client traffic cannot starve).
    /// </summary>
    public static async Task<BackendConnection> OpenAsync(BackendSettings node, PoolKey key, IReadOnlyList<KeyValuePair<string, string>> startup,
        PasswordSource passwords, TlsSetup tls, TimeSpan connectTimeout, TimeProvider time, CancellationToken cancellationToken,
        BackendDialer? dial = null)
    {
        var (socket, stream) = dial is null
            ? await ConnectAsync(node, connectTimeout, cancellationToken, sessionStream: true)
            : await dial(node, connectTimeout, cancellationToken);
        var engineStream = stream as SocketStream;
        var isTls = false;
        try
        {
            if (tls.ModeFor(node) != BackendTlsMode.Disable)
            {
                (stream, isTls) = await NegotiateTlsAsync(node, stream, tls, cancellationToken);
            }

            var connection = new BackendConnection(node, key, socket, stream, engineStream, isTls, time.GetTimestamp());
            try
            {
                await connection.StartupAsync(startup, passwords, cancellationToken);
                return connection;
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or System.Security.Authentication.AuthenticationException)
        {
            await stream.DisposeAsync();
            throw new BackendException(node.Id, SqlState.ConnectionFailure,
                $"could not talk to backend node {node.Id} ({Describe(node)}): {e.Message}", e);
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Sends a CancelRequest for (<paramref name="processId"/>, <paramref name="secretKey"/>) on a new connection and waits
    /// until the server closes it: by then the postmaster has signalled the backend, so whoever reuses that backend
    /// afterwards (after a round trip of its own) cannot be hit by this cancel.
    /// </summary>
    public static async Task SendCancelAsync(BackendSettings node, int processId, int secretKey, TimeSpan connectTimeout,
        CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(connectTimeout > TimeSpan.Zero ? connectTimeout * 2 : TimeSpan.FromSeconds(20));
        var (_, stream) = await ConnectAsync(node, connectTimeout, timeout.Token);
        await using (stream)
        {
            var message = new MessageBuffer(16).CancelRequest(processId, secretKey);
            await stream.WriteAsync(message.Written, timeout.Token);
            var sink = new byte[16];
            while (await stream.ReadAsync(sink, timeout.Token) > 0)
            {
                // The server answers a cancel with nothing; it closes the connection once the signal is sent.
            }
        }
    }

    private static string Describe(BackendSettings node) =>
        node.IsUnixSocket ? SocketPath(node) : $"{node.Hostname}:{node.Port}";

    internal static string SocketPath(BackendSettings node)
    {
        var dir = node.Hostname;
        if (dir.Length == 0)
        {
            // pgpool-II's default socket directory is /tmp; Debian's PostgreSQL listens in /var/run/postgresql.
            dir = File.Exists($"/var/run/postgresql/.s.PGSQL.{node.Port}") ? "/var/run/postgresql" : "/tmp";
        }

        return Path.Combine(dir, $".s.PGSQL.{node.Port}");
    }

    /// <summary>
    /// Connects to <paramref name="node"/>. <paramref name="sessionStream"/>: the connection will carry a session's
    /// traffic, and gets the stream <see cref="SocketStreams"/> chooses (Poold's engine on Linux); otherwise (a cancel
    /// request) .NET's.
    /// </summary>
    private static async Task<(Socket, Stream)> ConnectAsync(BackendSettings node, TimeSpan timeout, CancellationToken cancellationToken,
        bool sessionStream = false)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (timeout > TimeSpan.Zero)
        {
            cts.CancelAfter(timeout);
        }

        Socket socket;
        try
        {
            if (sessionStream)
            {
                return await ConnectSessionStreamAsync(node, cts.Token);
            }

            if (node.IsUnixSocket)
            {
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await ConnectOrDisposeAsync(socket, new System.Net.Sockets.UnixDomainSocketEndPoint(SocketPath(node)), cts.Token);
            }
            else
            {
                socket = NewTcpSocket(System.Net.Sockets.AddressFamily.InterNetworkV6, dualMode: true);
                await ConnectOrDisposeAsync(socket, new System.Net.DnsEndPoint(node.Hostname, node.Port), cts.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new BackendException(node.Id, SqlState.ConnectionFailure,
                $"could not connect to backend node {node.Id} ({Describe(node)}): timed out after {timeout.TotalMilliseconds:0} ms (connect_timeout)");
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            throw new BackendException(node.Id, SqlState.ConnectionFailure,
                $"could not connect to backend node {node.Id} ({Describe(node)}): {e.Message}", e);
        }

        return (socket, new NetworkStream(socket, ownsSocket: true));
    }

    private static Socket NewTcpSocket(AddressFamily family, bool dualMode)
    {
        var socket = dualMode ? new Socket(SocketType.Stream, ProtocolType.Tcp) : new Socket(family, SocketType.Stream, ProtocolType.Tcp);
        socket.NoDelay = true;
        // A backend host that vanishes (power loss, network partition) is noticed on an idle connection too.
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        return socket;
    }

    /// <summary>
    /// Connects through <see cref="SocketStreams.ConnectAsync(Socket, System.Net.EndPoint, CancellationToken)"/>: host
    /// names resolved first (on the thread pool), then each address tried in turn, as .NET's connect to a
    /// <see cref="System.Net.DnsEndPoint"/> does.
    /// </summary>
    private static async Task<(Socket, Stream)> ConnectSessionStreamAsync(BackendSettings node, CancellationToken cancellationToken)
    {
        if (node.IsUnixSocket)
        {
            var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            return (unix, await SocketStreams.ConnectAsync(unix, new UnixDomainSocketEndPoint(SocketPath(node)), cancellationToken));
        }

        var addresses = System.Net.IPAddress.TryParse(node.Hostname, out var literal) ? [literal]
            : await System.Net.Dns.GetHostAddressesAsync(node.Hostname, cancellationToken);
        if (addresses.Length == 0)
        {
            throw new SocketException((int)SocketError.HostNotFound);
        }

        for (var i = 0; ; i++)
        {
            var socket = NewTcpSocket(addresses[i].AddressFamily, dualMode: false);
            try
            {
                return (socket, await SocketStreams.ConnectAsync(socket, new System.Net.IPEndPoint(addresses[i], node.Port), cancellationToken));
            }
            catch (SocketException) when (i < addresses.Length - 1)
            {
                // The next address.
            }
        }
    }

    private static async Task ConnectOrDisposeAsync(Socket socket, System.Net.EndPoint endPoint, CancellationToken cancellationToken)
    {
        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// SSLRequest: 'S' → TLS handshake, the certificate checked as backend_sslmodeN says; 'N' → plaintext for prefer (as
    /// pgpool-II), an error for require and the verify modes.
    /// </summary>
    private static async Task<(Stream, bool)> NegotiateTlsAsync(BackendSettings node, Stream stream, TlsSetup tls, CancellationToken cancellationToken)
    {
        var mode = tls.ModeFor(node);
        await stream.WriteAsync(new MessageBuffer(8).SslRequest().Written, cancellationToken);
        var answer = new byte[1];
        await stream.ReadExactlyAsync(answer, cancellationToken);
        switch (answer[0])
        {
            case (byte)'N' when mode == BackendTlsMode.Prefer:
                return (stream, false);
            case (byte)'N':
                throw new BackendException(node.Id, SqlState.ConnectionFailure,
                    $"backend node {node.Id} ({Describe(node)}) does not accept TLS, and backend_sslmode{node.Id} = {Params.BackendSslMode.Show(mode)} requires it");
            case (byte)'S':
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                SslClientAuthenticationOptions options;
                BackendCertificateCheck check;
                try
                {
                    options = tls.BackendOptions(node, out check);
                }
                catch (BackendTlsException e)
                {
                    throw new BackendException(node.Id, SqlState.ConnectionFailure, $"backend node {node.Id}: backend_ssl_ca_cert{node.Id}: {e.Message}");
                }

                try
                {
                    await ssl.AuthenticateAsClientAsync(options, cancellationToken);
                }
                catch (System.Security.Authentication.AuthenticationException e) when (check.Failure is { } failure)
                {
                    throw new BackendException(node.Id, SqlState.ConnectionFailure,
                        $"backend node {node.Id} ({Describe(node)}) failed TLS certificate verification: {failure}", e);
                }

                return (ssl, true);
            default:
                throw new BackendException(node.Id, SqlState.ProtocolViolation,
                    $"backend node {node.Id} answered the SSL request with byte 0x{answer[0]:x2}: is it a PostgreSQL server?");
        }
    }

    public ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => _stream.WriteAsync(data, cancellationToken);

    /// <summary>A client's frame as it was read: usually one segment, written with no state machine of its own.</summary>
    public ValueTask WriteAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken) =>
        data.IsSingleSegment ? _stream.WriteAsync(data.First, cancellationToken) : WriteSegmentsAsync(data, cancellationToken);

    private async ValueTask WriteSegmentsAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken)
    {
        foreach (var segment in data)
        {
            await _stream.WriteAsync(segment, cancellationToken);
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken) => new(_stream.FlushAsync(cancellationToken));

    /// <summary>
    /// Runs <paramref name="query"/> on an idle connection and reads up to its ReadyForQuery: true when the server answered
    /// and is still outside a transaction (server_check_query).
    /// </summary>
    public async Task<bool> ProbeAsync(string query, CancellationToken cancellationToken)
    {
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
            else if (code == (byte)BackendCode.ReadyForQuery && body.Length == 1)
            {
                TransactionStatus = (TransactionStatus)body[0];
                return !failed && TransactionStatus == TransactionStatus.Idle;
            }
        }
    }

    /// <summary>
    /// For a connection with nothing outstanding: true when the server has closed it or has something to say unasked
    /// (a FATAL before it goes, e.g. "terminating connection due to immediate shutdown command") — a node that died or
    /// was restarted while this connection sat idle.
    /// </summary>
    public bool IsClosedByPeer()
    {
        if (_engineStream is { MayHaveInput: false })
        {
            // No edge since the last read drained the socket: nothing, not even a FIN, has arrived.
            return false;
        }

        try
        {
            return _socket.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return true;
        }
    }

    /// <summary>
    /// Whether a client whose backend login would use the credential <paramref name="tag"/> names may have this
    /// connection: it was opened without a password (trust), or with that very credential. A cached connection never
    /// lets a client in on someone else's login, and gives no one more than a fresh login would.
    /// </summary>
    public bool WasOpenedWith(CredentialTag? tag) =>
        AuthMethod == BackendAuthMethod.Trust || (tag is not null && _openedWith is not null && _openedWith.Matches(tag));

    /// <summary>The tag of the credential this connection logged in with (null: none, a trust login).</summary>
    internal CredentialTag? OpenedWith => _openedWith;

    internal void UpdateParameter(string name, string value)
    {
        var i = _parameters.FindIndex(p => p.Key == name);
        if (i >= 0)
        {
            _parameters[i] = new(name, value);
        }
        else
        {
            _parameters.Add(new(name, value));
        }
    }

    internal static (string Name, string Value) ParseParameterStatus(ReadOnlySequence<byte> body)
    {
        var reader = new SequenceReader<byte>(body);
        reader.TryReadTo(out ReadOnlySequence<byte> name, 0);
        reader.TryReadTo(out ReadOnlySequence<byte> value, 0);
        return (Encoding.UTF8.GetString(name), Encoding.UTF8.GetString(value));
    }

    /// <summary>Reads one whole frame during startup or reset (bounded size).</summary>
    private async ValueTask<(byte Code, byte[] Body)> ReadFrameAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await Reader.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (FrameReader.TryReadFrame(ref buffer, MaxStartupFrame, out var code, out _, out var body))
            {
                var bytes = body.ToArray();
                Reader.AdvanceTo(buffer.Start);
                return (code, bytes);
            }

            if (result.IsCompleted)
            {
                throw new BackendException(NodeId, SqlState.ConnectionFailure,
                    $"backend node {NodeId} ({Describe(Node)}) closed the connection unexpectedly");
            }

            Reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private async ValueTask SendAsync(CancellationToken cancellationToken)
    {
        await _stream.WriteAsync(_out.Written, cancellationToken);
        await _stream.FlushAsync(cancellationToken);
        _out.Clear();
    }

    private static byte[] ErrorFrame(byte[] body)
    {
        var frame = new byte[body.Length + 5];
        frame[0] = (byte)BackendCode.ErrorResponse;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), body.Length + 4);
        body.CopyTo(frame, 5);
        return frame;
    }

    /// <summary>Says goodbye (Terminate) to the server if it can, within a second, then closes the connection.</summary>
    public async ValueTask TerminateAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await _stream.WriteAsync(new byte[] { (byte)FrontendCode.Terminate, 0, 0, 0, 4 }, timeout.Token);
            await _stream.FlushAsync(timeout.Token);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException
                                      or InvalidOperationException or NotSupportedException)
        {
            // Already gone: closing is all that is left.
        }

        await DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await Reader.CompleteAsync();
            await _stream.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // Already broken: nothing more to release.
        }
        finally
        {
            _socket.Dispose();
        }
    }
}

/// <summary>Connects a socket to a node and gives the stream to speak on (see <see cref="BackendConnection.OpenAsync"/>).</summary>
internal delegate Task<(Socket Socket, Stream Stream)> BackendDialer(BackendSettings node, TimeSpan connectTimeout, CancellationToken cancellationToken);
