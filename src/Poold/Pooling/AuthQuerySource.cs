using System.Collections.Concurrent;
using System.Net.Sockets;
using Poold.Auth;
using Poold.Config;
using Poold.Tls;

namespace Poold.Pooling;

/// <summary>
/// PgBouncer's <c>auth_query</c>: fetches a user's password verifier from the primary, as <c>auth_user</c> (whose own
/// secret is its pool_passwd entry), over connections of its own. Those connections never enter the
/// <see cref="ConnectionPool"/>, so no client can be handed one; each keeps <c>auth_query</c> prepared and runs it with
/// the user name bound as <c>$1</c>. A verifier found is reused for <c>auth_query_cache_time</c>. This object owns its
/// idle connections and its cache; sessions only call <see cref="LookupAsync"/>.
/// </summary>
internal sealed class AuthQuerySource(TimeProvider time) : IAsyncDisposable
{
    /// <summary>The prepared statement's name on each auth connection.</summary>
    private const string StatementName = "poold_auth_query";

    /// <summary>The application_name of auth connections, so that pg_stat_activity tells them apart.</summary>
    public const string ApplicationName = "poold auth_query";

    private const int MaxIdlePerKey = 4;
    private const int MaxCachedUsers = 10_000;

    /// <summary>Idle auth connections by key, each with the query text it has prepared. Guarded by itself: a few short critical sections per lookup.</summary>
    private readonly Dictionary<PoolKey, Stack<(BackendConnection Connection, string PreparedSql)>> _idle = [];

    /// <summary>Verifiers found, by (database, user), with when they were fetched (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    private readonly ConcurrentDictionary<(string Database, string User), (AuthQueryResult Result, long FetchedAt)> _cache = new();

    private int _disposed;

    /// <summary>
    /// The verifier of <paramref name="user"/>, from the cache while it is younger than <c>auth_query_cache_time</c>,
    /// else from the primary (always from the primary with <paramref name="refresh"/>). Never throws for a lookup that
    /// fails: the result says why. <c>FromCache</c> tells the caller whether a fetch could give something newer.
    /// </summary>
    public async Task<(AuthQueryResult Result, bool FromCache)> LookupAsync(string user, string clientDatabase, PooldSettings settings,
        AuthFiles auth, BackendSettings? primary, TlsSetup tls, bool refresh, CancellationToken cancellationToken)
    {
        var authUser = settings.Get(Params.AuthUser);
        var database = settings.Get(Params.AuthDbname) is { Length: > 0 } configured ? configured : clientDatabase;
        var cacheTime = settings.Get(Params.AuthQueryCacheTime);
        var cacheKey = (database, user);
        if (!refresh && cacheTime > TimeSpan.Zero && _cache.TryGetValue(cacheKey, out var cached)
            && time.GetElapsedTime(cached.FetchedAt) < cacheTime)
        {
            return (cached.Result, true);
        }

        var result = await FetchAsync(user, authUser, database, settings, auth, primary, tls, cancellationToken);
        // "No such user" is cached like a verifier: an unknown user then costs the same round trips as a known one with
        // a wrong password (a cache hit, then the fetch again after the failed proof), and a flood of unknown names does
        // not become a flood of queries.
        if (result.Status is AuthQueryStatus.Found or AuthQueryStatus.NotFound && cacheTime > TimeSpan.Zero)
        {
            if (_cache.Count >= MaxCachedUsers)
            {
                _cache.Clear();
            }

            _cache[cacheKey] = (result, time.GetTimestamp());
        }
        else
        {
            _cache.TryRemove(cacheKey, out _);
        }

        return (result, false);
    }

    private async Task<AuthQueryResult> FetchAsync(string user, string authUser, string database, PooldSettings settings, AuthFiles auth,
        BackendSettings? primary, TlsSetup tls, CancellationToken cancellationToken)
    {
        if (primary is null)
        {
            return AuthQueryResult.Failed($"auth_query for user \"{user}\": no primary node is available to run it on");
        }

        StoredCredential? secret;
        try
        {
            secret = auth.Passwords.Find(authUser)?.Resolve(auth.Key);
        }
        catch (PoolPasswdException e)
        {
            return AuthQueryResult.Failed($"auth_query: cannot use the pool_passwd entry of auth_user \"{authUser}\": {e.Message}");
        }

        List<KeyValuePair<string, string>> startup = [new("user", authUser), new("database", database), new("application_name", ApplicationName)];
        var key = PoolKey.Create(primary.Id, startup);
        var sql = settings.Get(Params.AuthQuery);
        var (connection, preparedSql) = Take(key);
        try
        {
            connection ??= await BackendConnection.OpenAsync(primary, key, startup, (_, _) => ValueTask.FromResult(secret), tls,
                settings.Get(Params.ConnectTimeout, primary.Id), time, cancellationToken);
            var rows = await connection.QueryPreparedAsync(StatementName, preparedSql == sql ? null : sql, user, cancellationToken);
            Return(key, connection, sql);
            connection = null;
            return AuthQueryResult.FromRows(user, rows);
        }
        catch (BackendRejectedException e)
        {
            return AuthQueryResult.Failed(
                $"auth_query for user \"{user}\" failed on node {primary.Id} as auth_user \"{authUser}\" in database \"{database}\": {e.Error.SqlState} {e.Message}");
        }
        catch (Exception e) when (e is BackendException or IOException or SocketException)
        {
            return AuthQueryResult.Failed($"auth_query for user \"{user}\" as auth_user \"{authUser}\" in database \"{database}\": {e.Message}");
        }
        finally
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }
        }
    }

    /// <summary>An idle connection for <paramref name="key"/> that the server has not closed meanwhile, or null.</summary>
    private (BackendConnection? Connection, string? PreparedSql) Take(PoolKey key)
    {
        List<BackendConnection> gone = [];
        (BackendConnection?, string?) found = (null, null);
        lock (_idle)
        {
            if (_idle.TryGetValue(key, out var stack))
            {
                while (stack.TryPop(out var idle))
                {
                    if (idle.Connection.IsBroken || idle.Connection.IsClosedByPeer())
                    {
                        gone.Add(idle.Connection);
                        continue;
                    }

                    found = idle;
                    break;
                }
            }
        }

        foreach (var connection in gone)
        {
            _ = connection.DisposeAsync().AsTask();
        }

        return found;
    }

    private void Return(PoolKey key, BackendConnection connection, string preparedSql)
    {
        lock (_idle)
        {
            if (Volatile.Read(ref _disposed) == 0 && connection.TransactionStatus == Protocol.TransactionStatus.Idle)
            {
                if (!_idle.TryGetValue(key, out var stack))
                {
                    _idle[key] = stack = new Stack<(BackendConnection, string)>();
                }

                if (stack.Count < MaxIdlePerKey)
                {
                    stack.Push((connection, preparedSql));
                    return;
                }
            }
        }

        _ = connection.TerminateAsync().AsTask();
    }

    /// <summary>Closes the idle auth connections; lookups after this open and close their own.</summary>
    public async ValueTask DisposeAsync()
    {
        List<BackendConnection> all = [];
        lock (_idle)
        {
            Volatile.Write(ref _disposed, 1);
            foreach (var stack in _idle.Values)
            {
                all.AddRange(stack.Select(s => s.Connection));
            }

            _idle.Clear();
        }

        _cache.Clear();
        await Task.WhenAll(all.Select(c => c.TerminateAsync().AsTask()));
    }
}
