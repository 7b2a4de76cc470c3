using System.Runtime.CompilerServices;
using Poold.Backends;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// How long the session holds its server connections (<c>pool_mode</c>). In session mode (pgpool-II's model) they are
/// bound at login and released when the session ends. In transaction mode they are bound when a batch needs a node
/// and released, all at once, as soon as the session is quiet: every reply read, ReadyForQuery <c>I</c> on every
/// connection, nothing buffered. The next transaction binds whatever connection the pool has (waiting first come,
/// first served when none is free); what the client set follows it there: its SET commands (<see cref="StateText"/>)
/// and its named prepared statements (parsed on demand by <see cref="CatchUpAsync"/>). What cannot follow (SQL PREPARE,
/// LISTEN, temporary tables, session advisory locks, WITH HOLD cursors, SET ROLE / SESSION AUTHORIZATION, LOAD)
/// pins the session to the connections it holds (<see cref="SessionPins"/>).
/// </summary>
internal sealed partial class BackendSide
{
    /// <summary>pool_mode (or pool_mode_database_list) for this session's database is transaction.</summary>
    private bool _transactionMode;

    /// <summary>Why a transaction-mode session keeps its connections to its end; null while it does not.</summary>
    private string? _pinnedBy;

    /// <summary>The node writes go to: fixed for a session-mode session, followed between transactions in transaction mode.</summary>
    private int _primaryNodeId = -1;

    /// <summary>Reply entries queued and not yet finished by the reply pump (every frame of them read).</summary>
    private int _repliesInFlight;

    /// <summary>Whether the session is in transaction mode (SHOW POOL_PROCESSES, the metrics).</summary>
    public bool TransactionMode => _transactionMode;

    /// <summary>Waiting for a server connection (transaction mode, all of the pool's busy).</summary>
    public bool WaitingForServer => Volatile.Read(ref _waitingForServer);

    private bool _waitingForServer;

    /// <summary>Why the session is pinned to its connections (null when it is not, or in session mode).</summary>
    public string? PinnedBy => Volatile.Read(ref _pinnedBy);

    /// <summary>Startup parameters that are the pool's key in transaction mode; the others are replayed as SET commands.</summary>
    private static bool IsKeyParameter(string name) => name is "user" or "database" or "options" or "replication";

    /// <summary>The startup parameters a server connection is opened with: all of the client's in session mode, only the key in transaction mode.</summary>
    private IReadOnlyList<KeyValuePair<string, string>> BackendStartupParameters =>
        _transactionMode ? [.. _startup!.Parameters.Where(p => IsKeyParameter(p.Key))] : _startup!.Parameters;

    /// <summary>The pool a connection to <paramref name="nodeId"/> comes from (transaction-mode pools have keys of their own).</summary>
    public PoolKey BackendKey(int nodeId)
    {
        if (nodeId < _backendKeys.Length && _backendKeys[nodeId] is { } known)
        {
            return known;
        }

        var key = PoolKey.Create(nodeId, BackendStartupParameters);
        key = _transactionMode ? key with { Options = SharedPoolMark + key.Options } : key;
        if (nodeId >= _backendKeys.Length)
        {
            Array.Resize(ref _backendKeys, nodeId + 1);
        }

        _backendKeys[nodeId] = key;
        return key;
    }

    /// <summary>The pool keys of this session by node (its startup parameters do not change): made once, not per transaction.</summary>
    private PoolKey?[] _backendKeys = [];

    private const string SharedPoolMark = "\u0003transaction";

    /// <summary>Transaction mode: the client's startup parameters other than the key are replayed as SET commands (<see cref="SessionStateHistory.Seed"/>).</summary>
    private void SeedStartupState() => _state.Seed(_startup!.Parameters.Where(p => !IsKeyParameter(p.Key)));

    private string StateText() => _state.StateText;

    /// <summary>
    /// Transaction mode, a connection just bound: the query that gives it this client's state (RESET ALL when another
    /// client's state is on it, then this client's SET commands), or null when it already has exactly that state.
    /// </summary>
    private string? StateQueryFor(BackendConnection connection)
    {
        var state = StateText();
        if (connection.AppliedState == state)
        {
            return null;
        }

        var query = connection.AppliedState.Length > 0 ? "RESET ALL;" + state : state;
        connection.AppliedState = state;
        return query.Length > 0 ? query : null;
    }

    /// <summary>
    /// A server connection to <paramref name="node"/> for this session: in session mode a cached one or a new one (the
    /// pool closes its least recently used idle connection past num_init_children × max_pool); in transaction mode one
    /// from the node's shared pool, waiting when default_pool_size are busy.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<BackendConnection> ConnectAsync(Backends.NodeState node, CancellationToken ct, bool wait = true)
    {
        var key = BackendKey(node.Id);
        var pool = _services.Pool;
        if (_transactionMode)
        {
            var waitStart = _services.Time.GetTimestamp();
            var granted = TakeGrant(key);
            BackendConnection? shared;
            try
            {
                var limits = SharedLimits.From(_services.Settings);
                Volatile.Write(ref _waitingForServer, !granted.Present);
                shared = await pool.AcquireAsync(key, wait ? limits : limits with { Wait = TimeSpan.Zero }, _client.MayUse(), ct, granted);
            }
            catch (PoolWaitTimeoutException) when (!wait || (_primaryNodeId >= 0 && _backends.Count == 0 && VisibleStatus() == TransactionStatus.Idle))
            {
                // Between transactions: the batch that waited gets the error and the session goes on (see AnswerWaitTimeout).
                // A transaction that holds nothing because its standby went back (it ran only BEGIN there) is not
                // between transactions: its client would be told 'I' while its BEGIN stands, so that one ends as below.
                throw;
            }
            catch (PoolWaitTimeoutException e)
            {
                throw new ClientFatalException(SqlState.TooManyConnections, "query_wait_timeout: " + e.Message,
                    "Every server connection of this pool stayed busy; raise default_pool_size or query_wait_timeout, or make transactions shorter.");
            }
            finally
            {
                Volatile.Write(ref _waitingForServer, false);
                if (!granted.Present)
                {
                    _services.Metrics?.PoolWaited(_services.Time.GetElapsedTime(waitStart));
                }
            }

            if (shared is not null)
            {
                LogReused(shared);
                return OnClientThread(shared);
            }

            try
            {
                var opened = await BackendConnection.OpenAsync(node.Settings, key, BackendStartupParameters, _client.CredentialForBackendAsync, _services.Tls,
                    _services.Settings.Get(Params.ConnectTimeout, node.Id), _services.Time, ct);
                ConnectionPool.Opened(opened);
                LogConnected(opened);
                return OnClientThread(opened);
            }
            catch
            {
                pool.OpenFailed(key);
                throw;
            }
        }

        if (await TakeCachedAsync(key, ct) is { } cached)
        {
            LogReused(cached);
            return OnClientThread(cached);
        }

        if (pool.ReserveSlot(node.Id) is { } evicted)
        {
            await evicted.DisposeAsync();
        }

        try
        {
            var connection = await BackendConnection.OpenAsync(node.Settings, key, BackendStartupParameters, _client.CredentialForBackendAsync, _services.Tls,
                _services.Settings.Get(Params.ConnectTimeout, node.Id), _services.Time, ct);
            LogConnected(connection);
            return OnClientThread(connection);
        }
        catch
        {
            pool.Forget(node.Id);
            throw;
        }
    }

    /// <summary>
    /// Session mode: a connection bound to this session moves to the client's event thread, so a statement's request and
    /// its reply are handled by one thread (see <see cref="Io.SocketStream.JoinEventThreadOf"/>). Transaction mode moves
    /// it only once a transaction block sends a second request on it (<see cref="Enqueue"/>): a move costs two
    /// epoll_ctl calls and an event on the new thread, more than a one-statement transaction gains (bench/compare-tx.sh
    /// with the move at every binding: pgbench -S at 1,000 clients cost 68–69 µs of Poold's CPU per transaction
    /// against 58–65 in the runs before, while TPC-B's seven statements gained).
    /// </summary>
    private BackendConnection OnClientThread(BackendConnection connection)
    {
        if (!_transactionMode)
        {
            connection.JoinEventThreadOf(_client.EventStream);
        }

        return connection;
    }

    /// <summary>
    /// Transaction mode, a batch about to bind the session's first server connection of a transaction: the pool key it
    /// will bind (the node <see cref="OpenLinkAsync"/> would choose for <paramref name="nodeId"/>), or null when the
    /// session holds a connection already (it never waits then) or the choice is not that simple. The dispatch then waits
    /// for that pool itself (<see cref="BeginSharedWait"/>), so that at the handover only its state machine resumes, not
    /// the chain of calls under it (OpenLink, BindPrimary, Connect, Acquire), which then runs through without waiting.
    /// </summary>
    private PoolKey? SharedBindKey(int nodeId)
    {
        if (!_transactionMode || _backends.Count > 0 || _grantedKey is not null || _primaryNodeId < 0)
        {
            return null;
        }

        var nodes = _services.Nodes.Current.Nodes;
        if (_primaryNodeId >= nodes.Length)
        {
            return null;
        }

        var id = nodeId != _primaryNodeId && nodeId >= 0 && nodeId < nodes.Length
                 && nodes[nodeId].Status is NodeStatus.Up or NodeStatus.Waiting
            ? nodeId
            : _primaryNodeId;
        return BackendKey(id);
    }

    /// <summary>What the pool has for <paramref name="key"/> now, or a place in its line (see <see cref="ConnectionPool.BeginWait"/>).</summary>
    private ConnectionPool.PendingWait BeginSharedWait(PoolKey key, CancellationToken ct)
    {
        var wait = _services.Pool.BeginWait(key, SharedLimits.From(_services.Settings), _client.MayUse(), ct);
        _sharedWaitStart = _services.Time.GetTimestamp();
        Volatile.Write(ref _waitingForServer, true);
        return wait;
    }

    /// <summary>
    /// What the wait begun by <see cref="BeginSharedWait"/> gave (a connection, or null for a slot reserved to open one):
    /// kept for <see cref="ConnectAsync"/>. Only a wait that ended with something is a grant: one that timed out or was
    /// cancelled holds nothing to give back.
    /// </summary>
    private void Granted(PoolKey key, BackendConnection? connection)
    {
        _grantedKey = key;
        _grantedConnection = connection;
        EndSharedWait();
    }

    private void EndSharedWait()
    {
        if (_sharedWaitStart != 0)
        {
            Volatile.Write(ref _waitingForServer, false);
            _services.Metrics?.PoolWaited(_services.Time.GetElapsedTime(_sharedWaitStart));
            _sharedWaitStart = 0;
        }
    }

    /// <summary>The grant for <paramref name="key"/>, taken (ConnectAsync checks and uses it); none for another key.</summary>
    private ConnectionPool.Granted TakeGrant(PoolKey key)
    {
        if (_grantedKey is null || !_grantedKey.Equals(key))
        {
            return default;
        }

        var granted = new ConnectionPool.Granted(true, _grantedConnection);
        _grantedKey = null;
        _grantedConnection = null;
        return granted;
    }

    /// <summary>
    /// After the dispatch bound its connection (or failed to): a grant it did not use (the chain chose another node, or
    /// it failed first) goes back to the pool — the connection to the next client in line, a reserved slot freed.
    /// </summary>
    private void ReturnUnusedGrant()
    {
        EndSharedWait();
        if (_grantedKey is not { } key)
        {
            return;
        }

        var connection = _grantedConnection;
        _grantedKey = null;
        _grantedConnection = null;
        if (connection is null)
        {
            _services.Pool.OpenFailed(key);
        }
        else if (!_services.Pool.Return(connection))
        {
            _services.Pool.Discard(connection);
        }
    }

    /// <summary>A grant from <see cref="BeginSharedWait"/> not yet used: its pool key (null when none), and the connection (null: a reserved slot).</summary>
    private PoolKey? _grantedKey;

    private BackendConnection? _grantedConnection;

    /// <summary>When the wait begun by <see cref="BeginSharedWait"/> started (0 when none is under way).</summary>
    private long _sharedWaitStart;

    /// <summary>
    /// Transaction mode, at login: the connection the client logged in through gets the client's startup state now, so
    /// the ParameterStatus values the client is sent are its own (application_name, client_encoding …).
    /// </summary>
    private async Task ApplyStartupStateAsync(BackendConnection connection, CancellationToken ct)
    {
        if (StateQueryFor(connection) is { } query && !await connection.ResetAsync([query], ct))
        {
            throw new ClientFatalException(SqlState.ConnectionFailure,
                $"backend node {connection.NodeId} refused the client's startup parameters ({string.Join(", ", _startup!.Parameters.Where(p => !IsKeyParameter(p.Key)).Select(p => p.Key))})");
        }
    }

    /// <summary>The session's link to the primary, bound now when the session holds none (transaction mode).</summary>
    private ValueTask<NodeLink> PrimaryLinkAsync(CancellationToken ct) =>
        _backends.Primary is { } primary ? ValueTask.FromResult(primary) : BindPrimaryAsync(ct);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<NodeLink> BindPrimaryAsync(CancellationToken ct)
    {
        var nodes = _services.Nodes.Current;
        if (_primaryNodeId < 0 || _primaryNodeId >= nodes.Nodes.Length)
        {
            throw new ClientFatalException(SqlState.CannotConnectNow, "no primary node is available: Poold is looking for the new one (failover)");
        }

        await GiveBackUnusedStandbyAsync(ct);
        var connection = await ConnectAsync(nodes.Nodes[_primaryNodeId], ct);
        var link = new NodeLink(connection);
        PrepareSharedLink(link);
        link.WatchNode(_services.Nodes.DownToken(connection.NodeId));
        _backends.Add(link, primary: true);
        return link;
    }

    /// <summary>
    /// Transaction mode, before the session takes the primary for a transaction: a standby the transaction began on but
    /// ran nothing on yet goes back to its pool first, its empty transaction rolled back (the transaction goes on on the
    /// primary, which gets the client's BEGIN as any node joining a transaction does). A transaction takes its snapshot
    /// at its first statement, not at BEGIN, so the client cannot tell. Without this, every session whose transaction
    /// began where it reads would hold a standby connection while it waits in the primary's line, and the standby's
    /// readers would wait behind the primary's writers. Nothing to do when pinned, with a batch half sent, or with no
    /// standby that ran nothing but BEGIN: the usual case, with no state machine.
    /// </summary>
    private Task GiveBackUnusedStandbyAsync(CancellationToken ct) =>
        !_transactionMode || _pinnedBy is not null || _lockedLink is not null || UnusedStandby() is null
            ? Task.CompletedTask
            : GiveBackUnusedStandbyNowAsync(ct);

    private async Task GiveBackUnusedStandbyNowAsync(CancellationToken ct)
    {
        if (Volatile.Read(ref _repliesInFlight) != 0)
        {
            // The reply pump may not have let go of that connection yet: the client can answer the BEGIN's
            // ReadyForQuery before the pump is done with it. Its replies are due: wait for them.
            await WaitForRepliesAsync(ct);
        }

        // A cancel forwarded since the last release may still be on its way to that connection: it stays then.
        if (_lockedLink is not null || UnusedStandby() is not { } unused || !_cancelGate.TryPause())
        {
            return;
        }

        try
        {
            _backends.Remove(unused.Connection.NodeId);
        }
        finally
        {
            _cancelGate.Resume();
        }

        unused.StopWatching();
        _registry.ForgetPortals(unused);
        if (_copyLink == unused)
        {
            _copyLink = null;
        }

        LogStandbyGivenBack(unused.Connection.NodeId);
        if (!await RoundTripAsync(unused.Connection, "ROLLBACK", ct))
        {
            unused.Connection.Break();
        }

        await ReturnSharedAsync(unused, CancelsSince.None, ct);
    }

    /// <summary>A standby this transaction opened and ran nothing on but BEGIN (see <see cref="GiveBackUnusedStandbyAsync"/>).</summary>
    private NodeLink? UnusedStandby()
    {
        foreach (var link in _backends.Links)
        {
            if (link.OnlyBegun && link != _backends.Primary && !link.Dead && !link.NodeDown && !link.Connection.IsBroken
                && link.Connection.TransactionStatus == TransactionStatus.InTransaction)
            {
                return link;
            }
        }

        return null;
    }

    /// <summary>
    /// Runs <paramref name="query"/> on a connection nothing else reads, within <see cref="DrainTimeout"/>: true when the
    /// server answered without an error and outside a transaction, false on anything else (the connection is then unfit).
    /// </summary>
    private static async Task<bool> RoundTripAsync(BackendConnection connection, string query, CancellationToken ct)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(DrainTimeout);
            return await connection.ProbeAsync(query, timeout.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException or PgProtocolException
                                      or BackendException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Transaction mode, a connection just bound: which of the client's named statements it has (the same Parse), and
    /// whether its statements can be trusted at all.
    /// </summary>
    private void PrepareSharedLink(NodeLink link)
    {
        if (!_transactionMode)
        {
            return;
        }

        _registry.Adopt(link);
        link.AppliedHistory = link.Connection.AppliedState == StateText() && !link.DropAllStatements ? _state.Version : -1;
    }

    /// <summary>
    /// Transaction mode: once the session is quiet (no reply outstanding, no transaction open anywhere, no batch half
    /// sent) and not pinned, its connections go back to their pools. A cancel the client sent for its last statement is
    /// delivered first and the connection checked with a round trip, so it can never reach the next client's statement.
    /// Usually the reply pump has done this already, the moment the last reply was read (<see cref="ReleaseFromReplyPump"/>);
    /// this is the client pump's way, for what that one leaves: a cancel to wait for, a connection to close.
    /// </summary>
    public Task ReleaseBindingAsync(CancellationToken ct) => Releasable() ? ReleaseBindingNowAsync(ct) : Task.CompletedTask;

    private async Task ReleaseBindingNowAsync(CancellationToken ct)
    {
        var links = TakeBinding();
        var cancels = await _cancelGate.QuiesceAsync(DrainTimeout);
        foreach (var link in links)
        {
            link.StopWatching();
            await ReturnSharedAsync(link, cancels, ct);
        }

        // The list is the set's, reused: it must not keep the links (an idle session holds none).
        links.Clear();
        Redraw();
    }

    private bool Releasable() => _transactionMode && _pinnedBy is null && _backends.Count > 0 && IsQuiet();

    /// <summary>Empties the session's set of connections (a cancel that comes now finds none) and forgets what lived on them.</summary>
    private List<NodeLink> TakeBinding()
    {
        var links = _backends.TakeAll();
        _copyLink = null;
        _failedLink = null;
        _registry.ForgetPortals();
        Volatile.Write(ref _backend, null);
        return links;
    }

    /// <summary>The next transaction draws its read node again: a session holds no node between transactions.</summary>
    private void Redraw()
    {
        if (_balancer is not null && !_services.Routing.StatementLevel)
        {
            (_balanceNodeId, _balanceWhy) = _balancer.Choose(_services.Nodes.Current, _database!, _startup!["application_name"], _random);
        }
    }

    /// <summary>
    /// Who may touch the session's connections and batch state: the client pump, which owns them, or — while the client
    /// pump waits for the client (<see cref="Park"/>) — the reply pump, which then gives the connections back itself when
    /// the last reply is read, with no wake-up of the client pump (<see cref="ReleaseFromReplyPump"/>).
    /// </summary>
    private int _bindingOwner;

    private const int OwnedByClientPump = 0;
    private const int Parked = 1;
    private const int OwnedByReplyPump = 2;

    /// <summary>
    /// The client pump is about to wait for the client: the reply pump may release the connections meanwhile. Returns
    /// false when the session went quiet just before (the reply pump saw the client pump busy): release first.
    /// </summary>
    public bool Park()
    {
        Interlocked.Exchange(ref _bindingOwner, Parked);
        if (Volatile.Read(ref _repliesInFlight) != 0 || Volatile.Read(ref _outstanding) != 0)
        {
            // The reply pump sees the park when the last of them is read (or Poold's own answer written).
            return true;
        }

        Unpark();
        return !Releasable();
    }

    /// <summary>The client pump takes its state back, waiting out a release the reply pump is in the middle of (a few microseconds).</summary>
    public void Unpark()
    {
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref _bindingOwner, OwnedByClientPump, Parked) == OwnedByReplyPump)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>
    /// The reply pump read the last reply outstanding. If the client pump is waiting for the client, the reply pump gives
    /// the connections back now, synchronously, when nothing stands in the way (every connection fit for reuse, no cancel
    /// forwarded or in flight); a waiting client gets its connection once this session's state is in order. Otherwise
    /// it wakes the client pump, which releases them its own way (<see cref="ReleaseBindingAsync"/>).
    /// </summary>
    private void ReleaseFromReplyPump()
    {
        if (Interlocked.CompareExchange(ref _bindingOwner, OwnedByReplyPump, Parked) != Parked)
        {
            // The client pump is busy: it releases at its next turn.
            return;
        }

        var wake = false;
        PoolHandoff first = default;
        List<PoolHandoff>? more = null;
        try
        {
            if (!Releasable())
            {
                return;
            }

            if (!FitForReuse() || !_cancelGate.TryPause())
            {
                wake = true;
                return;
            }

            var links = TakeBinding();
            try
            {
                foreach (var link in links)
                {
                    link.StopWatching();
                    if (link.SawError && link.ParsedSinceBound)
                    {
                        link.Connection.PreparedUncertain = true;
                    }

                    if (!_services.Pool.Return(link.Connection, out var handoff))
                    {
                        // The pool is closing: nothing more is handed out.
                        _services.Pool.Discard(link.Connection);
                    }
                    else if (handoff.IsEmpty)
                    {
                        // Nobody waited: the connection is idle in its pool.
                    }
                    else if (first.IsEmpty)
                    {
                        first = handoff;
                    }
                    else
                    {
                        (more ??= []).Add(handoff);
                    }
                }
            }
            finally
            {
                links.Clear();
                _cancelGate.Resume();
            }

            Redraw();
        }
        finally
        {
            Volatile.Write(ref _bindingOwner, Parked);
            if (wake)
            {
                _client.WakeClientPump();
            }
        }

        first.Complete();
        if (more is not null)
        {
            foreach (var handoff in more)
            {
                handoff.Complete();
            }
        }
    }

    /// <summary>Every connection of the session can go back to its pool as it is (<see cref="ReturnSharedAsync"/> handles the others).</summary>
    private bool FitForReuse()
    {
        var nodes = _services.Nodes.Current.Nodes.Length;
        foreach (var link in _backends.Links)
        {
            if (link.Dead || link.NodeDown || link.Connection.IsBroken || link.Connection.Key.NodeId >= nodes)
            {
                return false;
            }
        }

        return true;
    }

    private bool IsQuiet()
    {
        if (Volatile.Read(ref _repliesInFlight) != 0 || Volatile.Read(ref _outstanding) != 0 || _lockedLink is not null || _batch.WrittenCount > 0
            || _discardUntilSync || _clientStatus != TransactionStatus.Idle || InTransactionNow())
        {
            return false;
        }

        foreach (var link in _backends.Links)
        {
            if (link.TransactionOpen || link.Connection.TransactionStatus != TransactionStatus.Idle || Volatile.Read(ref link.Pending) != 0)
            {
                return false;
            }
        }

        return true;
    }

    private async Task ReturnSharedAsync(NodeLink link, CancelsSince cancels, CancellationToken ct)
    {
        var connection = link.Connection;
        var pool = _services.Pool;
        var keep = !link.Dead && !link.NodeDown && !connection.IsBroken && connection.Key.NodeId < _services.Nodes.Current.Nodes.Length
                   && cancels != CancelsSince.Undelivered;
        if (keep && link.SawError && link.ParsedSinceBound)
        {
            connection.PreparedUncertain = true;
        }

        if (keep && cancels == CancelsSince.Delivered)
        {
            keep = await RoundTripAsync(connection, "", ct);
        }

        if (keep && pool.Return(connection))
        {
            return;
        }

        connection.Break();
        pool.Forget(connection);
        await connection.DisposeAsync();
    }

    /// <summary>Transaction mode: a statement whose effect outlives the transaction pins the session to its connections.</summary>
    private void PinIfNeeded(Classification c, string? text)
    {
        if (!_transactionMode || _pinnedBy is not null || SessionPins.Reason(c, text) is not { } reason)
        {
            return;
        }

        Volatile.Write(ref _pinnedBy, reason);
        LogPinned(reason);
        _services.Metrics?.SessionPinned();
    }

    /// <summary>
    /// Transaction mode, before a connection just bound runs the client's batch: its uncertain statements dropped, then
    /// another client's state reset and this client's SET commands run, each as a query of its own whose answer the
    /// client does not see (a SET that fails does not stop the others).
    /// </summary>
    private async Task ApplySharedStateAsync(NodeLink link, CancellationToken ct)
    {
        var connection = link.Connection;
        if (link.DropAllStatements)
        {
            Enqueue(link, relay: false, 0);
            await connection.WriteAsync(DeallocateAllFrame, ct);
            connection.Prepared.Clear();
            connection.PreparedUncertain = false;
            link.Statements.Clear();
            link.DropAllStatements = false;
        }

        var state = StateText();
        if (connection.AppliedState == state)
        {
            return;
        }

        if (connection.AppliedState.Length > 0)
        {
            Enqueue(link, relay: false, 0);
            await connection.WriteAsync(ResetAllFrame, ct);
        }

        foreach (var entry in _state.Entries)
        {
            if (SessionStateHistory.IsState(entry))
            {
                Enqueue(link, relay: false, 0);
                await connection.WriteAsync(entry.Frame, ct);
            }
        }

        connection.AppliedState = state;
    }

    private static readonly byte[] ResetAllFrame = QueryFrame("RESET ALL");

    private static readonly byte[] DeallocateAllFrame = QueryFrame("DEALLOCATE ALL");

    /// <summary>
    /// A statement that changed session state ran on <paramref name="link"/> itself: the link is up to date, and in
    /// transaction mode so is what its connection carries (after a reset, the startup state is put back before the next batch).
    /// </summary>
    private void AppliedHere(NodeLink link, Classification c)
    {
        if (!_transactionMode)
        {
            link.AppliedHistory = _state.Version;
        }
        else if (c.ResetsSession)
        {
            link.Connection.AppliedState = ResetMark;
            link.AppliedHistory = -1;
        }
        else
        {
            if (link.Connection.AppliedState != ResetMark)
            {
                // A connection marked for a reset (something ran on it that no SET describes, or a request failed)
                // stays marked until it is reset: the SET adds to an unknown state.
                link.Connection.AppliedState = StateText();
            }

            link.AppliedHistory = _state.Version;
        }
    }

    /// <summary>A connection whose state is unknown after a RESET ALL or DISCARD ALL: it is reset and given the client's state again.</summary>
    private const string ResetMark = "\u0001reset";

    /// <summary>
    /// A batch found no free server connection within query_wait_timeout, before anything of it was sent: the client gets
    /// 53300 for it (and ReadyForQuery at its Sync), holds nothing, and may try again.
    /// </summary>
    private void AnswerWaitTimeout(PoolWaitTimeoutException e, bool sync)
    {
        LogWaitTimeout(e.Message);
        AnswerBatchWithError(SqlState.TooManyConnections, "query_wait_timeout: " + e.Message,
            "Every server connection of this pool stayed busy; raise default_pool_size or query_wait_timeout, or make transactions shorter.", sync);
    }

    /// <summary>
    /// Poold answers the client's batch with an error, the client's transaction then being <paramref name="status"/>
    /// (by default none): with its ReadyForQuery when the batch ends with a Sync, else the rest of the batch is skipped
    /// up to the Sync, as the server skips what follows an error.
    /// </summary>
    private void AnswerBatchWithError(string sqlState, string message, string hint, bool sync, TransactionStatus status = TransactionStatus.Idle)
    {
        var answer = new MessageBuffer(512);
        answer.Error("ERROR", sqlState, message, hint);
        if (sync)
        {
            answer.ReadyForQuery(status);
        }
        else
        {
            _discardUntilSync = true;
            _discardedStatus = status;
        }

        EnqueueSynthetic(answer.Written.ToArray());
    }
}
