using System.Security.Authentication;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// What a session tells the metrics (<see cref="Metrics.PooldMetrics"/>) and <c>PGPOOL EXPLAIN ROUTE</c>: the reason
/// behind the load-balance node, the bytes relayed, the latency of each batch, why a login failed.
/// </summary>
internal sealed partial class ClientSession
{
    private const string DelayedToPrimary = RouteRules.DelayThresholdReason + ": the primary";
    private const string DelayedRedrawn = RouteRules.DelayThresholdReason + ": another node drawn (prefer_lower_delay_standby)";
    private const string UnavailableRedrawn = RouteRules.UnavailableReason + ": another node drawn";
    private const string UnavailableToPrimary = RouteRules.UnavailableReason + ": the primary";

    /// <summary>Why <see cref="_balanceNodeId"/> is the load-balance node (the balancer's words: by weight, redirect preference …).</summary>
    private string _balanceWhy = "by weight";

    /// <summary>Bytes of client messages read after login (written by the client pump only).</summary>
    private long _bytesIn;

    /// <summary>Bytes written to the client after login (written by the reply pump only).</summary>
    private long _bytesOut;

    public long BytesIn => Volatile.Read(ref _bytesIn);

    public long BytesOut => Volatile.Read(ref _bytesOut);

    /// <summary>
    /// <c>PGPOOL EXPLAIN ROUTE statement</c>: where the statement would go now in this session, and the rule and reason
    /// that decide, computed exactly as a real statement's route but without running it or changing the session's state
    /// (with statement_level_load_balance, the draw it makes is the session's next one).
    /// </summary>
    public (int NodeId, string Rule, string Reason) ExplainRoute(string statement)
    {
        var c = QueryClassifier.Classify(statement, _services.Routing);
        int nodeId;
        string reason;
        lock (_routingLock)
        {
            (nodeId, reason) = ChooseForStatements(new ReadOnlySpan<Classification>(ref c), forced: null);
        }

        (nodeId, reason) = ExplainReadYourWrites(nodeId, reason);
        var rule = RouteRules.Of(reason);
        return (nodeId, rule, RouteRules.IsBalanceRule(rule) || rule == RouteRules.SessionState ? $"{c.Reason}: {reason}" : reason);
    }

    private void ObserveLatency(ReplyEntry entry)
    {
        if (entry.Relay && entry.SentAt != 0 && _services.Metrics is { } metrics)
        {
            metrics.StatementDone(entry.Link.Connection.NodeId, _services.Time.GetElapsedTime(entry.SentAt));
        }
    }

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
