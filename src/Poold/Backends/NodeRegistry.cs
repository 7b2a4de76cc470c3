using System.Collections.Immutable;
using Poold.Config;

namespace Poold.Backends;

internal enum NodeStatus
{
    Unused,
    Waiting,
    Up,
    Down,
}

internal enum NodeRole
{
    Unknown,
    Primary,
    Standby,
}

/// <summary>What the streaming-replication check last learned from a node.</summary>
internal sealed record NodeReplication(string PgRole, long DelayBytes, string State, string SyncState, bool Lagging)
{
    public static NodeReplication Unknown { get; } = new("unknown", 0, "", "", false);
}

/// <summary>One node as the registry sees it at one moment.</summary>
internal sealed record NodeState(BackendSettings Settings, NodeStatus Status, NodeRole Role, DateTimeOffset LastStatusChange)
{
    public int Id => Settings.Id;

    public NodeReplication Replication { get; init; } = NodeReplication.Unknown;

    /// <summary>Patroni's <c>noloadbalance</c> tag (backend_discovery = patroni): the node gets no load-balanced reads.</summary>
    public bool NoLoadBalance { get; init; }
}

/// <summary>Health-check counters of one node (pcp_health_check_stats, SHOW POOL_HEALTH_CHECK_STATS).</summary>
internal sealed class HealthStats
{
    public long Total;
    public long Success;
    public long Fail;
    public long Skip;
    public long Retry;
    public long MaxRetry;
    public double MaxDurationMs;
    public double MinDurationMs;
    public double TotalDurationMs;
    public DateTimeOffset? LastCheck;
    public DateTimeOffset? LastSuccess;
    public DateTimeOffset? LastSkip;
    public DateTimeOffset? LastFailure;
}

/// <summary>An immutable picture of every node; readers take one and keep it for a decision.</summary>
internal sealed record NodeSnapshot(ImmutableArray<NodeState> Nodes, int PrimaryNodeId)
{
    public NodeState? Primary => PrimaryNodeId >= 0 ? Nodes[PrimaryNodeId] : null;

    /// <summary>
    /// Counts changes of the primary (failover, promotion, detach, following an external promotion). A session compares
    /// it with the value at its login: a different one means the node it writes to is no longer the primary.
    /// </summary>
    public long PrimaryGeneration { get; init; }

    /// <summary>This snapshot with <paramref name="primary"/> as the primary, counting a change.</summary>
    public NodeSnapshot WithPrimary(ImmutableArray<NodeState> nodes, int primary) =>
        new(nodes, primary) { PrimaryGeneration = primary == PrimaryNodeId ? PrimaryGeneration : PrimaryGeneration + 1 };
}

/// <summary>
/// The only writer of node status and role; everyone else reads <see cref="Current"/>. Until health checks and
/// primary discovery arrive, the primary is the node flagged ALWAYS_PRIMARY, else the lowest-numbered configured
/// node (pgpool-II's "main node").
/// </summary>
internal sealed class NodeRegistry
{
    private readonly object _write = new();
    private readonly TimeProvider _time;
    private NodeSnapshot _current;
    private readonly CancellationTokenSource[] _down = Enumerable.Range(0, Params.MaxNodeId + 1).Select(_ => new CancellationTokenSource()).ToArray();

    public NodeRegistry(PooldSettings settings, TimeProvider time)
    {
        _time = time;
        var now = time.GetUtcNow();
        var nodes = settings.Backends
            .Select(b => new NodeState(b, b.IsConfigured ? NodeStatus.Up : NodeStatus.Unused, NodeRole.Unknown, now))
            .ToImmutableArray();
        var primary = nodes.FirstOrDefault(n => n.Status == NodeStatus.Up && n.Settings.AlwaysPrimary)
            ?? nodes.FirstOrDefault(n => n.Status == NodeStatus.Up);
        nodes = [.. nodes.Select(n => n.Status == NodeStatus.Unused ? n : n with { Role = n.Id == primary?.Id ? NodeRole.Primary : NodeRole.Standby })];

        _current = new NodeSnapshot(nodes, primary?.Id ?? -1);
    }

    public NodeSnapshot Current => Volatile.Read(ref _current);

    /// <summary>Health-check counters, by node id.</summary>
    public HealthStats[] Health { get; } = Enumerable.Range(0, Params.MaxNodeId + 1).Select(_ => new HealthStats()).ToArray();

    /// <summary>Raised after a node's status or the primary changes (to persist pgpool_status, run commands).</summary>
    public event Action<NodeSnapshot>? Changed;

    /// <summary>Applies the node statuses saved in pgpool_status at start (down nodes stay down).</summary>
    public void Restore(IReadOnlyList<NodeStatus> saved)
    {
        lock (_write)
        {
            var nodes = _current.Nodes;
            for (var i = 0; i < saved.Count && i < nodes.Length; i++)
            {
                if (saved[i] == NodeStatus.Down && nodes[i].Status != NodeStatus.Unused)
                {
                    nodes = nodes.SetItem(i, nodes[i] with { Status = NodeStatus.Down });
                }
            }

            var primary = _current.PrimaryNodeId;
            if (primary >= 0 && nodes[primary].Status == NodeStatus.Down && nodes.FirstOrDefault(n => n.Status == NodeStatus.Up) is { } other)
            {
                nodes = nodes.SetItem(primary, nodes[primary] with { Role = NodeRole.Standby }).SetItem(other.Id, other with { Role = NodeRole.Primary });
                primary = other.Id;
            }

            Volatile.Write(ref _current, _current.WithPrimary(nodes, primary));
        }
    }

    /// <summary>Records the replication check's findings (no status change, no event).</summary>
    public void UpdateReplication(int id, NodeReplication replication)
    {
        lock (_write)
        {
            var current = _current;
            if (id >= 0 && id < current.Nodes.Length)
            {
                Volatile.Write(ref _current, current with { Nodes = current.Nodes.SetItem(id, current.Nodes[id] with { Replication = replication }) });
            }
        }
    }

    /// <summary>Records Patroni's <c>noloadbalance</c> tag for a node (no status change, no event).</summary>
    public void SetNoLoadBalance(int id, bool value)
    {
        lock (_write)
        {
            var current = _current;
            if (id >= 0 && id < current.Nodes.Length && current.Nodes[id].NoLoadBalance != value)
            {
                Volatile.Write(ref _current, current with { Nodes = current.Nodes.SetItem(id, current.Nodes[id] with { NoLoadBalance = value }) });
            }
        }
    }

    /// <summary>
    /// Set while the external source of truth (Patroni) cannot be read: the view shown is the last one it gave, kept
    /// up to date only by Poold's own checks. Null when there is nothing to say.
    /// </summary>
    public string? DiscoveryWarning
    {
        get => Volatile.Read(ref _discoveryWarning);
        set => Volatile.Write(ref _discoveryWarning, value);
    }

    private string? _discoveryWarning;

    /// <summary>Makes a node the primary after a failover or an external promotion (no checks beyond the node being up).</summary>
    public void SetPrimary(int id)
    {
        lock (_write)
        {
            var current = _current;
            if (current.PrimaryNodeId == id)
            {
                return;
            }

            var nodes = current.Nodes;
            var now = _time.GetUtcNow();
            if (current.PrimaryNodeId >= 0)
            {
                nodes = nodes.SetItem(current.PrimaryNodeId, nodes[current.PrimaryNodeId] with { Role = NodeRole.Standby, LastStatusChange = now });
            }

            if (id >= 0)
            {
                nodes = nodes.SetItem(id, nodes[id] with { Role = NodeRole.Primary, LastStatusChange = now });
            }

            Volatile.Write(ref _current, current.WithPrimary(nodes, id));
        }

        Changed?.Invoke(Current);
    }

    /// <summary>Marks a node down (pcp_detach_node): it gets no new sessions or reads. Returns an error message, or null.</summary>
    public string? Detach(int id) => Change(id, node => node.Status == NodeStatus.Down ? null : node with { Status = NodeStatus.Down });

    /// <summary>
    /// Marks a node down unless it already is, atomically: true for the one caller that did it, so a failure seen at
    /// once by the health check and by a session is failed over once.
    /// </summary>
    public bool TryDetach(int id)
    {
        var detached = false;
        Change(id, node =>
        {
            if (node.Status == NodeStatus.Down)
            {
                return null;
            }

            detached = true;
            return node with { Status = NodeStatus.Down };
        });
        return detached;
    }

    /// <summary>Marks a node up again (pcp_attach_node).</summary>
    public string? Attach(int id) => Change(id, node => node.Status == NodeStatus.Up ? null : node with { Status = NodeStatus.Up });

    /// <summary>Makes a node the primary in Poold's view (pcp_promote_node); the former primary becomes a standby.</summary>
    public string? Promote(int id)
    {
        lock (_write)
        {
            var current = _current;
            if (id < 0 || id >= current.Nodes.Length || current.Nodes[id].Status == NodeStatus.Unused)
            {
                return $"invalid node ID : {id}";
            }

            if (current.PrimaryNodeId == id)
            {
                return $"specified node is already primary node, can't promote node id {id}";
            }

            if (current.Nodes[id].Status == NodeStatus.Down)
            {
                return $"node {id} is down: attach it before promoting it";
            }

            var now = _time.GetUtcNow();
            var nodes = current.Nodes;
            if (current.PrimaryNodeId >= 0)
            {
                nodes = nodes.SetItem(current.PrimaryNodeId, nodes[current.PrimaryNodeId] with { Role = NodeRole.Standby, LastStatusChange = now });
            }

            nodes = nodes.SetItem(id, nodes[id] with { Role = NodeRole.Primary, LastStatusChange = now });
            Volatile.Write(ref _current, current.WithPrimary(nodes, id));
        }

        Changed?.Invoke(Current);
        return null;
    }

    private string? Change(int id, Func<NodeState, NodeState?> change)
    {
        bool wentDown;
        lock (_write)
        {
            var current = _current;
            if (id < 0 || id >= current.Nodes.Length || current.Nodes[id].Status == NodeStatus.Unused)
            {
                return $"invalid node ID : {id}";
            }

            if (change(current.Nodes[id]) is not { } changed)
            {
                return null;
            }

            var nodes = current.Nodes.SetItem(id, changed with { LastStatusChange = _time.GetUtcNow() });
            Volatile.Write(ref _current, changed.Status == NodeStatus.Down && id == current.PrimaryNodeId
                ? current.WithPrimary(nodes.SetItem(id, nodes[id] with { Role = NodeRole.Standby }), -1) // a primary that is down is no primary
                : current with { Nodes = nodes });
            wentDown = changed.Status == NodeStatus.Down && current.Nodes[id].Status != NodeStatus.Down;
        }

        if (wentDown)
        {
            // Statements in flight on the node (a hung server answers nothing) are cut off now, not when it wakes up.
            var gone = Interlocked.Exchange(ref _down[id], new CancellationTokenSource());
            gone.Cancel();
        }

        Changed?.Invoke(Current);
        return null;
    }

    /// <summary>
    /// Cancelled when node <paramref name="id"/> goes down (detached by a health check, a failover or pcp_detach_node):
    /// a session registers its connection to the node on it, so a statement waiting on a hung server ends at once.
    /// A node that comes back gets a new token.
    /// </summary>
    public CancellationToken DownToken(int id) => Volatile.Read(ref _down[id]).Token;
}
