using System.Net.Security;
using Poold.Pooling;
using Poold.Protocol;
using Serilog.Events;

namespace Poold.Sessions;

/// <summary>Every log line a session writes, in one place: constant templates, no secrets.</summary>
internal sealed partial class ClientSession
{
    private void LogTls(SslStream ssl) =>
        _log.Debug("TLS established: {Protocol} {Cipher}", ssl.SslProtocol, ssl.NegotiatedCipherSuite);

    private void LogStartup(string user, string database, bool tls)
    {
        if (_services.Settings.Get(Config.Params.LogConnections))
        {
            _log.Information("connection received: user={User} database={Database} tls={Tls}", user, database, tls);
        }
    }

    private void LogHbaMatch(Auth.Hba.HbaRecord record) =>
        _log.Debug("pool_hba.conf record {Where} matched: method {Method}", record.Where, record.Method);

    private void LogCertificateMismatch(string commonName) =>
        _log.Information("client certificate CN {CommonName} is not user {User}", commonName, User);

    private void LogStoredCredentialUnusable(string reason) => _log.Error("pool_passwd: {Reason}", reason);

    private void LogAuthQueryFound(bool fromCache) =>
        _log.Debug("auth_query: verifier of user {User} {Where}", User, fromCache ? "from the cache" : "fetched from the primary");

    private void LogAuthQueryRefetched(Auth.AuthQueryStatus status) =>
        _log.Information("auth_query: the proof of user {User} failed against the cached verifier; fetched again: {Status}", User, status);

    private void LogAuthQueryProblem(string problem) => _log.Error("{Problem}", problem);

    private void LogScram(string mechanism) => _log.Debug("client authenticated with {Mechanism}", mechanism);

    private void LogPasswordFailed(string why) => _log.Information("password authentication failed for user {User}: {Why}", User, why);

    private void LogBalanceNode(int nodeId, string why) => _log.Debug("load-balance node {NodeId} ({Why})", nodeId, why);

    private void LogRoute(int nodeId, string reason)
    {
        if (_services.Settings.Get(Config.Params.LogPerNodeStatement) || _log.IsEnabled(LogEventLevel.Debug))
        {
            _log.Information("statement to node {NodeId}: {Reason}", nodeId, reason);
        }
    }

    private void LogCatchUpError(int nodeId, string message) =>
        _log.Warning("node {NodeId} refused a statement Poold replayed to keep the session in step: {Message}", nodeId, message);

    private void LogBalanceNodeUnavailable(int nodeId, string reason) =>
        _log.Warning("load-balance node {NodeId} is unavailable for this session, reads go to the primary: {Reason}", nodeId, reason);

    private void LogConnected(BackendConnection backend) =>
        _log.Debug("opened backend connection to node {NodeId} (backend pid {BackendPid}, {AuthMethod})",
            backend.NodeId, backend.ProcessId, backend.AuthMethod);

    private void LogReused(BackendConnection backend) =>
        _log.Debug("reused cached backend connection to node {NodeId} (backend pid {BackendPid})", backend.NodeId, backend.ProcessId);

    private void LogBackendRejected(BackendRejectedException e) =>
        _log.Information("backend node {NodeId} refused user {User}: {SqlState} {Message}", e.NodeId, User, e.SqlState, e.Error.Message);

    private void LogBackendFailure(BackendException e) =>
        _log.Warning("backend node {NodeId} failed for this session: {Message}", e.NodeId, e.Message);

    private void LogClientFatal(ClientFatalException e) =>
        _log.Information("session refused: {SqlState} {Message}", e.SqlState, e.Message);

    private void LogProtocolViolation(PgProtocolException e) =>
        _log.Information("protocol violation by the client: {SqlState} {Message}", e.SqlState, e.Message);

    private void LogClientGone(Exception e)
    {
        if (_log.IsEnabled(LogEventLevel.Debug))
        {
            _log.Debug("client connection ended: {Reason}", e.Message);
        }
    }

    private void LogUnexpected(Exception e) => _log.Error(e, "unexpected error; the session is closed");

    private void LogCancelUnknown(int processId) =>
        _log.Information("cancel request for unknown session {TargetId} or wrong key: ignored", processId);

    private void LogReplicationRelay(ReplicationMode mode, int nodeId, int processId) =>
        _log.Information("{Mode} replication connection relayed to primary node {NodeId} (backend pid {Pid}), uncached", mode, nodeId, processId);

    private void LogDatabaseFreed(string database, int closed) =>
        _log.Information("closed {Count} idle cached connections to database {Database} before a statement that needs it free", closed, database);

    private void LogCancelFailed(int nodeId, string reason) =>
        _log.Warning("could not forward a cancel request to backend node {NodeId}: {Reason}", nodeId, reason);

    private void LogCancelForwarded(int target) => _log.Debug("forwarding cancel request to the backend of session {TargetId}", target);

    private void LogEnded(SessionEnd end)
    {
        if (_startup is not null && _services.Settings.Get(Config.Params.LogDisconnections))
        {
            var duration = _services.Time.GetUtcNow() - StartedAt;
            _log.Information("disconnection: session time {Duration} user={User} database={Database} end={End}", duration, User, Database, end);
        }
    }
}
