using System.Diagnostics;
using System.Globalization;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Hardening;

/// <summary>
/// Replication connections through Poold, with PostgreSQL's own tools: physical (pg_basebackup, pg_receivewal) and
/// logical (pg_recvlogical with test_decoding, a subscription on another server). Each gets its own server connection
/// to the primary, which is never cached.
/// </summary>
[NonParallelizable]
public class ReplicationRelayTests
{
    private PooldInstance _poold = null!;
    private string _work = null!;

    [OneTimeSetUp]
    public async Task StartPoold()
    {
        _poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, onlyNode: 0) + "health_check_period = 0\n", ssl: false);
        _work = Directory.CreateTempSubdirectory("poold-repl-").FullName;
    }

    [OneTimeTearDown]
    public async Task StopPoold()
    {
        await _poold.DisposeAsync();
        Directory.Delete(_work, recursive: true);
    }

    private async Task<(int ExitCode, string Output)> ToolAsync(string tool, params string[] arguments)
    {
        var (code, stdout, stderr) = await ProcessRunner.RunAsync(ToolStart(tool, arguments), TimeSpan.FromSeconds(120));
        return (code, stdout + stderr);
    }

    /// <summary>A PostgreSQL client tool pointed at Poold, as the admin role.</summary>
    private ProcessStartInfo ToolStart(string tool, string[] arguments)
    {
        var start = new ProcessStartInfo(Path.Combine(PgCluster.BinDirectory, tool)) { WorkingDirectory = _work };
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", _poold.Port.ToString(CultureInfo.InvariantCulture) }.Concat(arguments))
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["PGPASSWORD"] = TestRoles.Password(TestRoles.Admin);
        start.Environment["PGCONNECT_TIMEOUT"] = "10";
        return start;
    }

    private static async Task<string> PrimaryLsnAsync() => (string)(await ClusterFixture.Cluster.ScalarAsync(0, "SELECT pg_current_wal_lsn()::text"))!;

    private async Task AssertNothingCachedAsync() =>
        await Poll.UntilAsync(() => Task.FromResult(_poold.Host.Pool.IdleCount == 0 && _poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(10),
            "no replication connection to be cached or left open");

    [Test]
    public async Task PgBasebackup_ThroughPoold_CopiesThePrimary()
    {
        var target = Path.Combine(_work, "base");
        var (code, output) = await ToolAsync("pg_basebackup", "-U", "postgres", "-D", target, "-X", "stream", "-c", "fast", "--no-sync");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(File.ReadAllText(Path.Combine(target, "PG_VERSION")).Trim(), Is.EqualTo("15"));
        await AssertNothingCachedAsync();
    }

    [Test]
    public async Task PgReceivewal_ThroughPoold_StreamsWalUpToAPosition()
    {
        var target = Directory.CreateDirectory(Path.Combine(_work, "wal")).FullName;
        await ClusterFixture.Cluster.ScalarAsync(0, "CREATE TABLE IF NOT EXISTS repl_wal (x int); INSERT INTO repl_wal SELECT generate_series(1, 1000)");
        var end = await PrimaryLsnAsync();
        var (code, output) = await ToolAsync("pg_receivewal", "-U", "postgres", "-D", target, "--endpos", end, "--no-loop", "--no-sync");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(Directory.GetFiles(target), Is.Not.Empty, "WAL segments written");
        await AssertNothingCachedAsync();
    }

    [Test]
    public async Task PgRecvlogical_WithTestDecoding_ReceivesTheChanges()
    {
        var slot = $"poold_slot_{Guid.NewGuid():N}"[..24];
        var common = new[] { "-U", TestRoles.Admin, "-d", PgCluster.TestDatabase, "-S", slot };
        var (created, createOutput) = await ToolAsync("pg_recvlogical", [.. common, "--create-slot", "-P", "test_decoding"]);
        Assert.That(created, Is.EqualTo(0), createOutput);
        try
        {
            await ClusterFixture.Cluster.ScalarAsync(0, "CREATE TABLE IF NOT EXISTS repl_logical (id int, note text)");
            await ClusterFixture.Cluster.ScalarAsync(0, $"INSERT INTO repl_logical VALUES (42, '{slot}')");
            var file = Path.Combine(_work, slot + ".txt");

            // Streams until stopped (no --endpos: pg_recvlogical may stop there on a keepalive before the decoded
            // transaction arrives); the change must show up in its output file, then SIGINT ends it cleanly.
            using var receiver = Process.Start(ToolStart("pg_recvlogical", [.. common, "--start", "-f", file, "--no-loop", "-F", "1"]))!;
            try
            {
                await Poll.UntilAsync(() => Task.FromResult(File.Exists(file) && File.ReadAllText(file).Contains("INSERT", StringComparison.Ordinal)),
                    TimeSpan.FromSeconds(30), "pg_recvlogical to write the decoded INSERT");
            }
            finally
            {
                await ProcessRunner.RunAsync(new ProcessStartInfo("kill", ["-INT", receiver.Id.ToString(CultureInfo.InvariantCulture)]),
                    TimeSpan.FromSeconds(10));
                using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                await receiver.WaitForExitAsync(exited.Token);
            }

            Assert.That(File.ReadAllText(file), Does.Contain("table public.repl_logical: INSERT: id[integer]:42"));
        }
        finally
        {
            var (dropped, dropOutput) = await ToolAsync("pg_recvlogical", [.. common, "--drop-slot"]);
            Assert.That(dropped, Is.EqualTo(0), dropOutput);
        }

        await AssertNothingCachedAsync();
    }

    [Test]
    public async Task ReplicationConnection_AfterAFailover_ReachesTheNewPrimaryAtTheSameAddress()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 1);
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(cluster) + """
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

            """, ssl: false);

        // psql on a logical replication connection runs replication commands: IDENTIFY_SYSTEM gives the timeline.
        async Task<string> TimelineAsync()
        {
            var start = new ProcessStartInfo("psql");
            foreach (var a in new[]
                     {
                         $"host=127.0.0.1 port={poold.Port} user={TestRoles.Admin} dbname={PgCluster.TestDatabase} replication=database",
                         "-At", "-F", ",", "-c", "IDENTIFY_SYSTEM",
                     })
            {
                start.ArgumentList.Add(a);
            }

            start.Environment["PGPASSWORD"] = TestRoles.Password(TestRoles.Admin);
            var (code, stdout, stderr) = await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(30));
            Assert.That(code, Is.EqualTo(0), stderr);
            return stdout.Trim().Split(',')[1];
        }

        Assert.That(await TimelineAsync(), Is.EqualTo("1"));
        await cluster.KillNodeAsync(0);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[0].Status == Backends.NodeStatus.Down), TimeSpan.FromSeconds(30),
            "node 0 to be down");
        await cluster.PromoteAsync(1);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.PrimaryNodeId == 1), TimeSpan.FromSeconds(60), "Poold to follow the promotion");
        Assert.That(await TimelineAsync(), Is.EqualTo("2"), "the same address now reaches the promoted server, on its new timeline");
    }

    [Test]
    public async Task Subscription_OnAnotherServer_ThroughPoold_ReceivesChanges()
    {
        await using var subscriber = await PgCluster.StartAsync(replicas: 0);
        var name = $"repl_sub_{Guid.NewGuid():N}"[..20];
        await ClusterFixture.Cluster.ScalarAsync(0, $"CREATE TABLE {name} (id int PRIMARY KEY); CREATE PUBLICATION {name} FOR TABLE {name}");
        await subscriber.ScalarAsync(0, $"CREATE TABLE {name} (id int PRIMARY KEY)");
        var conninfo = $"host=127.0.0.1 port={_poold.Port} user={TestRoles.Admin} password={TestRoles.Password(TestRoles.Admin)} dbname={PgCluster.TestDatabase}";
        await subscriber.ScalarAsync(0, $"CREATE SUBSCRIPTION {name} CONNECTION '{conninfo}' PUBLICATION {name}");
        try
        {
            await ClusterFixture.Cluster.ScalarAsync(0, $"INSERT INTO {name} SELECT generate_series(1, 50)");
            await Poll.UntilAsync(async () => Convert.ToInt64(await subscriber.ScalarAsync(0, $"SELECT count(*) FROM {name}"), CultureInfo.InvariantCulture) == 50,
                TimeSpan.FromSeconds(30), "the subscriber to receive the rows");
        }
        finally
        {
            await subscriber.ScalarAsync(0, $"DROP SUBSCRIPTION {name}");
            await ClusterFixture.Cluster.ScalarAsync(0, $"DROP PUBLICATION {name}; DROP TABLE {name}");
        }
    }
}
