using Poold.Routing;

namespace Poold.Sessions;

/// <summary>What the backend side tells the metrics and <c>PGPOOL EXPLAIN ROUTE</c>: the reason behind the load-balance node, the latency of each batch.</summary>
internal sealed partial class BackendSide
{
    private const string DelayedToPrimary = RouteRules.DelayThresholdReason + ": the primary";
    private const string DelayedRedrawn = RouteRules.DelayThresholdReason + ": another node drawn (prefer_lower_delay_standby)";
    private const string UnavailableRedrawn = RouteRules.UnavailableReason + ": another node drawn";
    private const string UnavailableToPrimary = RouteRules.UnavailableReason + ": the primary";

    /// <summary>Why <see cref="_balanceNodeId"/> is the load-balance node (the balancer's words: by weight, redirect preference …).</summary>
    private string _balanceWhy = "by weight";

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

}
