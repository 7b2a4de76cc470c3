using System.Globalization;
using System.Net;
using System.Text;
using Npgsql;
using Poold.Hosting;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Observability;

/// <summary>
/// The metrics endpoint scraped over HTTP and parsed as Prometheus's text format, with values that move when clients do
/// things; and <c>/health</c> for a load balancer.
/// </summary>
public class MetricsTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    private const string Checks = """
        health_check_period = 1
        health_check_timeout = 5
        health_check_max_retries = 0
        health_check_user = 'trust_user'
        health_check_database = 'poold_test'

        """;

    /// <summary>Poold over the three nodes with these weights (primary first) and the metrics endpoint on a free port.</summary>
    private static async Task<(PooldInstance Poold, int MetricsPort)> StartAsync(double[] weights, string extra = "", bool ssl = true)
    {
        var lines = new StringBuilder();
        for (var i = 0; i < 3; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {Cluster.Nodes[i].Port}\nbackend_weight{i} = {weights[i]}\n");
        }

        var port = FreePort.Get();
        var poold = await PooldInstance.StartAsync(
            lines + $"metrics_listen_addresses = '127.0.0.1'\nmetrics_port = {port}\nlog_per_node_statement = on\n" + extra, ssl);
        return (poold, port);
    }

    private static async Task<PromText> ScrapeAsync(int port)
    {
        using var response = await Http.GetAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/plain"));
        return PromText.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>Polls the scrape until <paramref name="condition"/> holds (hot-path counters move just after the reply).</summary>
    private static async Task<PromText> UntilAsync(int port, Func<PromText, bool> condition, string because)
    {
        PromText? last = null;
        await Poll.UntilAsync(async () => condition(last = await ScrapeAsync(port)), TimeSpan.FromSeconds(10), because);
        return last!;
    }

    private static (string, string) L(string key, string value) => (key, value);

    private static readonly string[] PooldMetricsReasons = Poold.Metrics.PooldMetrics.LoginFailureReasons;

    [Test]
    public async Task Scrape_CountsStatementsPerNode_RoutingRules_LatencyClientsAndNodes()
    {
        var (poold, port) = await StartAsync([0, 1, 0], Checks);
        await using var _ = poold;
        var start = await ScrapeAsync(port);
        Assert.That(start.Value("poold_node_status", L("node", "0"), L("status", "up")), Is.EqualTo(1));
        Assert.That(start.Value("poold_node_primary", L("node", "0")), Is.EqualTo(1));
        Assert.That(start.Value("poold_node_primary", L("node", "1")), Is.Zero);
        Assert.That(start.Contains("poold_replication_delay_bytes"), Is.True);

        await using var connection = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser));

        // Npgsql's type loading at open is one multi-statement query, on the primary: counted before the test's own.
        var before = await UntilAsync(port, s => s.Value("poold_routing_decisions_total", L("node", "0"), L("rule", "multi-statement")) == 1,
            "Npgsql's type loading query to be counted");
        Assert.That(before.Value("poold_login_successes_total"), Is.EqualTo(start.Value("poold_login_successes_total") + 1));
        Assert.That(before.Value("poold_tls_handshakes_total", L("result", "success")),
            Is.EqualTo(start.Value("poold_tls_handshakes_total", L("result", "success")) + 1));
        Assert.That(Convert.ToInt32(await new NpgsqlCommand("SELECT inet_server_port()", connection).ExecuteScalarAsync(), CultureInfo.InvariantCulture),
            Is.EqualTo(Cluster.Nodes[1].Port), "the read ran on the replica");
        await new NpgsqlCommand("CREATE TEMP TABLE metrics_t (a int)", connection).ExecuteNonQueryAsync();

        var after = await UntilAsync(port, s =>
                s.Value("poold_statements_total", L("node", "1"), L("kind", "read")) >= before.Value("poold_statements_total", L("node", "1"), L("kind", "read")) + 1
                && s.Value("poold_statements_total", L("node", "0"), L("kind", "write")) >= 1
                && s.Value("poold_statement_duration_seconds_count", L("node", "1")) >= 1,
            "the read on node 1 and the write on node 0 to be counted");
        Assert.That(after.Value("poold_statements_total", L("node", "0"), L("kind", "read")), Is.EqualTo(before.Value("poold_statements_total", L("node", "0"), L("kind", "read"))),
            "no read on the primary");
        Assert.That(after.Value("poold_routing_decisions_total", L("node", "1"), L("rule", "weight draw")), Is.GreaterThanOrEqualTo(1));
        Assert.That(after.Value("poold_routing_decisions_total", L("node", "0"), L("rule", "write")), Is.GreaterThanOrEqualTo(1));
        Assert.That(after.Value("poold_statement_duration_seconds_bucket", L("node", "1"), L("le", "+Inf")), Is.GreaterThanOrEqualTo(1));
        Assert.That(after.Value("poold_clients", L("state", "idle")), Is.EqualTo(1));
        Assert.That(after.Value("poold_server_connections", L("node", "0"), L("state", "active")), Is.EqualTo(1));
        Assert.That(after.Value("poold_server_connections", L("node", "1"), L("state", "active")), Is.EqualTo(1));
        Assert.That(after.Value("poold_client_bytes_received_total"), Is.GreaterThan(0));
        Assert.That(after.Value("poold_client_bytes_sent_total"), Is.GreaterThan(0));
        await poold.WaitForLogAsync("(weight draw): by weight");

        // The same rule names the statement's reason in the log line.
        await poold.WaitForLogAsync("statement to node 0 (write): CREATE");

        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand("SELECT 1", connection, tx).ExecuteScalarAsync();
            await UntilAsync(port, s => s.Value("poold_clients", L("state", "idle_in_transaction")) == 1, "the client to be counted in a transaction");
            await tx.RollbackAsync();
        }

        await UntilAsync(port, s => s.Value("poold_health_checks_total", L("node", "0"), L("result", "success")) >= 1
                                    && s.Value("poold_health_check_last_success_timestamp_seconds", L("node", "0")) > 0,
            "a health check to be counted");
    }

    [Test]
    public async Task HealthCheckDuration_IsAHistogramPerNode_WithMillisecondToSecondBuckets()
    {
        var (poold, port) = await StartAsync([1, 1, 1], Checks);
        await using var _ = poold;
        const string name = "poold_health_check_duration_seconds";
        var scrape = await UntilAsync(port, s => s.Value(name + "_count", L("node", "0")) >= 2 && s.Value(name + "_count", L("node", "2")) >= 1,
            "health checks to be timed on nodes 0 and 2");
        var text = await Http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        Assert.That(text, Does.Contain($"# TYPE {name} histogram\n"));

        var buckets = scrape.Samples(name + "_bucket", L("node", "0"))
            .Select(b => (Le: b.Labels["le"] == "+Inf" ? double.PositiveInfinity : double.Parse(b.Labels["le"], CultureInfo.InvariantCulture), b.Value))
            .OrderBy(b => b.Le).ToList();
        Assert.That(buckets.First().Le, Is.LessThanOrEqualTo(0.001), "a loopback login takes a few milliseconds");
        Assert.That(buckets[^2].Le, Is.GreaterThanOrEqualTo(20), "up to health_check_timeout's default");
        Assert.That(buckets.Last().Le, Is.EqualTo(double.PositiveInfinity));
        var count = scrape.Value(name + "_count", L("node", "0"));
        Assert.That(buckets.Select(b => b.Value), Is.Ordered, "buckets are cumulative");
        Assert.That(buckets.Last().Value, Is.EqualTo(count));
        Assert.That(buckets[^2].Value, Is.EqualTo(count), "no loopback health check takes 30 s");
        var sum = scrape.Value(name + "_sum", L("node", "0"));
        Assert.That(sum, Is.GreaterThan(0).And.LessThan(count * 5), "seconds, not milliseconds");
        Assert.That(scrape.Value(name + "_count", L("node", "0")),
            Is.LessThanOrEqualTo(scrape.Value("poold_health_checks_total", L("node", "0"), L("result", "success"))
                                 + scrape.Value("poold_health_checks_total", L("node", "0"), L("result", "failure")) + 1),
            "one observation per check attempt");
    }

    [Test]
    public async Task LoginFailures_AreCountedByReason_WithoutUserNames()
    {
        var (poold, port) = await StartAsync([1, 0, 0], ssl: false);
        await using var _ = poold;
        var before = await ScrapeAsync(port);
        var wrong = poold.ConnectionString(TestRoles.ScramUser, "not-the-password", sslMode: SslMode.Disable);
        await using (var connection = new NpgsqlConnection(wrong.ConnectionString))
        {
            var error = Assert.ThrowsAsync<PostgresException>(() => connection.OpenAsync());
            Assert.That(error!.SqlState, Is.EqualTo("28P01"));
        }

        // Npgsql may try more than once: every refusal Poold logged is one failure counted, with the reason "password". The
        // counter and the log line of a refusal are written one after the other: polled until they agree (a failure counted
        // twice never agrees, and the poll's deadline fails the test).
        int Refusals() => poold.Log.Split('\n').Count(l => l.Contains("28P01 password authentication failed", StringComparison.Ordinal));
        var after = await UntilAsync(port, s => s.Value("poold_login_failures_total", L("reason", "password")) > 0
                                                && s.Value("poold_login_failures_total", L("reason", "password"))
                                                == before.Value("poold_login_failures_total", L("reason", "password")) + Refusals(),
            "every refusal in the log to be counted, once");
        var refusals = Refusals();
        Assert.That(refusals, Is.GreaterThanOrEqualTo(1));
        Assert.That(after.Value("poold_login_failures_total", L("reason", "password")),
            Is.EqualTo(before.Value("poold_login_failures_total", L("reason", "password")) + refusals));
        Assert.That(PooldMetricsReasons.Sum(r => after.Value("poold_login_failures_total", L("reason", r))), Is.EqualTo(refusals),
            "no failure under another reason");
        Assert.That(after.Value("poold_login_successes_total"), Is.EqualTo(before.Value("poold_login_successes_total")));
        using var raw = await Http.GetAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        Assert.That(await raw.Content.ReadAsStringAsync(), Does.Not.Contain(TestRoles.ScramUser), "no user name in any label");
    }

    [Test]
    public async Task ABrokenTlsHandshake_IsCountedAsATlsFailure_NotAsALogin()
    {
        var (poold, port) = await StartAsync([1, 0, 0], ssl: true);
        await using var _ = poold;
        var before = await ScrapeAsync(port);
        using (var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            await socket.ConnectAsync("127.0.0.1", poold.Port);
            await socket.SendAsync(new byte[] { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f });
            var answer = new byte[1];
            Assert.That(await socket.ReceiveAsync(answer), Is.EqualTo(1));
            Assert.That((char)answer[0], Is.EqualTo('S'));
            await socket.SendAsync("this is not a TLS ClientHello\r\n\r\n"u8.ToArray());
        }

        var after = await UntilAsync(port, s => s.Value("poold_tls_handshakes_total", L("result", "failure")) > 0, "the failed handshake to be counted");
        Assert.That(after.Value("poold_tls_handshakes_total", L("result", "failure")),
            Is.EqualTo(before.Value("poold_tls_handshakes_total", L("result", "failure")) + 1));
        Assert.That(PooldMetricsReasons.Sum(r => after.Value("poold_login_failures_total", L("reason", r))),
            Is.EqualTo(PooldMetricsReasons.Sum(r => before.Value("poold_login_failures_total", L("reason", r)))), "no login was tried");
    }

    [Test]
    public async Task Failover_AndNodeStatus_AreScrapedFromTheRegistry()
    {
        var (poold, port) = await StartAsync([1, 1, 1], ssl: false);
        await using var _ = poold;
        await poold.Host.Monitor!.FailoverAsync(2, "test: detach a standby", CancellationToken.None);
        var after = await ScrapeAsync(port);
        Assert.That(after.Value("poold_failovers_total"), Is.EqualTo(1));
        Assert.That(after.Value("poold_node_status", L("node", "2"), L("status", "down")), Is.EqualTo(1));
        Assert.That(after.Value("poold_node_status", L("node", "2"), L("status", "up")), Is.Zero);
    }

    [Test]
    public async Task Health_Is200WithAPrimary_503WithoutOne_And503WhileASmartStopDrains()
    {
        var (poold, port) = await StartAsync([1, 0, 0], ssl: false);
        await using var _ = poold;
        var health = new Uri($"http://127.0.0.1:{port}/health");
        using (var ok = await Http.GetAsync(health))
        {
            Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());
        }

        using (var missing = await Http.GetAsync(new Uri($"http://127.0.0.1:{port}/nothing")))
        {
            Assert.That(missing.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        }

        var (other, otherPort) = await StartAsync([1, 0, 0], ssl: false);
        await using (other)
        {
            other.Host.Nodes.Detach(0);
            using var noPrimary = await Http.GetAsync(new Uri($"http://127.0.0.1:{otherPort}/health"));
            Assert.That(noPrimary.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await noPrimary.Content.ReadAsStringAsync(), Does.Contain("no primary"));
        }

        // A client stays connected: the smart stop waits for it, and the endpoint says 503 all along.
        var client = await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        var stopping = poold.Host.StopAsync(StopMode.Smart);
        using (var draining = await Http.GetAsync(health))
        {
            Assert.That(draining.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await draining.Content.ReadAsStringAsync(), Does.Contain("draining"));
        }

        Assert.That(await new NpgsqlCommand("SELECT 1", client).ExecuteScalarAsync(), Is.EqualTo(1), "the connected client finishes its work");
        Assert.That(stopping.IsCompleted, Is.False);
        await client.DisposeAsync();
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.ThrowsAsync<HttpRequestException>(() => Http.GetAsync(health), "the endpoint closes with the host");
    }

    [Test]
    public async Task MetricsPortZero_OpensNoEndpoint()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, ssl: false);
        Assert.That(poold.Host.MetricsEndpoint, Is.Null);
        Assert.That(poold.Host.Metrics, Is.Null);
    }
}
