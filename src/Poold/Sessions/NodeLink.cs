using Poold.Pooling;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>A backend connection as this session uses it.</summary>
internal sealed class NodeLink(BackendConnection connection)
{
    public BackendConnection Connection { get; } = connection;

    /// <summary>Requests sent whose ReadyForQuery has not been read.</summary>
    public int Pending;

    /// <summary>The connection failed under a statement: it is dropped before the session's next batch.</summary>
    public volatile bool Dead;

    /// <summary>
    /// Transaction mode: the client's requests sent on this binding of the connection in the open transaction block (or
    /// since the session was pinned). The connection moves to the client's event thread at the second (see
    /// <c>BackendSide.Enqueue</c>). Written by the client pump only.
    /// </summary>
    public int Relayed;

    /// <summary>When a request was last sent on it (a standby idle a few milliseconds is checked before reuse).</summary>
    public long LastUsed;

    /// <summary>
    /// Bytes of a frame the reply pump has consumed only in part, as of its last <c>AdvanceTo</c>: where a drain must
    /// resume so it never parses from the middle of a frame. Written by the reply pump only.
    /// </summary>
    public long FrameRemaining;

    private volatile bool _transactionOpen;

    /// <summary>
    /// Whether a transaction is open on this connection: predicted when Poold sends a statement that opens or ends
    /// one (so pipelined batches route right), and overwritten by the server's own ReadyForQuery status whenever
    /// that answers the last request sent here (the reply pump, at ReadyForQuery).
    /// </summary>
    public bool TransactionOpen
    {
        get => _transactionOpen;
        set => _transactionOpen = value;
    }

    public int AppliedHistory { get; set; }

    /// <summary>The number of the last setting of the open transaction run here (<see cref="TransactionStatements.LastSetting"/>).</summary>
    public long TransactionSettingsSeen { get; set; }

    /// <summary>
    /// Transaction mode: the last request sent here was the client's own BEGIN, which opened the transaction on this
    /// connection, and nothing has run in that transaction since (so it has taken no snapshot). A standby in that state
    /// is given back before the session waits for the primary (<c>BackendSide.GiveBackUnusedStandbyAsync</c>).
    /// </summary>
    public bool OnlyBegun { get; set; }

    /// <summary>Transaction mode: the connection's statements are uncertain; DEALLOCATE ALL before it is relied on.</summary>
    public bool DropAllStatements { get; set; }

    /// <summary>An ErrorResponse came back on this connection while bound (written by the reply pump).</summary>
    public volatile bool SawError;

    /// <summary>
    /// A Parse ran on this connection while bound, or a Close Poold put ahead of a later part of a batch: after an error
    /// (which may have made the server skip them) its statements are not trusted, and its next client drops them all.
    /// </summary>
    public bool ParsedSinceBound { get; set; }

    /// <summary>Named prepared statements that exist on this connection (made at first use: most transactions bind none).</summary>
    public HashSet<string> Statements => _statements ??= new(StringComparer.Ordinal);

    private HashSet<string>? _statements;

    /// <summary>Statements the client closed elsewhere that still exist here: closed before this connection's next batch.</summary>
    public HashSet<string> StaleStatements => _staleStatements ??= new(StringComparer.Ordinal);

    private HashSet<string>? _staleStatements;

    /// <summary>Whether <see cref="StaleStatements"/> has any, without making the set.</summary>
    public bool HasStaleStatements => _staleStatements is { Count: > 0 };

    /// <summary>The node was detached (a hung or dead server): a statement waiting on it ends with an error at once.</summary>
    public bool NodeDown => _nodeDown;

    private volatile bool _nodeDown;

    private CancellationTokenRegistration _downRegistration;

    /// <summary>Watches the node's status: when it goes down, the reply pump's read on this connection is woken.</summary>
    public void WatchNode(CancellationToken nodeDown) =>
        _downRegistration = nodeDown.UnsafeRegister(static state => ((NodeLink)state!).OnNodeDown(), this);

    public void StopWatching() => _downRegistration.Dispose();

    private void OnNodeDown()
    {
        _nodeDown = true;
        Connection.Reader.CancelPendingRead();
    }

    public override string ToString() => $"node {Connection.NodeId}";
}

/// <summary>A named statement the client parsed: its Parse frame (to parse it again elsewhere) and its classification.</summary>
internal sealed record PreparedStatement(string Name, byte[] ParseFrame, Classification Classification)
{
    /// <summary>
    /// Its Parse is sent but not yet answered: the server may still refuse it (see <see cref="StatementRegistry.Settle"/>).
    /// Kept by the registry's owner, the session's client side.
    /// </summary>
    public bool Unconfirmed { get; set; }

    /// <summary>The server refused its Parse: it never existed.</summary>
    public bool Refused { get; set; }
}

/// <summary>One SET/RESET/DISCARD of the session, replayed on connections that join later (<paramref name="Key"/> null for resets).</summary>
internal sealed record HistoryEntry(string? Key, string Sql, byte[] Frame, bool DropsStatements, bool FromStartup = false);

/// <summary>One message of an extended-protocol batch; <see cref="Query"/> only where the text is needed (session state, transaction control, pool commands).</summary>
internal readonly record struct BatchMessage(byte Code, string Name, string StatementName, Classification? Classification, string? Query = null);
