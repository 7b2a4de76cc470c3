using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Poold.Config;

namespace Poold.Pooling;

/// <summary>
/// Idle, authenticated backend connections, by <see cref="PoolKey"/> (pgpool-II's <c>connection_cache</c>). Owns
/// only idle connections; a checked-out connection belongs to its session. Bounds, per node: at most
/// <c>num_init_children × max_pool</c> connections open (the sizing pgpool-II documents for max_connections);
/// when a new one would pass that, the least recently used idle connection is closed. Idle connections older than
/// <c>connection_life_time</c> are closed by a timer. Not on the per-message path: one lock is enough.
/// </summary>
internal sealed class ConnectionPool : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<PoolKey, LinkedList<BackendConnection>> _idle = [];
    private readonly LinkedList<BackendConnection> _lru = [];
    private readonly Dictionary<BackendConnection, (LinkedListNode<BackendConnection> InKey, LinkedListNode<BackendConnection> InLru)> _nodes = [];
    private readonly Dictionary<int, int> _openPerNode = [];

    /// <summary>Transaction-mode pools: connections open per key (idle or in use) and the clients waiting, in arrival order.</summary>
    private readonly Dictionary<PoolKey, SharedPool> _shared = [];

    /// <summary>
    /// When each database's idle connections were last purged (<see cref="PurgeDatabaseAsync"/>): a connection that was
    /// out with a client since before then (its <see cref="BackendConnection.LastUsedAt"/> is older) is not kept when it
    /// comes back, or it would hold the database the DDL is waiting for. At most <see cref="MaxPurgeMarks"/> kept, the
    /// oldest dropped first.
    /// </summary>
    private readonly Dictionary<string, long> _databasePurges = new(StringComparer.Ordinal);

    private const int MaxPurgeMarks = 256;

    /// <summary>
    /// Waiters no wait uses now, for the next ones: a wait allocates nothing, and an idle client holds no waiter (there
    /// are about as many as clients that wait at once, up to <see cref="MaxFreeWaiters"/>).
    /// </summary>
    private readonly Stack<PoolWaiter> _freeWaiters = new();

    private const int MaxFreeWaiters = 4096;

    /// <summary>Ends the waits past query_wait_timeout (<see cref="ExpireWaiters"/>); made at the first wait.</summary>
    private ITimer? _waitTimer;

    /// <summary>When <see cref="_waitTimer"/> fires next (a timestamp; <see cref="long.MaxValue"/> when it is not armed).</summary>
    private long _waitTimerDue = long.MaxValue;
    private readonly TimeProvider _time;
    private readonly ITimer? _pruneTimer;
    private PoolLimits _limits;
    private bool _disposed;

    public ConnectionPool(PoolLimits limits, TimeProvider time)
    {
        _limits = limits;
        _time = time;
        if (limits.LifeTime > TimeSpan.Zero)
        {
            var period = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerSecond, limits.LifeTime.Ticks / 4));
            using (ExecutionContext.SuppressFlow())
            {
                _pruneTimer = time.CreateTimer(_ => _ = PruneAsync(), null, period, period);
            }
        }
    }

    /// <summary>What transaction-mode logins were told, so the next ones need no server connection (<see cref="LoginWelcome"/>).</summary>
    public LoginWelcomes Welcomes { get; } = new();

    /// <summary>Connections Poold has open to <paramref name="nodeId"/>, idle or in use.</summary>
    public int OpenCount(int nodeId)
    {
        lock (_lock)
        {
            return _openPerNode.GetValueOrDefault(nodeId);
        }
    }

    public int IdleCount
    {
        get
        {
            lock (_lock)
            {
                return _lru.Count;
            }
        }
    }

    /// <summary>
    /// Takes the most recently used idle connection for <paramref name="key"/> that a client with <paramref name="credential"/>
    /// may use (<see cref="BackendConnection.WasOpenedWith"/>), or null, unchecked; the others stay idle.
    /// </summary>
    private BackendConnection? TryTakeUnchecked(PoolKey key, CredentialTag? credential)
    {
        lock (_lock)
        {
            return TakeIdleLocked(key, credential);
        }
    }

    /// <summary>How the most recently used idle connection for <paramref name="key"/> logged in, without taking it; null when none is idle.</summary>
    public BackendAuthMethod? PeekAuthMethod(PoolKey key)
    {
        lock (_lock)
        {
            return _idle.TryGetValue(key, out var list) && list.Last is { } last ? last.Value.AuthMethod
                : _shared.TryGetValue(key, out var pool) ? pool.AuthMethod : null;
        }
    }

    /// <summary>
    /// Takes an idle connection for <paramref name="key"/> that a client with <paramref name="credential"/> may use and that is still good,
    /// or null. A connection the server closed or
    /// wrote to while it sat idle (a restart, <c>pg_terminate_backend</c>, <c>idle_session_timeout</c>) is closed and the
    /// next one tried; one idle for longer than <c>server_check_delay</c> first answers <c>server_check_query</c> (a round
    /// trip, as PgBouncer does), which catches a peer that vanished without a FIN (a NAT that dropped the flow).
    /// </summary>
    public async ValueTask<BackendConnection?> TakeAsync(PoolKey key, CredentialTag? credential, CancellationToken cancellationToken)
    {
        while (TryTakeUnchecked(key, credential) is { } connection)
        {
            if (await IsGoodAsync(connection, cancellationToken))
            {
                return connection;
            }

            Forget(connection);
            await connection.DisposeAsync();
        }

        return null;
    }

    private ValueTask<bool> IsGoodAsync(BackendConnection connection, CancellationToken cancellationToken)
    {
        if (connection.IsBroken || connection.IsClosedByPeer())
        {
            return ValueTask.FromResult(false);
        }

        var limits = _limits;
        return limits.CheckQuery.Length == 0 || _time.GetElapsedTime(connection.LastUsedAt) < limits.CheckDelay
            ? ValueTask.FromResult(true)
            : CheckAsync(connection, limits, cancellationToken);
    }

    /// <summary>server_check_query on a connection idle for longer than its delay (a round trip, within its timeout).</summary>
    private static async ValueTask<bool> CheckAsync(BackendConnection connection, PoolLimits limits, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(limits.CheckTimeout);
        try
        {
            return await connection.ProbeAsync(limits.CheckQuery, timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or BackendException or Protocol.PgProtocolException
                                      or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Closes every idle connection to <paramref name="nodeId"/>: the node went down, was detached, or changed role, so
    /// what sits in the cache was opened to a server that is gone or now plays another part.
    /// </summary>
    public async Task PurgeNodeAsync(int nodeId)
    {
        Welcomes.Clear();
        var purged = new List<BackendConnection>();
        lock (_lock)
        {
            for (var n = _lru.First; n is not null;)
            {
                var next = n.Next;
                if (n.Value.NodeId == nodeId)
                {
                    purged.Add(n.Value);
                    Unlink(n.Value);
                    DroppedLocked(n.Value);
                }

                n = next;
            }
        }

        foreach (var connection in purged)
        {
            await connection.DisposeAsync();
        }
    }

    /// <summary>
    /// Closes the idle connections of <paramref name="database"/> on every node, so <c>DROP DATABASE</c>, <c>ALTER
    /// DATABASE … RENAME</c> or <c>CREATE DATABASE … TEMPLATE</c> do not find Poold's cache in their way.
    /// </summary>
    public async Task<int> PurgeDatabaseAsync(string database)
    {
        Welcomes.Clear();
        var purged = new List<BackendConnection>();
        lock (_lock)
        {
            MarkPurgedLocked(database);
            for (var n = _lru.First; n is not null;)
            {
                var next = n.Next;
                if (n.Value.Key.Database == database)
                {
                    purged.Add(n.Value);
                    Unlink(n.Value);
                    DroppedLocked(n.Value);
                }

                n = next;
            }
        }

        // Terminate, then close: the server ends those backends at once, so the statement waiting for the database
        // to be free does not wait on Poold.
        await Task.WhenAll(purged.Select(c => c.TerminateAsync().AsTask()));
        return purged.Count;
    }

    private void MarkPurgedLocked(string database)
    {
        _databasePurges[database] = _time.GetTimestamp();
        if (_databasePurges.Count > MaxPurgeMarks)
        {
            _databasePurges.Remove(_databasePurges.MinBy(p => p.Value).Key);
        }
    }

    /// <summary>The connection was out with a client when its database was purged (see <see cref="_databasePurges"/>).</summary>
    private bool PurgedWhileOutLocked(BackendConnection connection) =>
        _databasePurges.TryGetValue(connection.Key.Database, out var purgedAt) && connection.LastUsedAt <= purgedAt;

    /// <summary>
    /// Accounts for a connection about to be opened to <paramref name="nodeId"/>; returns an idle connection that must be
    /// closed to stay within the cap, if any.
    /// </summary>
    public BackendConnection? ReserveSlot(int nodeId)
    {
        lock (_lock)
        {
            _openPerNode[nodeId] = _openPerNode.GetValueOrDefault(nodeId) + 1;
            if (_openPerNode[nodeId] <= _limits.MaxPerNode)
            {
                return null;
            }

            for (var n = _lru.First; n is not null; n = n.Next)
            {
                if (n.Value.NodeId == nodeId)
                {
                    var victim = n.Value;
                    Unlink(victim);
                    DroppedLocked(victim);
                    return victim;
                }
            }

            return null;
        }
    }

    /// <summary>A connection that was open (or reserved) is gone for good.</summary>
    public void Forget(int nodeId)
    {
        lock (_lock)
        {
            _openPerNode[nodeId] = Math.Max(0, _openPerNode.GetValueOrDefault(nodeId) - 1);
        }
    }

    /// <summary>A connection that was open is gone for good (closed by its session, or found dead at checkout).</summary>
    public void Forget(BackendConnection connection)
    {
        lock (_lock)
        {
            DroppedLocked(connection);
        }
    }

    /// <summary>
    /// A checked-out connection that is not coming back (the pool refused it, or it must not be reused): marked broken,
    /// forgotten, and closed in the background.
    /// </summary>
    public void Discard(BackendConnection connection)
    {
        connection.Break();
        Forget(connection);
        _ = connection.DisposeAsync().AsTask();
    }

    /// <summary>Accounts for a connection that is no longer open; a transaction-mode slot it held goes to the first waiter.</summary>
    private void DroppedLocked(BackendConnection connection)
    {
        _openPerNode[connection.NodeId] = Math.Max(0, _openPerNode.GetValueOrDefault(connection.NodeId) - 1);
        if (connection.Shared)
        {
            SlotFreedLocked(connection.Key);
        }
    }

    /// <summary>
    /// Offers a clean, reset connection for reuse. Returns false when it is not kept (caching off, pool disposed, or
    /// over the per-key bound); the caller then closes it and calls <see cref="Forget(int)"/>.
    /// </summary>
    public bool TryReturn(BackendConnection connection)
    {
        lock (_lock)
        {
            if (_disposed || !_limits.Cache || !IsCacheable(connection.Key.Database) || connection.IsBroken || PurgedWhileOutLocked(connection))
            {
                return false;
            }

            if (!_idle.TryGetValue(connection.Key, out var list))
            {
                _idle[connection.Key] = list = [];
            }

            if (list.Count >= _limits.MaxIdlePerKey)
            {
                return false;
            }

            connection.LastUsedAt = _time.GetTimestamp();
            _nodes[connection] = (list.AddLast(connection), _lru.AddLast(connection));
            return true;
        }
    }

    /// <summary>
    /// Transaction mode: a server connection for <paramref name="key"/>. Returns an idle one that a client with <paramref name="credential"/>
    /// may use and that is still good, or null when the caller is to open a new one (its slot is then reserved: it calls
    /// <see cref="Opened"/> with the connection or <see cref="OpenFailed"/>). With <c>default_pool_size</c> connections
    /// of the key (or <c>max_db_connections</c> of the node) open and none idle, the client waits, first come first
    /// served, for one to be returned or closed; after <paramref name="limits"/>' wait it gets <see cref="PoolWaitTimeoutException"/>.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<BackendConnection?> AcquireAsync(PoolKey key, SharedLimits limits, CredentialTag? credential,
        CancellationToken cancellationToken, Granted granted = default)
    {
        var deadline = Deadline(limits.Wait);
        while (true)
        {
            BackendConnection? handed;
            if (granted.Present)
            {
                // Found or waited for already, at the top of the caller's dispatch (BeginWait).
                handed = granted.Connection;
                granted = default;
            }
            else
            {
                var (decision, found, waiter) = Decide(key, limits, credential, deadline);
                switch (decision)
                {
                    case Decision.Open:
                        return null;
                    case Decision.ReplaceUnwanted:
                        await found!.DisposeAsync();
                        return null;
                    case Decision.Wait:
                        using (var wait = new PendingWait(this, waiter!, cancellationToken))
                        {
                            handed = await wait.Task;
                        }

                        break;
                    default:
                        handed = found;
                        break;
                }
            }

            if (handed is null)
            {
                return null;
            }

            if (handed.WasOpenedWith(credential) && await IsGoodAsync(handed, cancellationToken))
            {
                return handed;
            }

            if (!handed.IsBroken && !handed.IsClosedByPeer() && !handed.WasOpenedWith(credential))
            {
                // Good, but opened with another credential (pass-through): closed, and its slot is this client's to open one.
                await handed.DisposeAsync();
                return null;
            }

            Forget(handed);
            await handed.DisposeAsync();
        }
    }

    /// <summary>
    /// Transaction mode, before a batch goes down the caller's chain of calls: what <see cref="AcquireAsync"/> would find
    /// for <paramref name="key"/> now — an idle connection, a slot reserved to open one, or a place in line — to be
    /// awaited at the top of the caller's dispatch (at a handover one state machine resumes, not the whole chain) and
    /// then given to AcquireAsync as <see cref="Granted"/>, which checks the connection. Whatever it gives must reach
    /// AcquireAsync or go back (<see cref="Return(BackendConnection)"/>, <see cref="OpenFailed"/>).
    /// </summary>
    public PendingWait BeginWait(PoolKey key, SharedLimits limits, CredentialTag? credential, CancellationToken cancellationToken)
    {
        var deadline = Deadline(limits.Wait);
        var (decision, found, waiter) = Decide(key, limits, credential, deadline);
        switch (decision)
        {
            case Decision.Wait:
                return new PendingWait(this, waiter!, cancellationToken);
            case Decision.ReplaceUnwanted:
                _ = found!.DisposeAsync().AsTask();
                return PendingWait.Done(this, null);
            default:
                return PendingWait.Done(this, found);
        }
    }

    private enum Decision
    {
        /// <summary>An idle connection was taken.</summary>
        Take,

        /// <summary>A slot was reserved: the caller opens a connection.</summary>
        Open,

        /// <summary>An idle connection of another credential was taken to be closed: its slot is the caller's.</summary>
        ReplaceUnwanted,

        /// <summary>The caller is in line.</summary>
        Wait,
    }

    /// <summary>What a client asking for <paramref name="key"/> gets now: a connection, a slot, or a place in line (past the deadline: the timeout).</summary>
    private (Decision Decision, BackendConnection? Found, PoolWaiter? Waiter) Decide(PoolKey key, SharedLimits limits, CredentialTag? credential,
        long deadline)
    {
        List<BackendConnection>? excess = null;
        try
        {
            lock (_lock)
            {
                return DecideLocked(key, _limits.Shared ?? limits, credential, deadline, ref excess);
            }
        }
        finally
        {
            if (excess is not null)
            {
                foreach (var connection in excess)
                {
                    _ = connection.DisposeAsync().AsTask();
                }
            }
        }
    }

    private (Decision Decision, BackendConnection? Found, PoolWaiter? Waiter) DecideLocked(PoolKey key, SharedLimits limits, CredentialTag? credential,
        long deadline, ref List<BackendConnection>? excess)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var pool = SharedLocked(key, limits);
        while (pool.Open > limits.PoolSize && _idle.TryGetValue(key, out var idleOnes) && idleOnes.First is { } extra)
        {
            // default_pool_size was lowered by a reload: idle connections past it are closed, not handed out.
            Unlink(extra.Value);
            DroppedLocked(extra.Value);
            (excess ??= []).Add(extra.Value);
        }

        if (pool.Waiters.Count == 0)
        {
            if (TakeIdleLocked(key, credential) is { } idle)
            {
                return (Decision.Take, idle, null);
            }

            if (TryReserveSharedLocked(pool, key.NodeId))
            {
                return (Decision.Open, null, null);
            }

            if (_idle.TryGetValue(key, out var others) && others.First is { } other)
            {
                // Idle, but opened with another credential (pass-through): it gives its slot to this client.
                var unwanted = other.Value;
                Unlink(unwanted);
                return (Decision.ReplaceUnwanted, unwanted, null);
            }
        }

        if (_time.GetTimestamp() >= deadline)
        {
            throw new PoolWaitTimeoutException(key, limits.Wait);
        }

        var waiter = _freeWaiters.Count > 0 ? _freeWaiters.Pop() : new PoolWaiter();
        EnqueueLocked(pool, waiter, key, limits.Wait, deadline);
        return (Decision.Wait, null, waiter);
    }

    /// <summary>A waiter back from its wait (out of every line, its result taken): the next wait may use it.</summary>
    private void Recycle(PoolWaiter waiter)
    {
        lock (_lock)
        {
            if (_freeWaiters.Count < MaxFreeWaiters)
            {
                _freeWaiters.Push(waiter);
            }
        }
    }

    /// <summary>
    /// A client in a pool's line: what it awaits (a connection, or null for a slot to open one) and, once that is over,
    /// <see cref="Dispose"/> (its cancellation registration ended, its waiter recycled). One registration per wait, on a
    /// source whose nodes are reused; the deadline is the pool's timer's.
    /// </summary>
    internal readonly struct PendingWait : IDisposable
    {
        private readonly ConnectionPool _pool;
        private readonly PoolWaiter? _waiter;
        private readonly CancellationTokenRegistration _registration;
        private readonly BackendConnection? _done;

        public PendingWait(ConnectionPool pool, PoolWaiter waiter, CancellationToken cancellationToken)
        {
            _pool = pool;
            _waiter = waiter;
            _done = null;
            _registration = cancellationToken.CanBeCanceled
                ? cancellationToken.UnsafeRegister(static (w, token) => ((PoolWaiter)w!).Cancel(token), waiter)
                : default;
        }

        private PendingWait(ConnectionPool pool, BackendConnection? done)
        {
            _pool = pool;
            _waiter = null;
            _registration = default;
            _done = done;
        }

        /// <summary>No wait after all: what the pool had at once (a connection, or null for a reserved slot).</summary>
        public static PendingWait Done(ConnectionPool pool, BackendConnection? connection) => new(pool, connection);

        public ValueTask<BackendConnection?> Task => _waiter is { } waiter ? waiter.WaitAsync() : ValueTask.FromResult(_done);

        public void Dispose()
        {
            if (_waiter is { } waiter)
            {
                _registration.Dispose();
                _pool.Recycle(waiter);
            }
        }
    }

    /// <summary>What a wait begun with <see cref="BeginWait"/> gave, for <see cref="AcquireAsync"/>: a connection, or null for a reserved slot.</summary>
    internal readonly record struct Granted(bool Present, BackendConnection? Connection);

    /// <summary>When a wait that starts now ends: never for <see cref="Timeout.InfiniteTimeSpan"/>, else that long from now (zero: at once).</summary>
    private long Deadline(TimeSpan wait) =>
        wait == Timeout.InfiniteTimeSpan ? long.MaxValue : _time.GetTimestamp() + (long)(wait.TotalSeconds * _time.TimestampFrequency);

    /// <summary>Puts <paramref name="waiter"/> at the end of <paramref name="pool"/>'s line and makes sure the timer wakes by its deadline.</summary>
    private void EnqueueLocked(SharedPool pool, PoolWaiter waiter, PoolKey key, TimeSpan wait, long deadline)
    {
        waiter.Enter(this, key, wait, deadline);
        pool.Waiters.AddLast(waiter.Node);
        if (deadline < _waitTimerDue)
        {
            ArmWaitTimerLocked(deadline);
        }
    }

    private void ArmWaitTimerLocked(long deadline)
    {
        _waitTimerDue = deadline;
        if (_waitTimer is null)
        {
            using (ExecutionContext.SuppressFlow())
            {
                _waitTimer = _time.CreateTimer(static p => ((ConnectionPool)p!).ExpireWaiters(), this, Timeout.InfiniteTimeSpan,
                    Timeout.InfiniteTimeSpan);
            }
        }

        // At most a day ahead (a timer takes less than 49 days): fired early, it finds nothing due and is armed again.
        var seconds = Math.Min(Math.Max(0, deadline - _time.GetTimestamp()) / (double)_time.TimestampFrequency, TimeSpan.FromDays(1).TotalSeconds);
        _waitTimer.Change(TimeSpan.FromSeconds(seconds) + TimerSlack, Timeout.InfiniteTimeSpan);
    }

    /// <summary>A timer may fire a little early: this much later, every deadline it was armed for has passed.</summary>
    private static readonly TimeSpan TimerSlack = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// The wait timer: every waiter past its deadline leaves its line with <see cref="PoolWaitTimeoutException"/>; the
    /// timer is armed again for the earliest deadline left. One timer for the pool, not one per wait: waits come and go
    /// thousands of times a second and almost all end by a handover long before their deadline.
    /// </summary>
    private void ExpireWaiters()
    {
        List<PoolWaiter>? expired = null;
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var next = long.MaxValue;
            foreach (var pool in _shared.Values)
            {
                for (var n = pool.Waiters.First; n is not null;)
                {
                    var following = n.Next;
                    if (n.Value.Deadline <= now)
                    {
                        pool.Waiters.Remove(n);
                        (expired ??= []).Add(n.Value);
                    }
                    else
                    {
                        next = Math.Min(next, n.Value.Deadline);
                    }

                    n = following;
                }
            }

            _waitTimerDue = long.MaxValue;
            if (next != long.MaxValue && !_disposed)
            {
                ArmWaitTimerLocked(next);
            }
        }

        if (expired is not null)
        {
            foreach (var waiter in expired)
            {
                waiter.Fail(new PoolWaitTimeoutException(waiter.Key, waiter.Wait));
            }
        }
    }

    /// <summary>The waiting client's session ends (shutdown): it leaves the line unless something was already handed to it.</summary>
    private void CancelWait(PoolWaiter waiter, CancellationToken token)
    {
        lock (_lock)
        {
            if (waiter.Node.List is not { } line)
            {
                // Handed a connection (or timed out) just now: its result is on the way.
                return;
            }

            line.Remove(waiter.Node);
        }

        waiter.Fail(new OperationCanceledException(token));
    }

    /// <summary>A transaction-mode connection opened on a slot <see cref="AcquireAsync"/> reserved.</summary>
    public static void Opened(BackendConnection connection) => connection.Shared = true;

    /// <summary>Opening a connection on a reserved slot failed: the slot is free again.</summary>
    public void OpenFailed(PoolKey key)
    {
        lock (_lock)
        {
            _openPerNode[key.NodeId] = Math.Max(0, _openPerNode.GetValueOrDefault(key.NodeId) - 1);
            SlotFreedLocked(key);
        }
    }

    /// <summary>
    /// Transaction mode: a clean connection (no transaction open, every reply read) back from its client; the first
    /// waiting client gets it (its session goes on at once, on this thread), else it goes idle. False when it is not
    /// kept: the caller closes it and calls <see cref="Forget(BackendConnection)"/>.
    /// </summary>
    public bool Return(BackendConnection connection)
    {
        var kept = Return(connection, out var handoff);
        handoff.Complete();
        return kept;
    }

    /// <summary>
    /// As <see cref="Return(BackendConnection)"/>, but a waiting client is handed the connection only when the caller
    /// calls <paramref name="handoff"/>'s <see cref="PoolHandoff.Complete"/> (after it has put its own state in order:
    /// the waiter's session continues on the thread that completes it).
    /// </summary>
    public bool Return(BackendConnection connection, out PoolHandoff handoff)
    {
        handoff = default;
        lock (_lock)
        {
            if (_disposed || connection.IsBroken || PurgedWhileOutLocked(connection))
            {
                return false;
            }

            connection.LastUsedAt = _time.GetTimestamp();
            if (_shared.TryGetValue(connection.Key, out var pool))
            {
                if (pool.Open > (_limits.Shared ?? pool.Limits).PoolSize)
                {
                    // default_pool_size was lowered by a reload: the caller closes it, and a waiter gets a slot once the
                    // pool is within its size again.
                    return false;
                }

                // How the server asked: a client whose login finds every connection busy is asked the same before it waits.
                pool.AuthMethod = connection.AuthMethod;
                if (DequeueLocked(pool) is { } waiter)
                {
                    handoff = new PoolHandoff(waiter, connection);
                    return true;
                }
            }

            if (!_idle.TryGetValue(connection.Key, out var list))
            {
                _idle[connection.Key] = list = [];
            }

            _nodes[connection] = (list.AddLast(connection), _lru.AddLast(connection));
            return true;
        }
    }

    /// <summary>Clients waiting and connections open, per transaction-mode pool, for SHOW POOL_POOLS and the metrics.</summary>
    public IReadOnlyList<SharedPoolState> SharedPools()
    {
        lock (_lock)
        {
            return [.. _shared.Select(p => new SharedPoolState(p.Key, p.Value.Open, _idle.TryGetValue(p.Key, out var idle) ? idle.Count : 0,
                p.Value.Waiters.Count))];
        }
    }

    private SharedPool SharedLocked(PoolKey key, SharedLimits limits)
    {
        if (!_shared.TryGetValue(key, out var pool))
        {
            _shared[key] = pool = new SharedPool();
        }

        pool.Limits = limits;
        return pool;
    }

    /// <summary>The first client in line, taken out of it (whoever takes a waiter out of its line completes it), or null when none waits.</summary>
    private static PoolWaiter? DequeueLocked(SharedPool pool)
    {
        if (pool.Waiters.First is not { } first)
        {
            return null;
        }

        pool.Waiters.RemoveFirst();
        return first.Value;
    }

    private BackendConnection? TakeIdleLocked(PoolKey key, CredentialTag? credential)
    {
        if (!_idle.TryGetValue(key, out var list))
        {
            return null;
        }

        for (var n = list.Last; n is not null; n = n.Previous)
        {
            if (n.Value.WasOpenedWith(credential))
            {
                var connection = n.Value;
                Unlink(connection);
                return connection;
            }
        }

        return null;
    }

    /// <summary>
    /// A new connection for the pool when it is under default_pool_size and the node under max_db_connections (an idle
    /// connection of another pool on the node is closed to make room when that is all that stands in the way).
    /// </summary>
    private bool TryReserveSharedLocked(SharedPool pool, int nodeId)
    {
        if (pool.Open >= pool.Limits.PoolSize)
        {
            return false;
        }

        var nodeMax = pool.Limits.NodeMax;
        if (nodeMax > 0 && _openPerNode.GetValueOrDefault(nodeId) >= nodeMax)
        {
            BackendConnection? victim = null;
            for (var n = _lru.First; n is not null; n = n.Next)
            {
                if (n.Value.NodeId == nodeId)
                {
                    victim = n.Value;
                    break;
                }
            }

            if (victim is null)
            {
                return false;
            }

            Unlink(victim);
            DroppedLocked(victim);
            _ = victim.DisposeAsync().AsTask();
        }

        pool.Open++;
        _openPerNode[nodeId] = _openPerNode.GetValueOrDefault(nodeId) + 1;
        return true;
    }

    /// <summary>A slot of <paramref name="key"/>'s pool is free: the first waiter of that pool (else of another pool on the node) may open a connection.</summary>
    private void SlotFreedLocked(PoolKey key)
    {
        if (_shared.TryGetValue(key, out var pool))
        {
            pool.Open = Math.Max(0, pool.Open - 1);
            if (GrantLocked(pool, key.NodeId))
            {
                return;
            }
        }

        foreach (var (other, otherPool) in _shared)
        {
            if (other.NodeId == key.NodeId && !ReferenceEquals(otherPool, pool) && GrantLocked(otherPool, key.NodeId))
            {
                return;
            }
        }
    }

    private bool GrantLocked(SharedPool pool, int nodeId)
    {
        if (pool.Waiters.Count == 0 || !TryReserveSharedLocked(pool, nodeId))
        {
            return false;
        }

        // Completed off this thread: the pool's lock is held here, and the waiter's session would run under it.
        var waiter = DequeueLocked(pool)!;
        ThreadPool.UnsafeQueueUserWorkItem(static w => w.Complete(null), waiter, preferLocal: false);
        return true;
    }

    /// <summary>One transaction-mode pool: its connections open (idle or in use) and the clients waiting for one.</summary>
    private sealed class SharedPool
    {
        public int Open;

        public SharedLimits Limits = new(1, 0, TimeSpan.Zero);

        public BackendAuthMethod? AuthMethod;

        public LinkedList<PoolWaiter> Waiters { get; } = [];
    }

    /// <summary>
    /// A client's place in a transaction-mode pool's line, reused wait after wait (no allocation per wait). Whoever takes it out of its line — a returning session handing over its connection, a freed slot, the
    /// deadline timer, a cancel — completes it, exactly once. Completed without a hop to the thread pool: the session
    /// that returns a connection hands it over and the waiter's session runs on at once, as an event loop would.
    /// </summary>
    internal sealed class PoolWaiter : IValueTaskSource<BackendConnection?>
    {
        private ManualResetValueTaskSourceCore<BackendConnection?> _core = new() { RunContinuationsAsynchronously = false };
        private ConnectionPool? _pool;

        public PoolWaiter() => Node = new LinkedListNode<PoolWaiter>(this);

        /// <summary>Its place in a line; in no list while it does not wait, or once it was taken out.</summary>
        public LinkedListNode<PoolWaiter> Node { get; }

        public PoolKey Key { get; private set; } = null!;

        public TimeSpan Wait { get; private set; }

        /// <summary>When the wait gives up (a <see cref="TimeProvider"/> timestamp).</summary>
        public long Deadline { get; private set; }

        /// <summary>Starts a wait (under the pool's lock, before it joins the line).</summary>
        public void Enter(ConnectionPool pool, PoolKey key, TimeSpan wait, long deadline)
        {
            _core.Reset();
            _pool = pool;
            Key = key;
            Wait = wait;
            Deadline = deadline;
        }

        public ValueTask<BackendConnection?> WaitAsync() => new(this, _core.Version);

        /// <summary>Hands over a connection, or null for a slot to open one.</summary>
        public void Complete(BackendConnection? connection) => _core.SetResult(connection);

        public void Fail(Exception error) => _core.SetException(error);

        public void Cancel(CancellationToken token) => _pool?.CancelWait(this, token);

        public BackendConnection? GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }

    /// <summary>
    /// pgpool-II never caches connections to template0/template1 (CREATE DATABASE needs template1 free of sessions);
    /// unlike pgpool-II, Poold does cache connections to postgres and regression.
    /// </summary>
    public static bool IsCacheable(string database) => database is not ("template0" or "template1");

    public void UpdateLimits(PoolLimits limits)
    {
        lock (_lock)
        {
            _limits = limits;
        }
    }

    private void Unlink(BackendConnection connection)
    {
        var (inKey, inLru) = _nodes[connection];
        inKey.List!.Remove(inKey);
        _lru.Remove(inLru);
        _nodes.Remove(connection);
        if (_idle.TryGetValue(connection.Key, out var list) && list.Count == 0)
        {
            _idle.Remove(connection.Key);
        }
    }

    /// <summary>Closes idle connections past <c>connection_life_time</c>.</summary>
    public async Task PruneAsync()
    {
        var expired = new List<BackendConnection>();
        lock (_lock)
        {
            if (_limits.LifeTime <= TimeSpan.Zero)
            {
                return;
            }

            for (var n = _lru.First; n is not null;)
            {
                var next = n.Next;
                if (_time.GetElapsedTime(n.Value.LastUsedAt) >= _limits.LifeTime)
                {
                    expired.Add(n.Value);
                    Unlink(n.Value);
                    DroppedLocked(n.Value);
                }

                n = next;
            }
        }

        foreach (var connection in expired)
        {
            await connection.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<BackendConnection> all;
        lock (_lock)
        {
            _disposed = true;
            all = [.. _lru];
            foreach (var c in all)
            {
                Unlink(c);
                DroppedLocked(c);
            }

            foreach (var pool in _shared.Values)
            {
                while (DequeueLocked(pool) is { } waiter)
                {
                    ThreadPool.UnsafeQueueUserWorkItem(static w => w.Fail(new ObjectDisposedException(nameof(ConnectionPool))), waiter,
                        preferLocal: false);
                }
            }
        }

        if (_pruneTimer is not null)
        {
            await _pruneTimer.DisposeAsync();
        }

        if (_waitTimer is not null)
        {
            await _waitTimer.DisposeAsync();
        }

        foreach (var connection in all)
        {
            await connection.DisposeAsync();
        }
    }
}

/// <summary>The pool's bounds, from pgpool.conf.</summary>
internal sealed record PoolLimits(bool Cache, int MaxPerNode, int MaxIdlePerKey, TimeSpan LifeTime)
{
    /// <summary>server_check_query: run on a connection idle longer than <see cref="CheckDelay"/> before it is reused; empty = never.</summary>
    public string CheckQuery { get; init; } = "select 1";

    public TimeSpan CheckDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the check may take before the connection counts as dead.</summary>
    public TimeSpan CheckTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public static PoolLimits From(PooldSettings settings) => new(
        settings.Get(Params.ConnectionCache),
        settings.Get(Params.NumInitChildren) * settings.Get(Params.MaxPool),
        settings.Get(Params.NumInitChildren),
        settings.Get(Params.ConnectionLifeTime))
    {
        CheckQuery = settings.Get(Params.ServerCheckQuery),
        CheckDelay = settings.Get(Params.ServerCheckDelay),
        CheckTimeout = settings.Get(Params.ConnectTimeout) is { Ticks: > 0 } t ? t : TimeSpan.FromSeconds(10),
        Shared = SharedLimits.From(settings),
    };

    /// <summary>
    /// Transaction mode's sizes as the configuration now says (a reload changes them for every session, as in PgBouncer);
    /// null where the pool is built without them, and then each caller's own count.
    /// </summary>
    public SharedLimits? Shared { get; init; }
}

/// <summary>
/// Transaction mode's bounds: default_pool_size per pool, max_db_connections per node (0 = none), and how long a
/// client may wait: query_wait_timeout, whose 0 means no limit (as in PgBouncer: <see cref="Timeout.InfiniteTimeSpan"/>
/// here); a Wait of zero is the session's own "do not wait at all".
/// </summary>
internal readonly record struct SharedLimits(int PoolSize, int NodeMax, TimeSpan Wait)
{
    public static SharedLimits From(PooldSettings settings) => new(settings.Get(Params.DefaultPoolSize), settings.Get(Params.MaxDbConnections),
        settings.Get(Params.QueryWaitTimeout) is { Ticks: > 0 } wait ? wait : Timeout.InfiniteTimeSpan);
}

/// <summary>A connection to hand to a waiting client once the returning session's own state is in order.</summary>
internal readonly struct PoolHandoff(ConnectionPool.PoolWaiter? waiter, BackendConnection? connection)
{
    /// <summary>No client waited: the connection went idle.</summary>
    public bool IsEmpty => waiter is null;

    /// <summary>Gives the connection to the waiter; its session continues on this thread. Nothing to do when no one waited.</summary>
    public void Complete() => waiter?.Complete(connection);
}

/// <summary>One transaction-mode pool as SHOW POOL_POOLS reports it.</summary>
internal sealed record SharedPoolState(PoolKey Key, int Open, int Idle, int Waiting);

/// <summary>No server connection became free within query_wait_timeout.</summary>
internal sealed class PoolWaitTimeoutException(PoolKey key, TimeSpan wait)
    : Exception($"no server connection to {key} became free within query_wait_timeout ({wait.TotalSeconds:0.###}s)")
{
    public PoolKey Key { get; } = key;
}
