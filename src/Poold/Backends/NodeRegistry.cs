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

/// <summary>One node as the registry sees it at one moment.</summary>
internal sealed record NodeState(BackendSettings Settings, NodeStatus Status, NodeRole Role, DateTimeOffset LastStatusChange)
{
    public int Id => Settings.Id;
}

/// <summary>An immutable picture of every node; readers take one and keep it for a decision.</summary>
internal sealed record NodeSnapshot(ImmutableArray<NodeState> Nodes, int PrimaryNodeId)
{
    public NodeState? Primary => PrimaryNodeId >= 0 ? Nodes[PrimaryNodeId] : null;
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

    /// <summary>Marks a node down (pcp_detach_node): it gets no new sessions or reads. Returns an error message, or null.</summary>
    public string? Detach(int id) => Change(id, node => node.Status == NodeStatus.Down ? null : node with { Status = NodeStatus.Down });

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
            Volatile.Write(ref _current, new NodeSnapshot(nodes, id));
            return null;
        }
    }

    private string? Change(int id, Func<NodeState, NodeState?> change)
    {
        lock (_write)
        {
            var current = _current;
            if (id < 0 || id >= current.Nodes.Length || current.Nodes[id].Status == NodeStatus.Unused)
            {
                return $"invalid node ID : {id}";
            }

            if (change(current.Nodes[id]) is { } changed)
            {
                Volatile.Write(ref _current, current with { Nodes = current.Nodes.SetItem(id, changed with { LastStatusChange = _time.GetUtcNow() }) });
            }

            return null;
        }
    }
}
