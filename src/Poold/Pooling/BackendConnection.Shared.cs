namespace Poold.Pooling;

/// <summary>
/// What a server connection carries from one client to the next in a transaction-mode pool (<c>pool_mode =
/// transaction</c>): the session state that was set on it and the named prepared statements that exist on it. Only the
/// session that has the connection checked out reads or writes these; the pool never looks at them.
/// </summary>
internal sealed partial class BackendConnection
{
    /// <summary>Counted against a transaction-mode pool (default_pool_size, max_db_connections) rather than num_init_children × max_pool.</summary>
    public bool Shared { get; set; }

    /// <summary>
    /// The session state the last client left on this connection, as the SET commands that made it ("" = as opened,
    /// nothing set). A client whose own state text is the same takes the connection as it is; another resets it first.
    /// </summary>
    public string AppliedState { get; set; } = "";

    /// <summary>Named prepared statements that exist on this server connection: name → the Parse frame that made it.</summary>
    public Dictionary<string, ServerStatement> Prepared { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// A batch with a Parse failed on this connection: which of its statements exist is not known for sure, so the next
    /// client drops them all (DEALLOCATE ALL) before it relies on any.
    /// </summary>
    public bool PreparedUncertain { get; set; }

    /// <summary>
    /// This connection as a session's only one, the way the session publishes it to other threads (SHOW POOL_PROCESSES,
    /// a CancelRequest): immutable one-element snapshots made once, so binding it transaction after transaction allocates
    /// nothing. Read only by the session that has the connection checked out.
    /// </summary>
    public (int NodeId, int ProcessId)[] PublishedAlone => _publishedAlone ??= [(NodeId, ProcessId)];

    private (int NodeId, int ProcessId)[]? _publishedAlone;

    /// <inheritdoc cref="PublishedAlone"/>
    public CancelTarget[] CancelTargetsAlone => _cancelTargetsAlone ??= [new CancelTarget(Node, ProcessId, SecretKey)];

    private CancelTarget[]? _cancelTargetsAlone;
}

/// <summary>Where a CancelRequest for a session goes: a node and the backend's key there.</summary>
internal readonly record struct CancelTarget(Config.BackendSettings Node, int ProcessId, int SecretKey);

/// <summary>A named statement on a server connection: the client's Parse frame, and when a batch last used it (LRU).</summary>
internal sealed class ServerStatement(byte[] parseFrame, long lastUsed)
{
    public byte[] ParseFrame { get; } = parseFrame;

    public long LastUsed { get; set; } = lastUsed;
}
