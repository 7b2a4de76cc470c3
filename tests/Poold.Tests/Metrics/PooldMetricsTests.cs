using System.Security.Authentication;
using System.Text;
using Poold.Metrics;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Routing;
using Poold.Sessions;

namespace Poold.Tests.Metrics;

/// <summary>The counted metrics: bound children move under the right labels; login failures are classified without user names.</summary>
public class PooldMetricsTests
{
    private static async Task<string> ExportAsync(PooldMetrics metrics)
    {
        using var stream = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    [Test]
    public async Task Routed_CountsByNodeAndRule()
    {
        var metrics = new PooldMetrics(2, source: null);
        metrics.Routed(1, "by weight");
        metrics.Routed(1, "by weight");
        metrics.Routed(0, "calls nextval, which is volatile or refused by a standby");
        metrics.Routed(7, "by weight");
        var text = await ExportAsync(metrics);
        Assert.That(text, Does.Contain("poold_routing_decisions_total{node=\"1\",rule=\"weight draw\"} 2"));
        Assert.That(text, Does.Contain("poold_routing_decisions_total{node=\"0\",rule=\"volatile function\"} 1"));
        Assert.That(text, Does.Not.Contain("nextval"), "no statement text in a label");
        Assert.That(text, Does.Not.Contain("node=\"7\""), "an unknown node is not counted");
    }

    [Test]
    public async Task LoginsTlsAndLatency_AreCounted()
    {
        var metrics = new PooldMetrics(1, source: null);
        metrics.LoginSucceeded();
        metrics.LoginFailed("password");
        metrics.LoginFailed("no such reason");
        metrics.TlsHandshake(succeeded: false);
        metrics.StatementDone(0, TimeSpan.FromMilliseconds(3));
        metrics.PoolWaited(TimeSpan.FromSeconds(2));
        var text = await ExportAsync(metrics);
        Assert.That(text, Does.Contain("poold_login_successes_total 1"));
        Assert.That(text, Does.Contain("poold_login_failures_total{reason=\"password\"} 1"));
        Assert.That(text, Does.Contain("poold_login_failures_total{reason=\"other\"} 1"));
        Assert.That(text, Does.Contain("poold_tls_handshakes_total{result=\"failure\"} 1"));
        Assert.That(text, Does.Contain("poold_statement_duration_seconds_bucket{node=\"0\",le=\"0.005\"} 1"));
        Assert.That(text, Does.Contain("poold_statement_duration_seconds_bucket{node=\"0\",le=\"0.0025\"} 0"));
        Assert.That(text, Does.Contain("poold_pool_wait_seconds_count 1"));
    }

    [Test]
    public void LoginFailureReasons_ComeFromTheError_NeverFromTheUser()
    {
        Assert.Multiple(() =>
        {
            Assert.That(ClientSession.LoginFailureReason(new ClientFatalException(SqlState.InvalidPassword, "password authentication failed for user \"bob\"")),
                Is.EqualTo("password"));
            Assert.That(ClientSession.LoginFailureReason(new ClientFatalException(SqlState.InvalidAuthorizationSpecification, "no pool_hba.conf entry")),
                Is.EqualTo("rejected"));
            Assert.That(ClientSession.LoginFailureReason(new ClientFatalException(SqlState.TooManyConnections, "sorry")), Is.EqualTo("too many clients"));
            Assert.That(ClientSession.LoginFailureReason(new ClientFatalException(SqlState.ConnectionFailure,
                "canceling authentication due to timeout (authentication_timeout = 1s)")), Is.EqualTo("timeout"));
            Assert.That(ClientSession.LoginFailureReason(new BackendException(0, SqlState.ConnectionFailure, "refused")), Is.EqualTo("backend unavailable"));
            Assert.That(ClientSession.LoginFailureReason(new PgProtocolException(SqlState.ProtocolViolation, "bad")), Is.EqualTo("protocol violation"));
            Assert.That(ClientSession.LoginFailureReason(new AuthenticationException("client certificate")), Is.EqualTo("other"));
            Assert.That(ClientSession.LoginFailureReason(new IOException("reset")), Is.EqualTo("client disconnected"));
            Assert.That(PooldMetrics.LoginFailureReasons, Does.Contain("other"));
        });
        Assert.That(RouteRules.All, Is.Not.Empty);
    }
}
