using System.Net.Sockets;
using System.Security.Authentication;
using Poold.Io;
using Poold.Pooling;
using Poold.Protocol;
using Serilog;

namespace Poold.Sessions;

/// <summary>Why a session ended, for the log and for what happens to its backend connection.</summary>
internal enum SessionEnd
{
    Terminated,
    ClientClosed,
    Failed,
}

/// <summary>
/// The client side of one client connection, from accept to close, in one direction: negotiate → startup → authenticate
/// → relay → release. Owns the client stream: it reads the client's messages and hands each to its
/// <see cref="BackendSide"/>, which owns every server connection, routes and runs the batches and streams the replies
/// back (through <see cref="ClientOutput"/>); the client side answers Poold's own SQL commands and never touches a
/// server connection itself. Every error ends here, in one catch ladder: the client gets a PostgreSQL-style
/// ErrorResponse with the right SQLSTATE, other sessions are untouched.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "RunAsync closes the client stream in its finally block")]
internal sealed partial class ClientSession
{
    private readonly SessionServices _services;
    private readonly Socket _socket;
    private readonly bool _isUnixSocket;
    private readonly bool _rejectAsTooMany;
    /// <summary>This session's logger, made at its first line (most sessions write none at the usual levels): see <see cref="At"/>.</summary>
    private ILogger? _log;

    /// <summary>The line prefix's properties (user, database, application, host, port), once the startup packet is in.</summary>
    private (string User, string Database, string Application, string Host, string Port)? _logContext;
    private readonly MessageBuffer _out = new();
    private Stream _client;

    /// <summary>The client's socket on Poold's event engine, under TLS if any (null on .NET's).</summary>
    private readonly Io.SocketStream? _eventStream;
    private bool _clientIsTls;
    private StartupPacket? _startup;
    private int _secretKey;
    private int _cancelProcessId;

    /// <summary>What the relays write to the client once the login is over.</summary>
    private readonly ClientOutput _output = new();

    /// <summary>The session's backend side: the client side hands it every message and never touches a server connection.</summary>
    private readonly BackendSide _backendSide;
    private readonly string _clientHost;
    private readonly string _clientPort;

    public ClientSession(SessionServices services, Socket socket, int id, bool rejectAsTooMany)
    {
        _services = services;
        _socket = socket;
        _isUnixSocket = socket.AddressFamily == AddressFamily.Unix;
        _rejectAsTooMany = rejectAsTooMany;
        Id = id;
        _client = SocketStreams.Create(socket);
        _eventStream = _client as Io.SocketStream;
        _backendSide = new BackendSide(services, this, _output);
        StartedAt = services.Time.GetUtcNow();

        // Read once: SHOW POOL_POOLS and pcp_proc_info may ask after the socket is closed.
        var remote = socket.RemoteEndPoint as System.Net.IPEndPoint;
        _clientHost = remote is not null ? StringInterner.Intern(remote.Address.ToString()) : "[local]";
        _clientPort = remote?.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-1";
    }

    /// <summary>Poold's own number for this session (logs, SHOW POOL_PROCESSES); the client's BackendKeyData carries the backend's pid.</summary>
    public int Id { get; }

    public DateTimeOffset StartedAt { get; }

    /// <summary>The pid in the client's BackendKeyData: its backend on the primary (0 before the startup completes).</summary>
    public int BackendProcessId => Volatile.Read(ref _cancelProcessId);

    public string? User => _startup?["user"];

    public string? Database => _startup is { } s ? s["database"] ?? s["user"] : null;

    public string ClientHost => _clientHost;

    public string ClientPort => _clientPort;

    /// <summary>
    /// Runs the session to its end. Never throws: whatever happens stays inside this session, and the host hears of its
    /// end (<see cref="ISessionAdmission.Ended"/>) from here, last, rather than from a wrapper or continuation of its own.
    /// </summary>
    public async Task RunAsync(CancellationToken shutdown)
    {
        var end = SessionEnd.Failed;
        try
        {
            try
            {
                if (!await StartAsync(shutdown))
                {
                    return;
                }

                // From here on the client's stream is what the relays write to: the login (and its TLS) is over.
                _output.Stream = _client;
                end = _replication == ReplicationMode.None ? await RelayAsync(shutdown) : await RelayReplicationAsync(shutdown);
            }
            catch (Exception e)
            {
                await ReportAsync(e, shutdown);
            }
            finally
            {
                if (_cancelProcessId != 0)
                {
                    _services.Cancels.Unregister(_cancelProcessId, _secretKey);
                }

                await _backendSide.ReleaseAllAsync(end, replication: _replication != ReplicationMode.None);
                ForgetClientKey();
                await CloseClientAsync();
                LogEnded(end);
                _services.Metrics?.SessionEnded(_bytesIn, _output.Bytes);
            }
        }
        catch (Exception e)
        {
            _services.Log.Error(e, "session {SessionId} escaped its error boundary", Id);
        }
        finally
        {
            _services.Admission?.Ended(this);
        }
    }

    /// <summary>Negotiation, startup, authentication and the backend connection, all under authentication_timeout.</summary>
    private async Task<bool> StartAsync(CancellationToken shutdown)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        var (limit, limitName) = StartDeadline(_services.Settings, _rejectAsTooMany);
        timeout.CancelAfter(limit);

        try
        {
            if (!await NegotiateAsync(timeout.Token))
            {
                return false;
            }

            if (_rejectAsTooMany)
            {
                throw new ClientFatalException(SqlState.TooManyConnections, "sorry, too many clients already");
            }

            await AuthenticateAsync(timeout.Token);
            if (_replication == ReplicationMode.None)
            {
                await _backendSide.PrepareRoutingAsync(timeout.Token);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !shutdown.IsCancellationRequested)
        {
            throw new ClientFatalException(SqlState.ConnectionFailure,
                $"canceling authentication due to timeout ({limitName} = {limit.TotalSeconds:0}s)");
        }

        // The client sees the pid of its backend on the primary (pgpool-II's choice): pg_backend_pid(), pg_stat_activity
        // and pg_terminate_backend agree with its driver. The secret is Poold's, so the cancel comes back here.
        // In transaction mode no backend pid is the client's for long: it gets a random one (PgBouncer's choice), and
        // SHOW POOL_PROCESSES shows which backend serves it at the moment.
        var transactionMode = _backendSide.TransactionMode;
        var processId = transactionMode ? 0 : _backendSide.LoginConnection!.ProcessId;
        do
        {
            if (transactionMode)
            {
                processId = System.Security.Cryptography.RandomNumberGenerator.GetInt32(1, int.MaxValue);
            }

            _secretKey = PeerCancels.NewSecret(_services.Settings.Get(Config.Params.PeerId));
        }
        while (!_services.Cancels.TryRegister(processId, _secretKey, this));

        _cancelProcessId = processId;
        _services.Metrics?.LoginSucceeded();
        await SendStartupResponseAsync(shutdown);
        return true;
    }

    /// <summary>True once the session holds one of num_init_children's slots (the host gives it back at the end).</summary>
    public bool Admitted { get; private set; }

    /// <summary>
    /// How long the start may take: authentication_timeout, but never more than unauthenticated_timeout (which also
    /// bounds authentication_timeout = 0), and a few seconds for a connection that is only to be refused.
    /// </summary>
    internal static (TimeSpan Limit, string Name) StartDeadline(Config.PooldSettings settings, bool refusing)
    {
        var auth = settings.Get(Config.Params.AuthenticationTimeout);
        var cap = settings.Get(Config.Params.UnauthenticatedTimeout);
        cap = cap > TimeSpan.Zero ? cap : TimeSpan.FromSeconds(60);
        var (limit, name) = auth > TimeSpan.Zero && auth <= cap ? (auth, "authentication_timeout") : (cap, "unauthenticated_timeout");
        return refusing && limit > RefuseDeadline ? (RefuseDeadline, "refusal deadline") : (limit, name);
    }

    /// <summary>The most a connection that will be refused (53300) may take to send its startup packet.</summary>
    private static readonly TimeSpan RefuseDeadline = TimeSpan.FromSeconds(5);

    /// <summary>Takes a session slot before any backend is touched; 53300 when there is none.</summary>
    private async Task AdmitAsync(CancellationToken cancellationToken)
    {
        if (_services.Admission is { } admission)
        {
            var waitStart = _services.Time.GetTimestamp();
            var transactionMode = _backendSide.TransactionMode;
            Admitted = await admission.TryEnterAsync(this, transactionMode, cancellationToken);
            if (!transactionMode)
            {
                // In transaction mode no slot is waited for (past max_client_conn the client is refused): the wait
                // that histogram counts there is each request for a server connection (ConnectAsync).
                _services.Metrics?.PoolWaited(_services.Time.GetElapsedTime(waitStart));
            }
            if (!Admitted)
            {
                throw new ClientFatalException(SqlState.TooManyConnections,
                    transactionMode ? "no more connections allowed (max_client_conn)" : "sorry, too many clients already");
            }
        }
    }

    /// <summary>The catch ladder: map what went wrong to what the client is told, and log it once.</summary>
    private async Task ReportAsync(Exception e, CancellationToken shutdown)
    {
        CountFailure(e);
        switch (e)
        {
            case BackendRejectedException rejected:
                LogBackendRejected(rejected);
                await TrySendAsync(rejected.Frame);
                break;
            case BackendException backend when _backendSide.ServerFatalRelayed:
                // The server said why it closed the connection (FATAL 57P01 after pg_terminate_backend, a shutdown):
                // the client has the server's words, as on a direct connection.
                LogBackendFailure(backend);
                break;
            case BackendException backend:
                LogBackendFailure(backend);
                if (backend.SqlState == SqlState.ConnectionFailure && _startup is not null && _backendSide.HoldsPrimary)
                {
                    _services.BackendFailed?.Invoke(backend.NodeId, backend.Message, false);
                }

                await TrySendErrorAsync(backend.SqlState, backend.Message);
                break;
            case ClientFatalException fatal:
                LogClientFatal(fatal);
                await TrySendErrorAsync(fatal.SqlState, fatal.Message, fatal.Detail);
                break;
            case PgProtocolException protocol:
                LogProtocolViolation(protocol);
                await TrySendErrorAsync(protocol.SqlState, protocol.Message);
                break;
            case OperationCanceledException when shutdown.IsCancellationRequested:
                await TrySendErrorAsync(SqlState.AdminShutdown, "terminating connection due to administrator command");
                break;
            case IOException or SocketException or ObjectDisposedException or AuthenticationException or OperationCanceledException
                or ClientGoneException:
                LogClientGone(e);
                break;
            default:
                LogUnexpected(e);
                await TrySendErrorAsync(SqlState.InternalError, $"internal error in Poold (session {Id}); the Poold log has the details");
                break;
        }
    }

    private async Task TrySendErrorAsync(string sqlState, string message, string? detail = null)
    {
        _out.Clear();
        _out.Error("FATAL", sqlState, message, detail);
        await TrySendAsync(_out.Written);
        _sentFatal = true;
    }

    /// <summary>A FATAL went to the client: the connection is closed gently so the client can read it (see <see cref="CloseClientAsync"/>).</summary>
    private bool _sentFatal;

    /// <summary>After a FATAL, what the client still sends is read and dropped for at most this long (and this much) before the close.</summary>
    private static readonly TimeSpan LingerAfterFatal = TimeSpan.FromSeconds(2);

    private const int MaxLingerBytes = 64 << 20;

    private async Task TrySendAsync(ReadOnlyMemory<byte> data)
    {
        if (_output.MidFrame)
        {
            // Part of a backend frame already went out: an error now would be read as the rest of it.
            return;
        }

        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _client.WriteAsync(data, cts.Token);
            await _client.FlushAsync(cts.Token);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException
                                      or InvalidOperationException or NotSupportedException)
        {
            // The client is gone; nothing to tell it.
        }
    }

    private async Task CloseClientAsync()
    {
        if (_sentFatal && !_output.MidFrame)
        {
            await LingerAsync();
        }

        try
        {
            await _client.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // Already closed by the peer.
        }
        finally
        {
            _socket.Dispose();
        }
    }

    /// <summary>
    /// Closing a socket with unread input sends a reset, which can destroy the FATAL just sent before the client reads
    /// it (a client still writing a message over max_packet_size would see only "broken pipe"). So: no more writes,
    /// then the client's input is read and dropped until it closes, within a short deadline.
    /// </summary>
    private async Task LingerAsync()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
            using var deadline = new CancellationTokenSource(LingerAfterFatal);
            var sink = new byte[16 * 1024];
            var total = 0;
            int n;
            while (total < MaxLingerBytes && (n = await _client.ReadAsync(sink, deadline.Token)) > 0)
            {
                total += n;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException
                                      or InvalidOperationException or NotSupportedException)
        {
            // The client is gone or slow: close now.
        }
    }

    /// <summary>Forwards a client's CancelRequest to the backends running this session's statement (<see cref="BackendSide.ForwardCancelAsync"/>).</summary>
    public Task ForwardCancelAsync(CancellationToken cancellationToken) => _backendSide.ForwardCancelAsync(cancellationToken);

    Serilog.ILogger? ISessionClient.At(Serilog.Events.LogEventLevel level) => At(level);

    ValueTask<Auth.StoredCredential?> ISessionClient.CredentialForBackendAsync(BackendAuthMethod method, CancellationToken cancellationToken) =>
        CredentialForBackendAsync(method, cancellationToken);

    CredentialTag? ISessionClient.MayUse() => MayUse();

    void ISessionClient.WakeClientPump() => _clientReader?.CancelPendingRead();

    Io.SocketStream? ISessionClient.EventStream => _eventStream;
}
