namespace Poold.Backends;

/// <summary>
/// <c>logdir/pgpool_status</c> in pgpool-II's text format (compat §8.7): one line per backend slot, <c>up</c>,
/// <c>down</c> or <c>unused</c>. Written on every status change (not when every node is down, so the last good state
/// survives); read at start so detached nodes stay detached; <c>-D</c> discards it.
/// </summary>
internal static class NodeStatusFile
{
    public const string FileName = "pgpool_status";

    public static IReadOnlyList<NodeStatus>? Read(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var statuses = new List<NodeStatus>();
        foreach (var line in File.ReadAllLines(path))
        {
            var word = line.Trim().ToLowerInvariant();
            statuses.Add(word.StartsWith("down", StringComparison.Ordinal) ? NodeStatus.Down
                : word.StartsWith("unused", StringComparison.Ordinal) ? NodeStatus.Unused
                : NodeStatus.Up);
        }

        // A file without any "up" is taken as bogus, as pgpool-II does.
        return statuses.Contains(NodeStatus.Up) ? statuses : null;
    }

    public static void Write(string path, NodeSnapshot nodes)
    {
        if (!nodes.Nodes.Any(n => n.Status is NodeStatus.Up or NodeStatus.Waiting))
        {
            return;
        }

        var text = string.Concat(nodes.Nodes.Select(n => n.Status switch
        {
            NodeStatus.Down => "down\n",
            NodeStatus.Unused => "unused\n",
            _ => "up\n",
        }));
        var temp = path + ".tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }
}
