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
    private readonly object _lock = new();
    private readonly Dictionary<PoolKey, LinkedList<BackendConnection>> _idle = [];
    private readonly LinkedList<BackendConnection> _lru = [];
    private readonly Dictionary<BackendConnection, (LinkedListNode<BackendConnection> InKey, LinkedListNode<BackendConnection> InLru)> _nodes = [];
    private readonly Dictionary<int, int> _openPerNode = [];
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
    /// Takes the most recently used idle connection for <paramref name="key"/> that <paramref name="accept"/> allows, or
    /// null, unchecked; the others stay idle. <paramref name="accept"/> runs under the pool's lock: it must be quick.
    /// </summary>
    private BackendConnection? TryTakeUnchecked(PoolKey key, Func<BackendConnection, bool> accept)
    {
        lock (_lock)
        {
            if (!_idle.TryGetValue(key, out var list))
            {
                return null;
            }

            for (var n = list.Last; n is not null; n = n.Previous)
            {
                if (accept(n.Value))
                {
                    var connection = n.Value;
                    Unlink(connection);
                    return connection;
                }
            }

            return null;
        }
    }

    /// <summary>How the most recently used idle connection for <paramref name="key"/> logged in, without taking it; null when none is idle.</summary>
    public BackendAuthMethod? PeekAuthMethod(PoolKey key)
    {
        lock (_lock)
        {
            return _idle.TryGetValue(key, out var list) && list.Last is { } last ? last.Value.AuthMethod : null;
        }
    }

    /// <summary>
    /// Takes an idle connection for <paramref name="key"/> that <paramref name="accept"/> allows and that is still good,
    /// or null. A connection the server closed or
    /// wrote to while it sat idle (a restart, <c>pg_terminate_backend</c>, <c>idle_session_timeout</c>) is closed and the
    /// next one tried; one idle for longer than <c>server_check_delay</c> first answers <c>server_check_query</c> (a round
    /// trip, as PgBouncer does), which catches a peer that vanished without a FIN (a NAT that dropped the flow).
    /// </summary>
    public async ValueTask<BackendConnection?> TakeAsync(PoolKey key, Func<BackendConnection, bool> accept, CancellationToken cancellationToken)
    {
        while (TryTakeUnchecked(key, accept) is { } connection)
        {
            if (await IsGoodAsync(connection, cancellationToken))
            {
                return connection;
            }

            Forget(connection.NodeId);
            await connection.DisposeAsync();
        }

        return null;
    }

    private async ValueTask<bool> IsGoodAsync(BackendConnection connection, CancellationToken cancellationToken)
    {
        if (connection.IsBroken || connection.IsClosedByPeer())
        {
            return false;
        }

        var limits = _limits;
        if (limits.CheckQuery.Length == 0 || _time.GetElapsedTime(connection.LastUsedAt) < limits.CheckDelay)
        {
            return true;
        }

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
                    _openPerNode[nodeId]--;
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
        var purged = new List<BackendConnection>();
        lock (_lock)
        {
            for (var n = _lru.First; n is not null;)
            {
                var next = n.Next;
                if (n.Value.Key.Database == database)
                {
                    purged.Add(n.Value);
                    Unlink(n.Value);
                    _openPerNode[n.Value.NodeId]--;
                }

                n = next;
            }
        }

        // Terminate, then close: the server ends those backends at once, so the statement waiting for the database
        // to be free does not wait on Poold.
        await Task.WhenAll(purged.Select(c => c.TerminateAsync().AsTask()));
        return purged.Count;
    }

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
                    _openPerNode[nodeId]--;
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

    /// <summary>
    /// Offers a clean, reset connection for reuse. Returns false when it is not kept (caching off, pool disposed, or
    /// over the per-key bound); the caller then closes it and calls <see cref="Forget"/>.
    /// </summary>
    public bool TryReturn(BackendConnection connection)
    {
        lock (_lock)
        {
            if (_disposed || !_limits.Cache || !IsCacheable(connection.Key.Database) || connection.IsBroken)
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
                    _openPerNode[n.Value.NodeId]--;
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
                _openPerNode[c.NodeId]--;
            }
        }

        if (_pruneTimer is not null)
        {
            await _pruneTimer.DisposeAsync();
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
    };
}
