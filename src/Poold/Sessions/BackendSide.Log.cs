using Poold.Pooling;
using Serilog.Events;

namespace Poold.Sessions;

/// <summary>The backend side's log lines, on the session's logger (its line prefix: user, database, client): constant templates, no secrets.</summary>
internal sealed partial class BackendSide
{
    private Serilog.ILogger? At(LogEventLevel level) => _client.At(level);

    private void LogBalanceNode(int nodeId, string why) => At(LogEventLevel.Debug)?.Debug("load-balance node {NodeId} ({Why})", nodeId, why);

    /// <summary>Every routed batch: the metric by rule, and with log_per_node_statement (or debug) the line that says why.</summary>
    private void LogRoute(int nodeId, string reason)
    {
        _services.Metrics?.Routed(nodeId, reason);
        if (_services.Settings.Get(Config.Params.LogPerNodeStatement) || _services.Log.IsEnabled(LogEventLevel.Debug))
        {
            At(LogEventLevel.Information)?.Information("statement to node {NodeId} ({Rule}): {Reason}", nodeId, Routing.RouteRules.Of(reason), reason);
        }
    }

    private void LogCatchUpError(int nodeId, string message) =>
        At(LogEventLevel.Warning)?.Warning("node {NodeId} refused a statement Poold replayed to keep the session in step: {Message}", nodeId, message);

    private void LogBalanceNodeUnavailable(int nodeId, string reason) =>
        At(LogEventLevel.Warning)?.Warning("load-balance node {NodeId} is unavailable for this session, reads go to the primary: {Reason}", nodeId, reason);

    private void LogConnected(BackendConnection backend) =>
        At(LogEventLevel.Debug)?.Debug("opened backend connection to node {NodeId} (backend pid {BackendPid}, {AuthMethod})",
            backend.NodeId, backend.ProcessId, backend.AuthMethod);

    private void LogReused(BackendConnection backend) =>
        At(LogEventLevel.Debug)?.Debug("reused cached backend connection to node {NodeId} (backend pid {BackendPid})", backend.NodeId, backend.ProcessId);

    private void LogDatabaseFreed(string database, int closed) =>
        At(LogEventLevel.Information)?.Information("closed {Count} idle cached connections to database {Database} before a statement that needs it free", closed, database);

    private void LogCancelFailed(int nodeId, string reason) =>
        At(LogEventLevel.Warning)?.Warning("could not forward a cancel request to backend node {NodeId}: {Reason}", nodeId, reason);

    private void LogPinned(string reason) =>
        At(LogEventLevel.Information)?.Information("transaction pooling: the session keeps its server connections to its end because of {Reason}", reason);

    private void LogPrimaryFollowed(int from, int to) =>
        At(LogEventLevel.Information)?.Information("the primary changed between transactions (node {From} to node {To}): the next transaction runs on node {To}", from, to, to);

    private void LogStandbyGivenBack(int nodeId) =>
        At(LogEventLevel.Debug)?.Debug("transaction pooling: node {NodeId} ran only this transaction's BEGIN: given back before the primary is bound", nodeId);

    private void LogWaitTimeout(string message) => At(LogEventLevel.Warning)?.Warning("transaction pooling: {Message}", message);
}
