using Poold.Backends;
using Poold.Routing;
using Prometheus;

namespace Poold.Metrics;

/// <summary>What the host knows at scrape time: the node registry's snapshot, the session list and the pool, summed up.</summary>
internal sealed record ScrapeState(
    NodeSnapshot Nodes,
    HealthStats[] Health,
    Pcp.NodeCounters Counters,
    ClientCounts Clients,
    int[] ServerActive,
    int[] ServerIdle,
    long BytesIn,
    long BytesOut,
    long Failovers);

/// <summary>Client connections by state, counted from the session list when scraped.</summary>
internal readonly record struct ClientCounts(int Active, int Idle, int IdleInTransaction, int Waiting, int Starting);

/// <summary>
/// Poold's Prometheus metrics (README "Metrics"), in a registry of the host's own (never the process-wide default, so
/// two hosts in one process count apart). Most values are read when scraped from state Poold keeps anyway (the node
/// registry, the session list, the pool, the per-node statement counters); the few counted on the way are lock-free and
/// allocation-free: label children are bound up front and looked up by index.
/// </summary>
internal sealed class PooldMetrics
{
    /// <summary>Login failure reasons, the values of <c>poold_login_failures_total{reason}</c> (never a user name).</summary>
    public static readonly string[] LoginFailureReasons =
    [
        "password", "rejected", "too many clients", "timeout", "backend refused", "backend unavailable", "protocol violation",
        "client disconnected", "other",
    ];

    /// <summary>Health checks: a login round trip, from a millisecond on loopback to health_check_timeout (20 s by default).</summary>
    private static readonly double[] HealthCheckBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30];

    private static readonly double[] LatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private readonly Counter.Child[][] _routed;
    private readonly Histogram.Child[] _latency;
    private readonly Histogram _poolWait;
    private readonly Counter _loginOk;
    private readonly Counter _pinned;
    private readonly Counter.Child[] _loginFailed;
    private readonly Counter.Child _tlsOk;
    private readonly Counter.Child _tlsFailed;

    private readonly Gauge _clients;
    private readonly Gauge _serverConnections;
    private readonly Counter _statements;
    private readonly Gauge _nodeStatus;
    private readonly Gauge _nodePrimary;
    private readonly Gauge _replicationDelay;
    private readonly Gauge _lagging;
    private readonly Counter _healthChecks;
    private readonly Counter _healthRetries;
    private readonly Histogram.Child[] _healthDuration;
    private readonly Gauge _healthMaxDuration;
    private readonly Gauge _healthLastSuccess;
    private readonly Counter _failovers;
    private readonly Counter _primaryChanges;
    private readonly Counter _bytesIn;
    private readonly Counter _bytesOut;
    private readonly Func<ScrapeState>? _source;
    private long _endedBytesIn;
    private long _endedBytesOut;

    /// <param name="nodeCount">Nodes 0 … nodeCount-1 get bound label children.</param>
    /// <param name="source">The host's state, read before each scrape (null: only the counted metrics).</param>
    public PooldMetrics(int nodeCount, Func<ScrapeState>? source)
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        _source = source;
        var nodes = Enumerable.Range(0, Math.Max(nodeCount, 0)).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        NodeCount = nodes.Length;

        var routed = factory.CreateCounter("poold_routing_decisions_total", "Statements (batches) routed, by node and the rule that decided.",
            ["node", "rule"]);
        _routed = [.. nodes.Select(n => RouteRules.All.Select(r => routed.WithLabels(n, r)).ToArray())];
        var latency = factory.CreateHistogram("poold_statement_duration_seconds",
            "Time from sending a batch to a node to its ReadyForQuery, by node.", ["node"], new HistogramConfiguration { Buckets = LatencyBuckets });
        _latency = [.. nodes.Select(n => latency.WithLabels(n))];
        _poolWait = factory.CreateHistogram("poold_pool_wait_seconds",
            "Time an authenticated client waited for a session slot (num_init_children).", new HistogramConfiguration { Buckets = LatencyBuckets });
        _loginOk = factory.CreateCounter("poold_login_successes_total", "Client logins that completed.");
        _pinned = factory.CreateCounter("poold_sessions_pinned_total",
            "Transaction-mode sessions pinned to their server connections by a statement whose effect outlives the transaction.");
        var failed = factory.CreateCounter("poold_login_failures_total", "Client logins that failed, by reason.", ["reason"]);
        _loginFailed = [.. LoginFailureReasons.Select(r => failed.WithLabels(r))];
        var tls = factory.CreateCounter("poold_tls_handshakes_total", "Client TLS handshakes, by result.", ["result"]);
        _tlsOk = tls.WithLabels("success");
        _tlsFailed = tls.WithLabels("failure");

        _clients = factory.CreateGauge("poold_clients", "Client connections by state (active, idle, idle_in_transaction, waiting, starting).",
            ["state"]);
        _serverConnections = factory.CreateGauge("poold_server_connections", "Backend connections Poold holds, by node and state (active, idle).",
            ["node", "state"]);
        _statements = factory.CreateCounter("poold_statements_total", "Statements sent to a node, by node and kind (read, write, other).",
            ["node", "kind"]);
        _nodeStatus = factory.CreateGauge("poold_node_status", "1 for the node's current status (up, waiting, down, unused), else 0.",
            ["node", "status"]);
        _nodePrimary = factory.CreateGauge("poold_node_primary", "1 when the node is the primary, 0 when it is a standby.", ["node"]);
        _replicationDelay = factory.CreateGauge("poold_replication_delay_bytes", "Replication delay of the node behind the primary, in bytes.",
            ["node"]);
        _lagging = factory.CreateGauge("poold_replication_lagging", "1 when the node is over delay_threshold and gets no reads.", ["node"]);
        _healthChecks = factory.CreateCounter("poold_health_checks_total", "Health checks by node and result (success, failure, skip).",
            ["node", "result"]);
        _healthRetries = factory.CreateCounter("poold_health_check_retries_total", "Health check retries by node.", ["node"]);
        var healthDuration = factory.CreateHistogram("poold_health_check_duration_seconds", "Duration of each health check (login round trip), by node.",
            ["node"], new HistogramConfiguration { Buckets = HealthCheckBuckets });
        _healthDuration = [.. nodes.Select(n => healthDuration.WithLabels(n))];
        _healthMaxDuration = factory.CreateGauge("poold_health_check_duration_max_seconds", "Longest health check so far, by node.", ["node"]);
        _healthLastSuccess = factory.CreateGauge("poold_health_check_last_success_timestamp_seconds",
            "Unix time of the node's last successful health check (0: none yet).", ["node"]);
        _failovers = factory.CreateCounter("poold_failovers_total", "Failovers Poold ran (a node detached by the health check, an error or PCP).");
        _primaryChanges = factory.CreateCounter("poold_primary_changes_total", "Times the primary node changed (failover, promotion, detach).");
        _bytesIn = factory.CreateCounter("poold_client_bytes_received_total", "Bytes of protocol messages received from clients after login.");
        _bytesOut = factory.CreateCounter("poold_client_bytes_sent_total", "Bytes sent to clients after login.");
        if (source is not null)
        {
            Registry.AddBeforeCollectCallback(Collect);
        }
    }

    public CollectorRegistry Registry { get; }

    public int NodeCount { get; }

    // ---- counted on the way (lock-free, no allocation) ----

    /// <summary>A health check of <paramref name="nodeId"/> took <paramref name="seconds"/> (success or failure).</summary>
    public void HealthCheckTimed(int nodeId, double seconds)
    {
        if ((uint)nodeId < (uint)_healthDuration.Length)
        {
            _healthDuration[nodeId].Observe(seconds);
        }
    }

    /// <summary>A statement (batch) went to <paramref name="nodeId"/> under the rule behind <paramref name="reason"/>.</summary>
    public void Routed(int nodeId, string reason)
    {
        if ((uint)nodeId < (uint)_routed.Length)
        {
            _routed[nodeId][RuleIndex(reason)].Inc();
        }
    }

    /// <summary>Reason texts seen so far and their rule's index: most reasons are constants or cached verdicts.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _rules = new(StringComparer.Ordinal);

    private int _rulesCount;

    private const int MaxRules = 4096;

    private int RuleIndex(string reason)
    {
        if (_rules.TryGetValue(reason, out var index))
        {
            return index;
        }

        // Reasons that name a function or a table vary; past the bound they are mapped each time (no allocation either).
        index = RouteRules.IndexOf(reason);
        if (Volatile.Read(ref _rulesCount) < MaxRules && _rules.TryAdd(reason, index))
        {
            Interlocked.Increment(ref _rulesCount);
        }

        return index;
    }

    /// <summary>A batch on <paramref name="nodeId"/> got its ReadyForQuery <paramref name="elapsed"/> after it was sent.</summary>
    public void StatementDone(int nodeId, TimeSpan elapsed)
    {
        if ((uint)nodeId < (uint)_latency.Length)
        {
            _latency[nodeId].Observe(elapsed.TotalSeconds);
        }
    }

    public void PoolWaited(TimeSpan waited) => _poolWait.Observe(waited.TotalSeconds);

    public void LoginSucceeded() => _loginOk.Inc();

    public void SessionPinned() => _pinned.Inc();

    /// <summary>A failed login; <paramref name="reason"/> is one of <see cref="LoginFailureReasons"/> (else counted as "other").</summary>
    public void LoginFailed(string reason)
    {
        var i = Array.IndexOf(LoginFailureReasons, reason);
        _loginFailed[i >= 0 ? i : ^1].Inc();
    }

    public void TlsHandshake(bool succeeded) => (succeeded ? _tlsOk : _tlsFailed).Inc();

    /// <summary>A session ended: its byte counts move from the live sessions' sum to the total.</summary>
    public void SessionEnded(long bytesIn, long bytesOut)
    {
        Interlocked.Add(ref _endedBytesIn, bytesIn);
        Interlocked.Add(ref _endedBytesOut, bytesOut);
    }

    // ---- read when scraped ----

    private static readonly (NodeStatus Status, string Name)[] Statuses =
        [(NodeStatus.Up, "up"), (NodeStatus.Waiting, "waiting"), (NodeStatus.Down, "down"), (NodeStatus.Unused, "unused")];

    private void Collect()
    {
        var state = _source!();
        _clients.WithLabels("active").Set(state.Clients.Active);
        _clients.WithLabels("idle").Set(state.Clients.Idle);
        _clients.WithLabels("idle_in_transaction").Set(state.Clients.IdleInTransaction);
        _clients.WithLabels("waiting").Set(state.Clients.Waiting);
        _clients.WithLabels("starting").Set(state.Clients.Starting);
        foreach (var node in state.Nodes.Nodes)
        {
            if (node.Status == NodeStatus.Unused)
            {
                continue;
            }

            var id = node.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
            _serverConnections.WithLabels(id, "active").Set(node.Id < state.ServerActive.Length ? state.ServerActive[node.Id] : 0);
            _serverConnections.WithLabels(id, "idle").Set(node.Id < state.ServerIdle.Length ? state.ServerIdle[node.Id] : 0);
            var counts = state.Counters.Get(node.Id);
            _statements.WithLabels(id, "read").IncTo(Volatile.Read(ref counts.Select));
            _statements.WithLabels(id, "write").IncTo(Volatile.Read(ref counts.Insert) + Volatile.Read(ref counts.Update)
                                                     + Volatile.Read(ref counts.Delete) + Volatile.Read(ref counts.Ddl));
            _statements.WithLabels(id, "other").IncTo(Volatile.Read(ref counts.Other));
            foreach (var (status, name) in Statuses)
            {
                _nodeStatus.WithLabels(id, name).Set(node.Status == status ? 1 : 0);
            }

            _nodePrimary.WithLabels(id).Set(node.Id == state.Nodes.PrimaryNodeId ? 1 : 0);
            _replicationDelay.WithLabels(id).Set(node.Replication.DelayBytes);
            _lagging.WithLabels(id).Set(node.Replication.Lagging ? 1 : 0);
            if (node.Id < state.Health.Length && state.Health[node.Id] is { } health)
            {
                lock (health)
                {
                    _healthChecks.WithLabels(id, "success").IncTo(health.Success);
                    _healthChecks.WithLabels(id, "failure").IncTo(health.Fail);
                    _healthChecks.WithLabels(id, "skip").IncTo(health.Skip);
                    _healthRetries.WithLabels(id).IncTo(health.Retry);
                    _healthMaxDuration.WithLabels(id).Set(health.MaxDurationMs / 1000);
                    _healthLastSuccess.WithLabels(id).Set(health.LastSuccess?.ToUnixTimeMilliseconds() / 1000.0 ?? 0);
                }
            }
        }

        _failovers.IncTo(state.Failovers);
        _primaryChanges.IncTo(state.Nodes.PrimaryGeneration);
        _bytesIn.IncTo(state.BytesIn + Volatile.Read(ref _endedBytesIn));
        _bytesOut.IncTo(state.BytesOut + Volatile.Read(ref _endedBytesOut));
    }
}
