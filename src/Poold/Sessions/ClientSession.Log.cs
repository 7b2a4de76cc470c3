using System.Net.Security;
using Poold.Pooling;
using Poold.Protocol;
using Serilog.Core.Enrichers;
using Serilog.Events;

namespace Poold.Sessions;

/// <summary>Every log line a session writes, in one place: constant templates, no secrets.</summary>
internal sealed partial class ClientSession
{
    /// <summary>The session's logger when <paramref name="level"/> is written at all, else null (and nothing is made).</summary>
    private Serilog.ILogger? At(LogEventLevel level) => _services.Log.IsEnabled(level) ? _log ??= MakeLogger() : null;

    private Serilog.ILogger MakeLogger()
    {
        var log = _services.Log.ForContext<ClientSession>().ForContext("SessionId", Id);
        return _logContext is var (user, database, application, host, port)
            ? log.ForContext([
                new PropertyEnricher(Hosting.LinePrefix.UserProperty, user), new PropertyEnricher(Hosting.LinePrefix.DatabaseProperty, database),
                new PropertyEnricher(Hosting.LinePrefix.ApplicationProperty, application), new PropertyEnricher(Hosting.LinePrefix.HostProperty, host),
                new PropertyEnricher(Hosting.LinePrefix.PortProperty, port),
            ])
            : log;
    }

    private void LogTls(SslStream ssl) =>
        At(LogEventLevel.Debug)?.Debug("TLS established: {Protocol} {Cipher}", ssl.SslProtocol, ssl.NegotiatedCipherSuite);

    /// <summary>
    /// Once the startup packet is read, the session's logger carries the user, database, application name and client
    /// host for log_line_prefix (%u %d %a %h %r); with log_hostname the host is the client's name (a reverse lookup
    /// bounded to one second). log_connections logs the connection.
    /// </summary>
    private void LogStartup(string user, string database, bool tls)
    {
        var settings = _services.Settings;
        var (host, port) = _socket.RemoteEndPoint is System.Net.IPEndPoint ip
            ? (settings.Get(Config.Params.LogHostname) ? ResolveHost(ip.Address) : ip.Address.ToString(),
                ip.Port.ToString(System.Globalization.CultureInfo.InvariantCulture))
            : ("[local]", "");
        _log = null;
        _logContext = (user, database, _startup?["application_name"] ?? "", host, port);
        if (settings.Get(Config.Params.LogConnections))
        {
            At(LogEventLevel.Information)?.Information("connection received: host={Host} port={Port} user={User} database={Database} tls={Tls}", host, port, user, database, tls);
        }
    }

    private static string ResolveHost(System.Net.IPAddress address)
    {
        try
        {
            var lookup = System.Net.Dns.GetHostEntryAsync(address);
            return lookup.Wait(TimeSpan.FromSeconds(1)) ? lookup.Result.HostName : address.ToString();
        }
        catch (Exception e) when (e is AggregateException or System.Net.Sockets.SocketException or ArgumentException)
        {
            return address.ToString();
        }
    }

    private void LogHbaMatch(Auth.Hba.HbaRecord record) =>
        At(LogEventLevel.Debug)?.Debug("pool_hba.conf record {Where} matched: method {Method}", record.Where, record.Method);

    private void LogCertificateMismatch(string commonName) =>
        At(LogEventLevel.Information)?.Information("client certificate CN {CommonName} is not user {User}", commonName, User);

    private void LogCertificateRevoked(string serial) =>
        At(LogEventLevel.Information)?.Information("client certificate serial {Serial} of user {User} is revoked by ssl_crl_file / ssl_crl_dir", serial, User);

    private void LogCrlExpired(string serial, string crlFile, DateTime nextUpdate) =>
        At(LogEventLevel.Error)?.Error("client certificate serial {Serial} of user {User} refused: the revocation list {File} expired at {NextUpdate:u} "
                                      + "(nextUpdate); install a current list and reload", serial, User, crlFile, nextUpdate);

    private void LogStoredCredentialUnusable(string reason) => At(LogEventLevel.Error)?.Error("pool_passwd: {Reason}", reason);

    private void LogAuthQueryFound(bool fromCache) =>
        At(LogEventLevel.Debug)?.Debug("auth_query: verifier of user {User} {Where}", User, fromCache ? "from the cache" : "fetched from the primary");

    private void LogAuthQueryRefetched(Auth.AuthQueryStatus status) =>
        At(LogEventLevel.Information)?.Information("auth_query: the proof of user {User} failed against the cached answer; fetched again: {Status}", User, status);

    private void LogAuthQueryProblem(string problem) => At(LogEventLevel.Error)?.Error("{Problem}", problem);

    private void LogScram(string mechanism) => At(LogEventLevel.Debug)?.Debug("client authenticated with {Mechanism}", mechanism);

    private void LogPasswordFailed(string why) => At(LogEventLevel.Information)?.Information("password authentication failed for user {User}: {Why}", User, why);

    private void LogBackendRejected(BackendRejectedException e) =>
        At(LogEventLevel.Information)?.Information("backend node {NodeId} refused user {User}: {SqlState} {Message}", e.NodeId, User, e.SqlState, e.Error.Message);

    private void LogBackendFailure(BackendException e) =>
        At(LogEventLevel.Warning)?.Warning("backend node {NodeId} failed for this session: {Message}", e.NodeId, e.Message);

    private void LogClientFatal(ClientFatalException e) =>
        At(LogEventLevel.Information)?.Information("session refused: {SqlState} {Message}", e.SqlState, e.Message);

    private void LogProtocolViolation(PgProtocolException e) =>
        At(LogEventLevel.Information)?.Information("protocol violation by the client: {SqlState} {Message}", e.SqlState, e.Message);

    private void LogClientGone(Exception e)
    {
        if (_services.Log.IsEnabled(LogEventLevel.Debug))
        {
            At(LogEventLevel.Debug)?.Debug("client connection ended: {Reason}", e.Message);
        }
    }

    private void LogUnexpected(Exception e) => At(LogEventLevel.Error)?.Error(e, "unexpected error; the session is closed");

    private void LogCancelToPeer(int peerId, string host, int port) =>
        At(LogEventLevel.Information)?.Information("cancel request for a session of peer {PeerId}: forwarded to {Host}:{Port}", peerId, host, port);

    private void LogCancelToPeerFailed(int peerId, string reason) =>
        At(LogEventLevel.Warning)?.Warning("cancel request could not be forwarded to peer {PeerId}: {Reason}", peerId, reason);

    private void LogCancelUnknown(int processId) =>
        At(LogEventLevel.Information)?.Information("cancel request for unknown session {TargetId} or wrong key: ignored", processId);

    private void LogReplicationRelay(ReplicationMode mode, int nodeId, int processId) =>
        At(LogEventLevel.Information)?.Information("{Mode} replication connection relayed to primary node {NodeId} (backend pid {Pid}), uncached", mode, nodeId, processId);

    private void LogCancelForwarded(int target) => At(LogEventLevel.Debug)?.Debug("forwarding cancel request to the backend of session {TargetId}", target);

    private void LogEnded(SessionEnd end)
    {
        if (_startup is not null && _services.Settings.Get(Config.Params.LogDisconnections))
        {
            // PostgreSQL's form: "session time: 0:01:02.345".
            var duration = _services.Time.GetUtcNow() - StartedAt;
            var time = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{(int)duration.TotalHours}:{duration.Minutes:00}:{duration.Seconds:00}.{duration.Milliseconds:000}");
            At(LogEventLevel.Information)?.Information("disconnection: session time: {SessionTime} user={User} database={Database} end={End}", time, User, Database, end);
        }
    }
}
