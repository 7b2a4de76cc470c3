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
    private NodeSnapshot _current;

    public NodeRegistry(PooldSettings settings, TimeProvider time)
    {
        var now = time.GetUtcNow();
        var nodes = settings.Backends
            .Select(b => new NodeState(b, b.IsConfigured ? NodeStatus.Up : NodeStatus.Unused, NodeRole.Unknown, now))
            .ToImmutableArray();
        var primary = nodes.FirstOrDefault(n => n.Status == NodeStatus.Up && n.Settings.AlwaysPrimary)
            ?? nodes.FirstOrDefault(n => n.Status == NodeStatus.Up);
        if (primary is not null)
        {
            nodes = nodes.SetItem(primary.Id, primary with { Role = NodeRole.Primary });
        }

        _current = new NodeSnapshot(nodes, primary?.Id ?? -1);
    }

    public NodeSnapshot Current => Volatile.Read(ref _current);
}
