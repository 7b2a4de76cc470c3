using Poold.Pooling;

namespace Poold.Sessions;

/// <summary>
/// The backend side's server connections: the session's link to each node it uses, which of them is the primary's,
/// and what other threads may see of them. Owned by the session's client side (the only writer); the reply pump reads
/// a link only through the reply entries queued on it, and other threads (a CancelRequest, SHOW POOL_PROCESSES, the
/// metrics) only the immutable lists published on every change. In session mode the set is filled at login and emptied
/// when the session ends; in transaction mode it is filled as a transaction needs nodes and emptied when the session
/// is quiet (<see cref="TakeAll"/>).
/// </summary>
internal sealed class BackendSet
{
    /// <summary>At most one link per node, and a session has a few nodes: a list searched in order beats a dictionary, in time and memory.</summary>
    private readonly List<NodeLink> _links = [];
    private IReadOnlyList<(int NodeId, int ProcessId)> _published = [];
    private CancelTarget[] _cancelTargets = [];

    /// <summary>The link to the primary, while the set holds one.</summary>
    public NodeLink? Primary { get; private set; }

    public int Count => _links.Count;

    public List<NodeLink> Links => _links;

    /// <summary>(node, backend pid) of every link, for other threads (SHOW POOL_PROCESSES, pcp_proc_info, the metrics).</summary>
    public IReadOnlyList<(int NodeId, int ProcessId)> Published => Volatile.Read(ref _published);

    /// <summary>Where a CancelRequest for this session goes now, for the thread that handles it.</summary>
    public CancelTarget[] CancelTargets => Volatile.Read(ref _cancelTargets);

    public bool TryGet(int nodeId, out NodeLink link)
    {
        var i = IndexOf(nodeId);
        link = i >= 0 ? _links[i] : null!;
        return i >= 0;
    }

    private int IndexOf(int nodeId)
    {
        for (var i = 0; i < _links.Count; i++)
        {
            if (_links[i].Connection.NodeId == nodeId)
            {
                return i;
            }
        }

        return -1;
    }

    public void Add(NodeLink link, bool primary = false)
    {
        var i = IndexOf(link.Connection.NodeId);
        if (i >= 0)
        {
            _links[i] = link;
        }
        else
        {
            _links.Add(link);
        }

        if (primary)
        {
            Primary = link;
        }

        Publish();
    }

    public void Remove(int nodeId)
    {
        var i = IndexOf(nodeId);
        if (i >= 0)
        {
            if (_links[i] == Primary)
            {
                Primary = null;
            }

            _links.RemoveAt(i);
        }

        Publish();
    }

    /// <summary>
    /// Empties the set (published at once, so a cancel that comes now finds nothing) and returns what it held: a list the
    /// set reuses, valid until the next call (only the set's owner calls it, and goes through the list before it calls again).
    /// </summary>
    public List<NodeLink> TakeAll()
    {
        _taken.Clear();
        _taken.AddRange(_links);
        _links.Clear();
        Primary = null;
        Publish();
        return _taken;
    }

    private readonly List<NodeLink> _taken = [];

    private void Publish()
    {
        if (_links.Count == 0)
        {
            Volatile.Write(ref _published, []);
            Volatile.Write(ref _cancelTargets, []);
            return;
        }

        if (_links.Count == 1)
        {
            // The usual case in transaction mode: the connection's own snapshot, made once for its life.
            Volatile.Write(ref _published, _links[0].Connection.PublishedAlone);
            Volatile.Write(ref _cancelTargets, _links[0].Connection.CancelTargetsAlone);
            return;
        }

        var published = new (int NodeId, int ProcessId)[_links.Count];
        var targets = new CancelTarget[_links.Count];
        var i = 0;
        foreach (var link in _links)
        {
            var connection = link.Connection;
            published[i] = (connection.NodeId, connection.ProcessId);
            targets[i++] = new CancelTarget(connection.Node, connection.ProcessId, connection.SecretKey);
        }

        if (published.Length > 1)
        {
            Array.Sort(published, static (a, b) => a.NodeId.CompareTo(b.NodeId));
        }

        Volatile.Write(ref _published, published);
        Volatile.Write(ref _cancelTargets, targets);
    }
}
