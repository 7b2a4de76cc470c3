using Poold.Auth;
using Poold.Backends;
using Poold.Pooling;
using Poold.Protocol;
using Serilog.Events;

namespace Poold.Sessions;

/// <summary>
/// The client side of a session as its backend side sees it: who the client is for the log, the credential a new server
/// connection logs in with, and Poold's own SQL commands (SHOW POOL_NODES …), which the client side answers.
/// </summary>
internal interface ISessionClient
{
    /// <summary>The session's logger when <paramref name="level"/> is written at all, else null.</summary>
    public Serilog.ILogger? At(LogEventLevel level);

    /// <summary>What a new server connection logs in with for this client (see <see cref="BackendConnection.OpenAsync"/>).</summary>
    public ValueTask<StoredCredential?> CredentialForBackendAsync(BackendAuthMethod method, CancellationToken cancellationToken);

    /// <summary>Which pooled connections this client may take (<see cref="BackendConnection.WasOpenedWith"/>).</summary>
    public CredentialTag? MayUse();

    /// <summary>A simple Query that is a pool command: answered (in its place among the replies) and true; else false.</summary>
    public bool TryAnswerPoolQuery(ReadOnlySpan<byte> query);

    /// <summary>An extended-protocol batch made only of pool commands: answered and true; else false.</summary>
    public bool TryAnswerPoolBatch(List<BatchMessage> messages, bool sync);

    /// <summary>Wakes the client pump's pending read (transaction mode: connections the reply pump could not release itself).</summary>
    public void WakeClientPump();

    /// <summary>The client's socket on Poold's event engine (null on .NET's): server connections bound to the session join its event thread.</summary>
    public Io.SocketStream? EventStream { get; }
}

/// <summary>
/// The backend side of a session (design.md, "Two sides of a session"): the links to the nodes and what must be replayed
/// on them (<see cref="SessionStateHistory"/>, <see cref="StatementRegistry"/>), the router that picks a node for each
/// batch, the open transaction's participants, the binding to server connections, and the reply pump that streams each
/// batch's replies back to the client in order. The client side (<see cref="ClientSession"/>) reads the client's
/// messages and hands each one here (<see cref="OnClientMessageAsync"/>); it never touches a server connection itself.
/// <para>
/// Owned by the session's client pump, which calls every method that changes it, except what the reply pump does in
/// <see cref="PumpRepliesAsync"/> (and, while the client pump waits for the client, the release of the binding: see
/// <see cref="Park"/>). Other threads read only published snapshots: <see cref="Backends"/>, <see cref="StatusText"/>,
/// the cancel targets.
/// </para>
/// </summary>
internal sealed partial class BackendSide
{
    private readonly SessionServices _services;
    private readonly ISessionClient _client;
    private readonly ClientOutput _output;
    private readonly CancelGate _cancelGate = new();

    /// <summary>The client's startup packet and database, from <see cref="Begin"/> on.</summary>
    private StartupPacket? _startup;

    private string? _database;

    /// <summary>
    /// The server connection the session logged in through, until routing takes it as the primary's link; a replication
    /// session's only connection. Read by a CancelRequest's thread, hence published.
    /// </summary>
    private BackendConnection? _backend;

    public BackendSide(SessionServices services, ISessionClient client, ClientOutput output)
    {
        _services = services;
        _client = client;
        _output = output;
        _registry = new StatementRegistry(services.Time);
    }

    /// <summary>
    /// The client's startup packet is in and authenticated: the binding's span is known (<c>pool_mode</c>, by database).
    /// In transaction mode the startup parameters other than the pool's key are replayed as SET commands.
    /// </summary>
    public void Begin(StartupPacket startup, string database, bool transactionMode)
    {
        _startup = startup;
        _database = database;
        _transactionMode = transactionMode;
        if (transactionMode)
        {
            SeedStartupState();
        }
    }

    /// <summary>The connection the client logged in through (see <see cref="_backend"/>).</summary>
    public BackendConnection? LoginConnection
    {
        get => Volatile.Read(ref _backend);
        private set => Volatile.Write(ref _backend, value);
    }

    /// <summary>
    /// The client is authenticated: its login on the primary. In transaction mode, when a client with this startup state
    /// and credential has logged in to this pool before, the client is told what that one was told (the pool's welcome,
    /// returned) and binds a server connection only for its first transaction. Otherwise the session takes a server
    /// connection to the primary now (<see cref="LoginConnection"/>), which in transaction mode gets the client's
    /// startup state and is remembered as the pool's welcome; null is returned.
    /// </summary>
    public async Task<LoginWelcome?> LogInAsync(NodeSnapshot snapshot, NodeState primary, CancellationToken ct)
    {
        _loginSnapshot = snapshot;
        var pool = _services.Pool;
        if (_transactionMode && !NeedsFunctionLoad(snapshot)
            && pool.Welcomes.Find(BackendKey(primary.Id), StateText(), _client.MayUse(), snapshot.PrimaryGeneration) is { } welcome)
        {
            return welcome;
        }

        var backend = await ConnectAsync(primary, ct);
        LoginConnection = backend;
        if (_transactionMode)
        {
            await ApplyStartupStateAsync(backend, ct);
            pool.Welcomes.Remember(backend, StateText(), snapshot.PrimaryGeneration);
        }

        return null;
    }

    /// <summary>Routing is set up: from now on a node opened must not ask the client anything.</summary>
    public bool Running => _primaryNodeId >= 0;

    /// <summary>The session holds a link to the primary (a backend failure then is worth reporting to the node monitor).</summary>
    public bool HoldsPrimary => _backends.Primary is not null;

    /// <summary>Set once the server's own FATAL went to the client: the session ends without a second error from Poold.</summary>
    public bool ServerFatalRelayed => _serverFatalRelayed;

    /// <summary>The node the session writes to, for the error that ends a session whose reply side stopped.</summary>
    public int PrimaryNodeId => _primaryNodeId;

    /// <summary>Batches sent whose ReadyForQuery the client has not had yet: 0 when the session is idle.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    /// <summary>When the backend side last answered the client (for <c>client_idle_limit</c>).</summary>
    public long AnsweredAt => Volatile.Read(ref _answeredAt);

    /// <summary>Ends the reply queue: the reply pump reads what is owed and stops (a client that half-closed its side).</summary>
    public void CompleteReplies()
    {
        _replies.Complete();
        _backends.Primary?.Connection.Reader.CancelPendingRead();
    }

    /// <summary>Stops the reply pump: the queue ends and every pending read of a server connection returns.</summary>
    public void StopReplies()
    {
        _replies.Complete();
        foreach (var link in _backends.Links)
        {
            link.Connection.Reader.CancelPendingRead();
        }
    }

    /// <summary>
    /// An idle connection for <paramref name="key"/> that this client may have: one the backend let in without a
    /// password, or one opened with the credential a fresh login of this client would use. Others stay in the pool.
    /// </summary>
    private ValueTask<BackendConnection?> TakeCachedAsync(PoolKey key, CancellationToken cancellationToken) =>
        _services.Pool.TakeAsync(key, _client.MayUse(), cancellationToken);

    /// <summary>
    /// Forwards a client's CancelRequest to every backend this session is using, all at once, and returns when the
    /// servers have taken them. Reads only the session's published (immutable) list of backends; once the session is
    /// releasing its connections, the cancel finds nothing to do.
    /// </summary>
    public async Task ForwardCancelAsync(CancellationToken cancellationToken)
    {
        if (!_cancelGate.TryEnter(out var ticket))
        {
            return;
        }

        try
        {
            var targets = _backends.CancelTargets;
            if (targets.Length == 0 && Volatile.Read(ref _backend) is { } lone)
            {
                targets = [new CancelTarget(lone.Node, lone.ProcessId, lone.SecretKey)];
            }

            await Task.WhenAll(targets.Select(async target =>
            {
                try
                {
                    var timeout = _services.Settings.Get(Config.Params.ConnectTimeout, target.Node.Id);
                    await BackendConnection.SendCancelAsync(target.Node, target.ProcessId, target.SecretKey, timeout, cancellationToken);
                }
                catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException or OperationCanceledException)
                {
                    LogCancelFailed(target.Node.Id, e.Message);
                }
            }));
        }
        finally
        {
            _cancelGate.Exit(ticket);
        }
    }
}
