using System.Diagnostics;
using System.Globalization;
using Poold.Auth;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Tls;
using Serilog;

namespace Poold.Backends;

/// <summary>
/// The background checks of compat §8: the health check of every node (a full login as health_check_user, with
/// retries), failover of a node that fails it (unless DISALLOW_TO_FAILOVER) with failover_command, the search for a
/// new primary when the primary is lost, the streaming-replication check (each node's role, the standbys' delay and
/// replication state, delay_threshold), following a primary promoted outside Poold, and auto_failback. One loop, one
/// tick a second; every check is bounded by its timeout.
/// </summary>
internal sealed class NodeMonitor : IAsyncDisposable
{
    private readonly Func<PooldSettings> _settings;
    private readonly Func<AuthFiles> _auth;
    private readonly NodeRegistry _registry;
    private readonly TlsSetup _tls;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<int, long> _nextHealthCheck = [];
    private readonly Dictionary<int, long> _lastFailback = [];
    private readonly Dictionary<int, Task> _healthChecks = [];
    private long _nextReplicationCheck;
    private Task _replicationCheck = Task.CompletedTask;
    private Task _loop = Task.CompletedTask;

    public NodeMonitor(Func<PooldSettings> settings, Func<AuthFiles> auth, NodeRegistry registry, TlsSetup tls, TimeProvider time, ILogger log)
    {
        _settings = settings;
        _auth = auth;
        _registry = registry;
        _tls = tls;
        _time = time;
        _log = log.ForContext<NodeMonitor>();
    }

    public void Start() => _loop = RunAsync(_stop.Token);

    /// <summary>
    /// backend_discovery = patroni: asks the follower to read Patroni's view now. Set, the monitor never promotes,
    /// searches for a primary or runs failover/follow commands: it only keeps dead nodes out of rotation.
    /// </summary>
    public Action? RequestDiscovery { get; set; }

    /// <summary>Called after each health-check attempt with the node id and its duration in seconds (the metrics' histogram).</summary>
    public Action<int, double>? HealthCheckTimed { get; set; }

    private async Task RunAsync(CancellationToken stop)
    {
        await Task.Yield();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), _time);
        do
        {
            try
            {
                Tick(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log.Error(e, "node monitor check failed");
            }
        }
        while (await WaitAsync(timer, stop));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stop)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stop);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private void Tick(CancellationToken stop)
    {
        var settings = _settings();
        var now = _time.GetTimestamp();
        var due = new List<NodeState>();
        foreach (var node in _registry.Current.Nodes.Where(n => n.Status != NodeStatus.Unused))
        {
            var period = settings.Get(Params.HealthCheckPeriod, node.Id);
            if (period <= TimeSpan.Zero || (_nextHealthCheck.TryGetValue(node.Id, out var next) && now < next))
            {
                continue;
            }

            _nextHealthCheck[node.Id] = now + (long)(period.TotalSeconds * _time.TimestampFrequency);
            due.Add(node);
        }

        // Each node's check runs on its own, and the replication check beside them: a frozen node (SIGSTOP, a cut
        // network) delays only its own check, never another node's detection. A check still running is not started twice.
        foreach (var node in due)
        {
            if (!_healthChecks.TryGetValue(node.Id, out var running) || running.IsCompleted)
            {
                _healthChecks[node.Id] = HealthCheckAsync(node, settings, stop);
            }
        }

        var srPeriod = settings.Get(Params.SrCheckPeriod);
        if (srPeriod > TimeSpan.Zero && now >= _nextReplicationCheck && _replicationCheck.IsCompleted)
        {
            _nextReplicationCheck = now + (long)(srPeriod.TotalSeconds * _time.TimestampFrequency);
            _replicationCheck = ReplicationCheckAsync(settings, stop);
        }
    }

    // ---- health check ----

    private async Task HealthCheckAsync(NodeState node, PooldSettings settings, CancellationToken stop)
    {
        try
        {
            await CheckHealthAsync(node, settings, stop);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _log.Error(e, "health check of node {NodeId} failed unexpectedly", node.Id);
        }
    }

    private async Task CheckHealthAsync(NodeState node, PooldSettings settings, CancellationToken stop)
    {
        var stats = _registry.Health[node.Id];
        // Following Patroni, down nodes stay checked: the follower attaches a member Patroni runs only if Poold reaches it.
        if (node.Status == NodeStatus.Down && !settings.Get(Params.AutoFailback) && RequestDiscovery is null)
        {
            Interlocked.Increment(ref stats.Skip);
            stats.LastSkip = _time.GetUtcNow();
            return;
        }

        var retries = settings.Get(Params.HealthCheckMaxRetries, node.Id);
        var delay = settings.Get(Params.HealthCheckRetryDelay, node.Id);
        string? failure = null;
        for (var attempt = 0; attempt <= retries; attempt++)
        {
            if (attempt > 0)
            {
                Interlocked.Increment(ref stats.Retry);
                await Task.Delay(delay, _time, stop);
            }

            var watch = Stopwatch.StartNew();
            failure = await OnOwnThread(() => TryLoginAsync(node, settings.Get(Params.HealthCheckUser, node.Id),
                settings.Get(Params.HealthCheckPassword, node.Id), settings.Get(Params.HealthCheckDatabase, node.Id),
                settings.Get(Params.HealthCheckTimeout, node.Id), settings, stop));

            // A check cut short by the monitor's own stop (Poold stopping, even smartly, with sessions still running)
            // says nothing about the node: not a failure to count, and above all no failover.
            stop.ThrowIfCancellationRequested();
            var ms = watch.Elapsed.TotalMilliseconds;
            HealthCheckTimed?.Invoke(node.Id, ms / 1000);
            lock (stats)
            {
                stats.Total++;
                stats.LastCheck = _time.GetUtcNow();
                stats.TotalDurationMs += ms;
                stats.MaxDurationMs = Math.Max(stats.MaxDurationMs, ms);
                stats.MinDurationMs = stats.MinDurationMs == 0 ? ms : Math.Min(stats.MinDurationMs, ms);
                stats.MaxRetry = Math.Max(stats.MaxRetry, attempt);
                if (failure is null)
                {
                    stats.Success++;
                    stats.LastSuccess = stats.LastCheck;
                }
                else
                {
                    stats.Fail++;
                    stats.LastFailure = stats.LastCheck;
                }
            }

            if (failure is null)
            {
                return;
            }
        }

        if (node.Status == NodeStatus.Down)
        {
            return;
        }

        _log.Warning("health check failed on node {NodeId} ({Host}:{Port}): {Reason}", node.Id, node.Settings.Hostname, node.Settings.Port, failure);
        if (!node.Settings.AllowsFailover)
        {
            _log.Warning("node {NodeId} is DISALLOW_TO_FAILOVER: it stays attached", node.Id);
            return;
        }

        await FailoverAsync(node.Id, $"health check failed: {failure}", stop);
    }

    /// <summary>
    /// Runs a check on a thread of its own over a blocking socket (<see cref="BlockingDialer"/>): the login then never waits
    /// behind session work on the socket engine's event threads, so a busy Poold does not see a healthy node time out.
    /// </summary>
    private static Task<T> OnOwnThread<T>(Func<Task<T>> check) =>
        Task.Factory.StartNew(check, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

    /// <summary>A full login (startup and authentication) to the node, then a clean close; null when it worked, else why not.</summary>
    private async Task<string?> TryLoginAsync(NodeState node, string user, string configuredPassword, string database, TimeSpan timeout,
        PooldSettings settings, CancellationToken stop)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
        if (timeout > TimeSpan.Zero)
        {
            deadline.CancelAfter(timeout);
        }

        try
        {
            await using var connection = await ConnectAsync(node, user, configuredPassword, database, settings, deadline.Token, BlockingDialer.Dial);
            return null;
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            return $"timed out after {timeout.TotalSeconds:0.#}s";
        }
        catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException or TimeoutException
                                      or PgProtocolException or ScramException)
        {
            return e.Message;
        }
    }

    private async Task<BackendConnection> ConnectAsync(NodeState node, string user, string configuredPassword, string database,
        PooldSettings settings, CancellationToken cancellationToken, BackendDialer? dial = null)
    {
        var credential = CheckCredentials.Resolve(configuredPassword, user, _auth());
        var startup = new List<KeyValuePair<string, string>>
        {
            new("user", user),
            new("database", database.Length == 0 ? "postgres" : database),
            new("application_name", "poold check"),
        };
        return await BackendConnection.OpenAsync(node.Settings, PoolKey.Create(node.Id, startup), startup,
            (_, _) => ValueTask.FromResult(credential), _tls, settings.Get(Params.ConnectTimeout, node.Id), _time, cancellationToken, dial);
    }

    // ---- failover ----

    private long _failovers;

    /// <summary>Failovers run so far (nodes this monitor detached), for the metrics.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    /// <summary>Detaches a node, runs failover_command, and when it was the primary, searches for the new one.</summary>
    public async Task FailoverAsync(int nodeId, string reason, CancellationToken stop)
    {
        var before = _registry.Current;
        if (!_registry.TryDetach(nodeId))
        {
            // Already down: whoever detached it runs the failover.
            return;
        }

        Interlocked.Increment(ref _failovers);

        _log.Warning("failover: detaching node {NodeId} ({Reason})", nodeId, reason);
        if (RequestDiscovery is { } discover)
        {
            // Patroni decides what happens next; its view is read now rather than at the next period.
            discover();
            return;
        }

        var wasPrimary = before.PrimaryNodeId == nodeId;
        if (wasPrimary)
        {
            _registry.SetPrimary(-1);
        }

        var settings = _settings();
        var after = _registry.Current;
        var newMain = after.Nodes.FirstOrDefault(n => n.Status == NodeStatus.Up);
        await RunCommandAsync("failover_command", settings.Get(Params.FailoverCommand), before.Nodes[nodeId], newMain, before, stop);
        if (wasPrimary)
        {
            await SearchPrimaryAsync(settings, stop);
            var found = _registry.Current;
            if (found.PrimaryNodeId >= 0)
            {
                // follow_primary_command: once per other live node, to re-point it at the new primary.
                foreach (var other in found.Nodes.Where(n => n.Status == NodeStatus.Up && n.Id != found.PrimaryNodeId))
                {
                    await RunCommandAsync("follow_primary_command", settings.Get(Params.FollowPrimaryCommand), other,
                        found.Nodes[found.PrimaryNodeId], before, stop);
                }
            }
        }
    }

    /// <summary>
    /// failover_on_backend_error (a session lost its connection to a node) and failover_on_backend_shutdown (a session was
    /// told the server is shutting down, <paramref name="shutdown"/>): detach the node unless DISALLOW_TO_FAILOVER.
    /// </summary>
    public void ReportBackendError(int nodeId, string reason, bool shutdown)
    {
        var settings = _settings();
        var node = _registry.Current.Nodes[nodeId];
        var enabled = shutdown ? settings.Get(Params.FailoverOnBackendShutdown) : settings.Get(Params.FailoverOnBackendError);
        if (!enabled || !node.Settings.AllowsFailover || node.Status == NodeStatus.Down)
        {
            return;
        }

        if (_stop.IsCancellationRequested)
        {
            // Poold is stopping (a smart stop drains its sessions): no failover starts now.
            return;
        }

        var stop = _stop.Token;
        RequestDiscovery?.Invoke();
        _ = Task.Run(async () =>
        {
            try
            {
                // Unlike pgpool-II, one session's broken connection detaches a node only if a fresh login fails too.
                var failure = await OnOwnThread(() => TryLoginAsync(node, settings.Get(Params.HealthCheckUser, nodeId),
                    settings.Get(Params.HealthCheckPassword, nodeId), settings.Get(Params.HealthCheckDatabase, nodeId), TimeSpan.FromSeconds(10),
                    settings, stop));

                // A login cut short by the stop says nothing about the node (see CheckHealthAsync).
                stop.ThrowIfCancellationRequested();
                if (failure is null)
                {
                    _log.Information("node {NodeId}: a session lost its connection ({Reason}) but the node accepts logins: not failed over", nodeId, reason);
                    return;
                }

                await FailoverAsync(nodeId, $"failover_on_backend_error: {reason}; then a login failed: {failure}", stop);
            }
            catch (OperationCanceledException)
            {
                // Stopping.
            }
        });
    }

    /// <summary>After the primary is lost: ask every live node until one says it is not in recovery (search_primary_node_timeout).</summary>
    private async Task SearchPrimaryAsync(PooldSettings settings, CancellationToken stop)
    {
        var timeout = settings.Get(Params.SearchPrimaryNodeTimeout);
        var watch = Stopwatch.StartNew();
        while (!stop.IsCancellationRequested)
        {
            foreach (var node in _registry.Current.Nodes.Where(n => n.Status == NodeStatus.Up))
            {
                if (await InRecoveryAsync(node, settings, stop) == false)
                {
                    _log.Warning("failover: new primary node is {NodeId}", node.Id);
                    _registry.SetPrimary(node.Id);
                    return;
                }
            }

            if (timeout > TimeSpan.Zero && watch.Elapsed > timeout)
            {
                _log.Error("failover: no primary found within search_primary_node_timeout ({Seconds}s); the replication check keeps looking",
                    timeout.TotalSeconds);
                return;
            }

            await Task.Delay(TimeSpan.FromSeconds(1), _time, stop);
        }
    }

    private async Task<bool?> InRecoveryAsync(NodeState node, PooldSettings settings, CancellationToken stop)
    {
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
            deadline.CancelAfter(TimeSpan.FromSeconds(10));
            await using var connection = await ConnectAsync(node, settings.Get(Params.SrCheckUser), settings.Get(Params.SrCheckPassword),
                settings.Get(Params.SrCheckDatabase), settings, deadline.Token);
            var rows = await connection.QueryRowsAsync("SELECT pg_is_in_recovery()", deadline.Token);
            return rows is [[var value, ..], ..] ? value == "t" : null;
        }
        catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException or OperationCanceledException
                                      or TimeoutException or PgProtocolException or ScramException)
        {
            return null;
        }
    }

    /// <summary>Runs a pgpool-style command through the shell with its % placeholders (compat §8.5); waits for it.</summary>
    private async Task RunCommandAsync(string what, string template, NodeState node, NodeState? newMain, NodeSnapshot before, CancellationToken stop)
    {
        if (template.Length == 0)
        {
            return;
        }

        var oldPrimary = before.PrimaryNodeId >= 0 ? before.Nodes[before.PrimaryNodeId] : null;
        var oldMain = before.Nodes.FirstOrDefault(n => n.Status == NodeStatus.Up);
        var command = Placeholders(template, node, newMain, oldMain, oldPrimary);
        _log.Information("{What}: running {Command}", what, command);
        try
        {
            using var process = Process.Start(new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", command }, UseShellExecute = false })!;
            await process.WaitForExitAsync(stop);
            if (process.ExitCode != 0)
            {
                _log.Warning("{What} exited with code {Code}", what, process.ExitCode);
            }
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            _log.Error("{What} could not run: {Reason}", what, e.Message);
        }
    }

    internal static string Placeholders(string template, NodeState node, NodeState? newMain, NodeState? oldMain, NodeState? oldPrimary)
    {
        var result = new System.Text.StringBuilder();
        for (var i = 0; i < template.Length; i++)
        {
            if (template[i] != '%' || i + 1 >= template.Length)
            {
                result.Append(template[i]);
                continue;
            }

            var code = template[++i];
            result.Append(code switch
            {
                'd' => I(node.Id),
                'h' => node.Settings.Hostname,
                'p' => I(node.Settings.Port),
                'D' => node.Settings.DataDirectory,
                'm' => newMain is null ? "-1" : I(newMain.Id),
                'H' => newMain?.Settings.Hostname ?? "",
                'M' => oldMain is null ? "-1" : I(oldMain.Id),
                'P' => oldPrimary is null ? "-1" : I(oldPrimary.Id),
                'r' => newMain is null ? "" : I(newMain.Settings.Port),
                'R' => newMain?.Settings.DataDirectory ?? "",
                'N' => oldPrimary?.Settings.Hostname ?? "",
                'S' => oldPrimary is null ? "" : I(oldPrimary.Settings.Port),
                '%' => "%",
                _ => "%" + code,
            });
        }

        return result.ToString();
    }

    private static string I(int value) => value.ToString(CultureInfo.InvariantCulture);

    // ---- streaming-replication check ----

    private async Task ReplicationCheckAsync(PooldSettings settings, CancellationToken stop)
    {
        try
        {
            await CheckReplicationAsync(settings, stop);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _log.Error(e, "replication check failed unexpectedly");
        }
    }

    private async Task CheckReplicationAsync(PooldSettings settings, CancellationToken stop)
    {
        // Every node is asked at once, each within its own deadline, so one that does not answer delays no other.
        var probes = await Task.WhenAll(_registry.Current.Nodes.Where(n => n.Status != NodeStatus.Unused)
            .Select(n => ProbeReplicationAsync(n, settings, stop)));
        if (stop.IsCancellationRequested)
        {
            return;
        }

        var findings = new Dictionary<int, (bool InRecovery, ulong Lsn)>();
        List<string?[]> replication = [];
        foreach (var probe in probes)
        {
            if (probe.Finding is { } finding)
            {
                findings[probe.NodeId] = finding;
                replication = probe.Replication ?? replication;
            }
            else
            {
                _registry.UpdateReplication(probe.NodeId, NodeReplication.Unknown);
            }
        }

        // A primary promoted outside Poold (pg_ctl promote): follow it — unless Patroni's view is followed and readable
        // (while it is not, this check is what finds the primary).
        var ownView = RequestDiscovery is null || _registry.DiscoveryWarning is not null;
        List<int> primaries = ownView ? [.. findings.Where(f => !f.Value.InRecovery).Select(f => f.Key)] : [];
        var current = _registry.Current;
        if (primaries.Count == 1 && primaries[0] != current.PrimaryNodeId && current.Nodes[primaries[0]].Status != NodeStatus.Down)
        {
            _log.Warning("node {NodeId} reports itself primary: following it (was node {Old})", primaries[0], current.PrimaryNodeId);
            _registry.SetPrimary(primaries[0]);
        }
        else if (primaries.Count > 1 && settings.Get(Params.DetachFalsePrimary) && RequestDiscovery is null)
        {
            foreach (var extra in primaries.Where(p => p != current.PrimaryNodeId))
            {
                await FailoverAsync(extra, "false primary (detach_false_primary)", stop);
            }
        }

        current = _registry.Current;
        var primaryLsn = current.PrimaryNodeId >= 0 && findings.TryGetValue(current.PrimaryNodeId, out var p) ? p.Lsn : 0;
        var threshold = settings.Get(Params.DelayThreshold);
        var timeThreshold = settings.Get(Params.DelayThresholdByTime);
        foreach (var (id, (inRecovery, lsn)) in findings)
        {
            var name = settings.Get(Params.BackendApplicationName, id);
            var row = replication.FirstOrDefault(r => name.Length > 0 && r.Length >= 3 && r[0] == name);
            var delay = inRecovery && primaryLsn > lsn ? (long)(primaryLsn - lsn) : 0;
            var lagMs = row is { Length: >= 4 } && long.TryParse(row[3], CultureInfo.InvariantCulture, out var ms) ? ms : 0;
            var lagging = inRecovery && ((threshold > 0 && delay > threshold)
                                         || (timeThreshold > TimeSpan.Zero && lagMs > timeThreshold.TotalMilliseconds));
            _registry.UpdateReplication(id, new NodeReplication(inRecovery ? "standby" : "primary", delay, inRecovery ? row?[1] ?? "" : "",
                inRecovery ? row?[2] ?? "" : "", lagging));
            if (settings.Get(Params.LogStandbyDelayMode) == LogStandbyDelay.Always && inRecovery
                || threshold > 0 && delay > threshold && settings.Get(Params.LogStandbyDelayMode) == LogStandbyDelay.IfOverThreshold)
            {
                _log.Warning("replication delay of node {NodeId}: {Bytes} bytes", id, delay);
            }

            // auto_failback: a detached standby that streams again comes back.
            if (inRecovery && row?[1] == "streaming" && current.Nodes[id].Status == NodeStatus.Down && settings.Get(Params.AutoFailback))
            {
                var interval = settings.Get(Params.AutoFailbackInterval);
                var now = _time.GetTimestamp();
                if (!_lastFailback.TryGetValue(id, out var last) || _time.GetElapsedTime(last, now) >= interval)
                {
                    _lastFailback[id] = now;
                    _log.Warning("auto_failback: node {NodeId} streams again: attaching it", id);
                    _registry.Attach(id);
                    await RunCommandAsync("failback_command", settings.Get(Params.FailbackCommand), current.Nodes[id],
                        current.Nodes.FirstOrDefault(n => n.Status == NodeStatus.Up), current, stop);
                }
            }
        }
    }

    /// <summary>One node's recovery state and WAL position (and, on a primary, pg_stat_replication); no finding when it does not answer.</summary>
    private async Task<(int NodeId, (bool InRecovery, ulong Lsn)? Finding, List<string?[]>? Replication)> ProbeReplicationAsync(NodeState node,
        PooldSettings settings, CancellationToken stop)
    {
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
            deadline.CancelAfter(TimeSpan.FromSeconds(10));
            await using var connection = await ConnectAsync(node, settings.Get(Params.SrCheckUser), settings.Get(Params.SrCheckPassword),
                settings.Get(Params.SrCheckDatabase), settings, deadline.Token);
            var rows = await connection.QueryRowsAsync(
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END",
                deadline.Token);
            if (rows is not [[var recovery, var lsn, ..], ..])
            {
                return (node.Id, null, null);
            }

            var replication = recovery == "f"
                ? await connection.QueryRowsAsync("SELECT application_name, state, sync_state, COALESCE(EXTRACT(epoch FROM replay_lag) * 1000, 0)::bigint FROM pg_stat_replication", deadline.Token)
                : null;
            return (node.Id, (recovery == "t", ParseLsn(lsn)), replication);
        }
        catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException or OperationCanceledException
                                      or TimeoutException or PgProtocolException or ScramException)
        {
            return (node.Id, null, null);
        }
    }

    /// <summary>"X/Y" as a 64-bit WAL position (exact, unlike pgpool's approximation).</summary>
    internal static ulong ParseLsn(string? lsn)
    {
        if (lsn is null || lsn.IndexOf('/', StringComparison.Ordinal) is var slash && slash <= 0)
        {
            return 0;
        }

        return ulong.TryParse(lsn.AsSpan(0, slash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var high)
               && ulong.TryParse(lsn.AsSpan(slash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var low)
            ? (high << 32) | low
            : 0;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        await Task.WhenAll([.. _healthChecks.Values, _replicationCheck]);
        _stop.Dispose();
    }
}

/// <summary>
/// health_check_password / sr_check_password as pgpool-II resolves them: empty means the user's pool_passwd entry;
/// <c>AES…</c> is decrypted with the key; <c>md5…</c> is an md5 hash; <c>TEXT…</c> or anything else is the password.
/// </summary>
internal static class CheckCredentials
{
    public static StoredCredential? Resolve(string configured, string user, AuthFiles auth)
    {
        if (configured.Length == 0)
        {
            try
            {
                return auth.Passwords.Find(user)?.Resolve(auth.Key);
            }
            catch (PoolPasswdException)
            {
                return null;
            }
        }

        var entry = new PoolPasswdEntry(user, configured, "pgpool.conf", 0);
        try
        {
            return entry.Resolve(auth.Key);
        }
        catch (PoolPasswdException)
        {
            return null;
        }
    }
}
