using System.Globalization;
using System.Text;
using Npgsql;
using Poold.Backends;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Failover;

/// <summary>
/// Health checks, failover, primary discovery and the replication check, on clusters of their own (one primary and
/// one or two replicas) so the shared cluster is never disturbed.
/// </summary>
[NonParallelizable]
public class FailoverTests
{
    private const string Checks = """
        health_check_period = 1
        health_check_timeout = 5
        health_check_max_retries = 0
        health_check_user = 'trust_user'
        health_check_database = 'poold_test'
        sr_check_period = 1
        sr_check_user = 'poold_admin'
        sr_check_password = 'poold_admin_pw!'
        sr_check_database = 'poold_test'
        search_primary_node_timeout = 60
        connect_timeout = 2000

        """;

    private static string Backends(PgCluster cluster, params double[] weights)
    {
        var lines = new StringBuilder();
        for (var i = 0; i < cluster.Nodes.Count; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {cluster.Nodes[i].Port}\nbackend_weight{i} = {weights[i]}\nbackend_application_name{i} = 'replica{i}'\n");
        }

        return lines.ToString();
    }

    private static NpgsqlConnection Connection(PooldInstance poold) => new(poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable).ConnectionString);

    private static async Task<int> PortAsync(NpgsqlConnection connection) =>
        Convert.ToInt32(await new NpgsqlCommand("SELECT inet_server_port()", connection).ExecuteScalarAsync(), CultureInfo.InvariantCulture);

    private static Task WaitForStatusAsync(PooldInstance poold, int node, NodeStatus status) =>
        Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[node].Status == status), TimeSpan.FromSeconds(30),
            $"node {node} to be {status}");

    [Test]
    public async Task ReplicaStopped_IsDetachedByTheHealthCheck_ReadsContinue_AndAutoFailbackBringsItBack()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 2);
        var log = Path.Combine(Path.GetTempPath(), $"failover-{Guid.NewGuid():N}.log");
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 0, 1, 1) + Checks + $"""
            auto_failback = on
            auto_failback_interval = 1
            failover_command = 'echo "%d %h %p %m %H %M %P %r %N %S %%" >> {log}'

            """, ssl: false);
        await WaitForReplicationStateAsync(poold, 2, "streaming");

        // A bounded read load while node 2 dies: long-lived sessions and new ones.
        var errors = 0;
        var longLived = new List<NpgsqlConnection>();
        for (var i = 0; i < 4; i++)
        {
            var connection = Connection(poold);
            await connection.OpenAsync();
            await PortAsync(connection);
            longLived.Add(connection);
        }

        await cluster.StopNodeAsync(2, "immediate");
        using (var load = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            while (poold.Host.Nodes.Current.Nodes[2].Status != NodeStatus.Down && !load.IsCancellationRequested)
            {
                errors += await ReadRoundAsync(poold, longLived);
            }
        }

        await TestContext.Out.WriteLineAsync($"errors before the node was detached: {errors}");
        Assert.That(poold.Host.Nodes.Current.Nodes[2].Status, Is.EqualTo(NodeStatus.Down), "the health check detached node 2");

        // After detection: reads on new sessions and on the surviving long-lived ones run on node 1, without errors.
        var after = 0;
        longLived.RemoveAll(c => c.FullState != System.Data.ConnectionState.Open);
        for (var round = 0; round < 20; round++)
        {
            after += await ReadRoundAsync(poold, longLived);
        }

        Assert.That(after, Is.Zero, "no errors once the node is known to be down");
        await poold.WaitForLogAsync("failover: detaching node 2");
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(log)), TimeSpan.FromSeconds(10), "failover_command to run");
        var port0 = cluster.Nodes[0].Port.ToString(CultureInfo.InvariantCulture);
        Assert.That((await File.ReadAllTextAsync(log)).Trim(), Is.EqualTo(
            $"2 127.0.0.1 {cluster.Nodes[2].Port} 0 127.0.0.1 0 0 {port0} 127.0.0.1 {port0} %"), "pgpool's placeholders");
        Assert.That(await File.ReadAllTextAsync(Path.Combine(poold.Directory, "pgpool_status")), Is.EqualTo("up\nup\ndown\n"));

        await cluster.StartNodeAsync(2);
        await WaitForStatusAsync(poold, 2, NodeStatus.Up);
        await poold.WaitForLogAsync("auto_failback: node 2 streams again");
        var seen = new HashSet<int>();
        for (var i = 0; i < 40 && seen.Count < 2; i++)
        {
            await using var fresh = Connection(poold);
            await fresh.OpenAsync();
            seen.Add(await PortAsync(fresh));
        }

        Assert.That(seen, Does.Contain(cluster.Nodes[2].Port), "node 2 takes reads again");
        foreach (var connection in longLived)
        {
            await connection.DisposeAsync();
        }

        File.Delete(log);
    }

    /// <summary>One read on each long-lived session and one on a new session; returns how many failed.</summary>
    private static async Task<int> ReadRoundAsync(PooldInstance poold, List<NpgsqlConnection> longLived)
    {
        var errors = 0;
        foreach (var connection in longLived)
        {
            try
            {
                await PortAsync(connection);
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                errors++;
            }
        }

        try
        {
            await using var fresh = Connection(poold);
            await fresh.OpenAsync();
            await PortAsync(fresh);
        }
        catch (NpgsqlException)
        {
            errors++;
        }

        return errors;
    }

    private static Task WaitForReplicationStateAsync(PooldInstance poold, int node, string state) =>
        Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[node].Replication.State == state), TimeSpan.FromSeconds(30),
            $"node {node} to report replication state {state}");

    [Test]
    public async Task PrimaryStopped_AndAReplicaPromoted_WritesWorkAgainWithoutRestartingPoold()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 1);
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 1, 1) + Checks, ssl: false);
        await using (var before = Connection(poold))
        {
            await before.OpenAsync();
            await new NpgsqlCommand("CREATE TEMP TABLE t (a int); INSERT INTO t VALUES (1)", before).ExecuteNonQueryAsync();
        }

        await cluster.KillNodeAsync(0);
        await WaitForStatusAsync(poold, 0, NodeStatus.Down);
        await cluster.PromoteAsync(1);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.PrimaryNodeId == 1), TimeSpan.FromSeconds(60),
            "Poold to find the new primary");
        await Poll.UntilAsync(async () =>
        {
            await using var connection = Connection(poold);
            await connection.OpenAsync();
            await new NpgsqlCommand("CREATE TEMP TABLE w (a int); INSERT INTO w VALUES (1)", connection).ExecuteNonQueryAsync();
            return await PortAsync(connection) == cluster.Nodes[1].Port;
        }, TimeSpan.FromSeconds(30), "writes through Poold to succeed on the promoted node");
        await poold.WaitForLogAsync("failover: new primary node is 1");
    }

    [Test]
    public async Task ReplicaLaggingPastDelayThreshold_LeavesTheRotation_AndReturnsAfterCatchingUp()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 1);
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 0, 1) + Checks + "delay_threshold = 1\n", ssl: false);
        await WaitForReplicationStateAsync(poold, 1, "streaming");
        await cluster.ScalarAsync(1, "SELECT pg_wal_replay_pause()");
        try
        {
            await cluster.ScalarAsync(0, "CREATE TABLE lag_maker AS SELECT generate_series(1, 10000) AS i");
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[1].Replication.Lagging), TimeSpan.FromSeconds(30),
                "node 1 to be over delay_threshold");
            await using (var connection = Connection(poold))
            {
                await connection.OpenAsync();
                Assert.That(await PortAsync(connection), Is.EqualTo(cluster.Nodes[0].Port), "the lagging replica gets no reads");
            }
        }
        finally
        {
            await cluster.ScalarAsync(1, "SELECT pg_wal_replay_resume()");
        }

        await Poll.UntilAsync(() => Task.FromResult(!poold.Host.Nodes.Current.Nodes[1].Replication.Lagging), TimeSpan.FromSeconds(30),
            "node 1 to catch up");
        await using var back = Connection(poold);
        await back.OpenAsync();
        Assert.That(await PortAsync(back), Is.EqualTo(cluster.Nodes[1].Port), "the replica is back in the rotation");
    }

    [Test]
    public async Task PgpoolStatus_KeepsADetachedNodeDownAcrossARestart()
    {
        var cluster = ClusterFixture.Cluster;
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 0, 1, 1), ssl: false,
            new Dictionary<string, string> { ["pgpool_status"] = "up\ndown\nup\n" });
        Assert.That(poold.Host.Nodes.Current.Nodes.Select(n => n.Status), Is.EqualTo(new[] { NodeStatus.Up, NodeStatus.Down, NodeStatus.Up }));
        for (var i = 0; i < 10; i++)
        {
            await using var connection = Connection(poold);
            await connection.OpenAsync();
            Assert.That(await PortAsync(connection), Is.EqualTo(cluster.Nodes[2].Port), "node 1 stays detached");
        }
    }

    [Test]
    public async Task SessionIdleOnAStandbyThatDies_RunsItsNextReadElsewhere_WithoutAnError()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 2);
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 0, 1, 1), ssl: false);
        await using var session = Connection(poold);
        await session.OpenAsync();
        var first = await PortAsync(session);
        var dead = first == cluster.Nodes[1].Port ? 1 : 2;
        Assert.That(first, Is.Not.EqualTo(cluster.Nodes[0].Port), "the session reads on a standby");

        await cluster.StopNodeAsync(dead, "immediate");
        var next = await PortAsync(session);
        Assert.That(next, Is.Not.EqualTo(cluster.Nodes[dead].Port), "the next read ran on a live node, with no error");
        await WaitForStatusAsync(poold, dead, NodeStatus.Down);
        await poold.WaitForLogAsync("failover_on_backend_error");
        await cluster.StartNodeAsync(dead);
    }

    [Test]
    public async Task StatementInFlightOnAStandbyThatDies_GetsAClearError_AndTheSessionStaysUsable()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 2);
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 0, 1, 1), ssl: false);
        await using var session = Connection(poold);
        await session.OpenAsync();
        var standby = await PortAsync(session);
        var dead = standby == cluster.Nodes[1].Port ? 1 : 2;
        var running = new NpgsqlCommand("SELECT count(*) FROM generate_series(1, 400000000)", session) { CommandTimeout = 120 }.ExecuteScalarAsync();
        await Poll.UntilAsync(async () => (long)(await cluster.ScalarAsync(dead,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT count(*) FROM generate_series%' AND state = 'active'"))! > 0,
            TimeSpan.FromSeconds(30), "the statement to run on the standby");
        await cluster.StopNodeAsync(dead, "immediate");

        var e = Assert.ThrowsAsync<PostgresException>(async () => await running);
        Assert.That((e!.SqlState, e.Severity), Is.EqualTo(("08006", "ERROR")));
        Assert.That(e.MessageText, Does.Contain($"backend node {dead} failed while running this statement"));
        Assert.That(await PortAsync(session), Is.Not.EqualTo(cluster.Nodes[dead].Port), "the session goes on, on another node");
        await cluster.StartNodeAsync(dead);
    }

    /// <summary>
    /// A named statement whose ParseComplete the client had when its standby died under the Execute stays the
    /// client's: the same Bind, sent again, runs on another node (Poold parses it there), and does not get 26000.
    /// </summary>
    [Test]
    public async Task AStatementParsedOnAStandbyThatDiesUnderIt_CanBeBoundAgainElsewhere()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 2);
        await using var poold = await PooldInstance.StartAsync(Backends(cluster, 0, 1, 1), ssl: false);
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "parsed-on-a-dying-standby");
        var timeout = TimeSpan.FromSeconds(30);
        await raw.SendAsync(RawClient.Query("SELECT current_setting('port')"));
        var standby = (await raw.ReadUntilReadyAsync(timeout)).Single(m => m.Code == 'D').FirstColumn;
        var dead = standby == cluster.Nodes[1].Port.ToString(CultureInfo.InvariantCulture) ? 1 : 2;

        // Long only on the standby that dies (and read-only, unlike pg_sleep, which is volatile: the primary's).
        await raw.SendAsync(RawClient.Parse("held",
                $"SELECT max(current_setting('port')), count(*) FROM generate_series(1, CASE current_setting('port') WHEN '{standby}' THEN 2000000000 ELSE 1 END)"),
            RawClient.Bind("", "held"), RawClient.Execute(""), RawClient.Sync());
        await Poll.UntilAsync(async () => (long)(await cluster.ScalarAsync(dead,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, CASE%' AND state = 'active' AND pid <> pg_backend_pid()"))! > 0,
            TimeSpan.FromSeconds(30), "the statement to run on the standby");
        await cluster.StopNodeAsync(dead, "immediate");
        var failed = await raw.ReadUntilReadyAsync(timeout);
        // The server's shutdown notice may come before Poold's error; its BindComplete, still in its buffer, does not come.
        Assert.That(failed.Where(m => m.Code != 'N').Select(m => m.Code == 'E' ? m.SqlState : m.Code.ToString()), Is.EqualTo(new[] { "1", "08006", "Z" }),
            string.Join(", ", failed));

        await raw.SendAsync(RawClient.Bind("", "held"), RawClient.Execute(""), RawClient.Sync());
        var ran = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(ran.Where(m => m.Code == 'E'), Is.Empty, string.Join(", ", ran));
        Assert.That(ran.Single(m => m.Code == 'D').FirstColumn, Is.Not.EqualTo(standby), "the statement ran on a live node");
        await cluster.StartNodeAsync(dead);
    }
}
