using System.Security.Authentication;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>
/// What a session tells the metrics (<see cref="Metrics.PooldMetrics"/>) and <c>PGPOOL EXPLAIN ROUTE</c>: the reason
/// behind the load-balance node, the bytes relayed, the latency of each batch, why a login failed.
/// </summary>
internal sealed partial class ClientSession
{
    /// <summary>Bytes of client messages read after login (written by the client pump only).</summary>
    private long _bytesIn;

    public long BytesIn => Volatile.Read(ref _bytesIn);

    public long BytesOut => _output.Bytes;

    /// <summary>The backend connections this session holds (node, backend pid), readable from other threads.</summary>
    public IReadOnlyList<(int NodeId, int ProcessId)> Backends => _backendSide.Backends;

    public int BalanceNodeId => _backendSide.BalanceNodeId;

    /// <summary>pgpool's process status words.</summary>
    public string StatusText => _backendSide.StatusText;

    /// <summary>Whether the session is in transaction mode (SHOW POOL_PROCESSES, the metrics).</summary>
    public bool TransactionMode => _backendSide.TransactionMode;

    /// <summary>Waiting for a server connection (transaction mode, all of the pool's busy).</summary>
    public bool WaitingForServer => _backendSide.WaitingForServer;

    /// <summary>Why the session is pinned to its connections (null when it is not, or in session mode).</summary>
    public string? PinnedBy => _backendSide.PinnedBy;

    /// <summary>
    /// <c>PGPOOL EXPLAIN ROUTE statement</c>: where the statement would go now in this session, and the rule and reason
    /// that decide (<see cref="BackendSide.ExplainRoute"/>).
    /// </summary>
    public (int NodeId, string Rule, string Reason) ExplainRoute(string statement) => _backendSide.ExplainRoute(statement);

    /// <summary>The session's end, for the metrics: a login that failed (by reason, never by user), a TLS handshake that failed.</summary>
    private void CountFailure(Exception e)
    {
        if (_services.Metrics is not { } metrics || _cancelProcessId != 0)
        {
            return;
        }

        if (e is AuthenticationException && !_clientIsTls)
        {
            metrics.TlsHandshake(succeeded: false);
        }

        if (_startup is null)
        {
            // Closed before a startup packet (a port check, a failed TLS handshake, a cancel request): no login was tried.
            return;
        }

        metrics.LoginFailed(LoginFailureReason(e));
    }

    internal static string LoginFailureReason(Exception e) => e switch
    {
        ClientFatalException { SqlState: SqlState.InvalidPassword } => "password",
        ClientFatalException { SqlState: SqlState.InvalidAuthorizationSpecification } => "rejected",
        ClientFatalException { SqlState: SqlState.TooManyConnections } => "too many clients",
        ClientFatalException { SqlState: SqlState.ConnectionFailure } f when f.Message.StartsWith("canceling authentication due to timeout", StringComparison.Ordinal)
            => "timeout",
        BackendRejectedException { SqlState: SqlState.InvalidPassword } => "password",
        BackendRejectedException { SqlState: SqlState.InvalidAuthorizationSpecification } => "rejected",
        BackendRejectedException => "backend refused",
        BackendException => "backend unavailable",
        PgProtocolException => "protocol violation",
        IOException or System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException or ClientGoneException
            => "client disconnected",
        _ => "other",
    };
}
