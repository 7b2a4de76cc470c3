using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Patroni;

/// <summary>
/// backend_discovery = patroni against a real three-member Patroni cluster on etcd: Poold follows Patroni's leader,
/// respects its tags, and loses no acknowledged write when Patroni fails over (operations issue 21, item 1).
/// </summary>
[NonParallelizable]
public class PatroniFollowTests
{
    private PatroniCluster? _patroni;

    [OneTimeSetUp]
    public async Task StartPatroni()
    {
        if (PatroniCluster.Unavailable is { } why)
        {
            Assert.Ignore(why);
        }

        _patroni = await PatroniCluster.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopPatroni()
    {
        if (_patroni is not null)
        {
            await _patroni.DisposeAsync();
        }
    }

    private static string PooldConfig(PatroniCluster patroni) =>
        string.Concat(patroni.Members.Select((m, i) => $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {m.PgPort}\nbackend_weight{i} = 1\n"))
        + "backend_discovery = 'patroni'\n"
        + $"patroni_urls = '{patroni.Urls}'\n"
        + "patroni_check_period = 200\n"
        + "health_check_period = 1\nhealth_check_timeout = 5\nhealth_check_user = 'postgres'\n"
        + "sr_check_period = 1\nsr_check_user = 'postgres'\n"
        + "load_balance_mode = on\nfailover_on_backend_error = on\n";

    private static NpgsqlConnectionStringBuilder Client(PooldInstance poold) => new()
    {
        Host = "127.0.0.1",
        Port = poold.Port,
        Username = "postgres",
        Database = "postgres",
        SslMode = SslMode.Disable,
        Pooling = false,
        Timeout = 10,
        CommandTimeout = 10,
    };

    [Test]
    public async Task LeaderStopped_PooldFollowsPatronisNewLeader_AndNoAcknowledgedWriteIsLost()
    {
        var patroni = _patroni!;
        await using var poold = await PooldInstance.StartAsync(PooldConfig(patroni), ssl: false);
        var leader = (await patroni.ClusterAsync()).Single(m => m.Role == "leader");
        var leaderNode = patroni.Members.ToList().FindIndex(m => m.PgPort == leader.Port);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.PrimaryNodeId == leaderNode), TimeSpan.FromSeconds(10),
            "Poold to take Patroni's leader as the primary");
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[2].NoLoadBalance), TimeSpan.FromSeconds(10),
            "Poold to read member 2's noloadbalance tag");

        // Reads are balanced, never to the member tagged noloadbalance.
        var readPorts = new List<int>();
        for (var i = 0; i < 20; i++)
        {
            await using var reader = new NpgsqlConnection(Client(poold).ConnectionString);
            await reader.OpenAsync();
            readPorts.Add((int)(await new NpgsqlCommand("SELECT inet_server_port()", reader).ExecuteScalarAsync())!);
        }

        Assert.That(readPorts, Does.Not.Contain(patroni.Members[2].PgPort), "member 2 is tagged noloadbalance");

        await using (var setup = new NpgsqlConnection(Client(poold).ConnectionString))
        {
            await setup.OpenAsync();
            await new NpgsqlCommand("CREATE TABLE IF NOT EXISTS ledger (id int PRIMARY KEY)", setup).ExecuteNonQueryAsync();
        }

        // A writer that records every insert the server acknowledged and reconnects after any error.
        var acknowledged = new ConcurrentBag<int>();
        using var stopWriting = new CancellationTokenSource();
        var errors = new ConcurrentBag<string>();
        var writer = Task.Run(async () =>
        {
            var next = 0;
            while (!stopWriting.IsCancellationRequested)
            {
                try
                {
                    await using var connection = new NpgsqlConnection(Client(poold).ConnectionString);
                    await connection.OpenAsync();
                    while (!stopWriting.IsCancellationRequested)
                    {
                        var id = Interlocked.Increment(ref next);
                        await new NpgsqlCommand($"INSERT INTO ledger VALUES ({id})", connection).ExecuteNonQueryAsync();
                        acknowledged.Add(id);
                    }
                }
                catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException)
                {
                    errors.Add(e.Message);
                    await Task.Delay(50);
                }
            }
        });

        await Poll.UntilAsync(() => Task.FromResult(acknowledged.Count >= 50), TimeSpan.FromSeconds(30), "writes before the switch");
        var watch = Stopwatch.StartNew();
        await patroni.StopMemberAsync(patroni.Members[leaderNode]);
        var newLeader = -1;
        await Poll.UntilAsync(async () =>
        {
            var members = await patroni.ClusterAsync();
            newLeader = patroni.Members.ToList().FindIndex(m => members.Any(x => x.Port == m.PgPort && x.Role == "leader" && x.State == "running"));
            return newLeader >= 0 && newLeader != leaderNode;
        }, TimeSpan.FromSeconds(60), "Patroni to promote a replica");
        var promoted = watch.Elapsed;
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.PrimaryNodeId == newLeader), TimeSpan.FromSeconds(10),
            "Poold to follow the new leader");
        var followed = watch.Elapsed;
        var before = acknowledged.Count;
        await Poll.UntilAsync(() => Task.FromResult(acknowledged.Count >= before + 50), TimeSpan.FromSeconds(30), "writes after the switch");
        var resumed = watch.Elapsed;
        await stopWriting.CancelAsync();
        await writer;

        await TestContext.Out.WriteLineAsync(
            $"Patroni promoted member {newLeader} {promoted.TotalSeconds:0.0} s after the leader's stop; Poold followed at {followed.TotalSeconds:0.0} s; " +
            $"writes resumed through Poold by {resumed.TotalSeconds:0.0} s; {acknowledged.Count} acknowledged, {errors.Count} client errors " +
            $"({string.Join(" | ", errors.Distinct().Take(3))})");
        Assert.That((followed - promoted).TotalSeconds, Is.LessThan(5), "Poold follows within a few Patroni polls of the promotion");

        await using var direct = new NpgsqlConnection($"Host=127.0.0.1;Port={patroni.Members[newLeader].PgPort};Username=postgres;Database=postgres;Pooling=false");
        await direct.OpenAsync();
        var stored = new HashSet<int>();
        await using (var reader = await new NpgsqlCommand("SELECT id FROM ledger", direct).ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                stored.Add(reader.GetInt32(0));
            }
        }

        // Asynchronous replication may lose writes Patroni's switchover did not wait for; a clean stop of the leader
        // (SIGTERM: a fast shutdown that ships the WAL to the replicas first) loses none.
        Assert.That(acknowledged.Where(id => !stored.Contains(id)).ToList(), Is.Empty, "every acknowledged insert is on the new primary");
        Assert.That(poold.Log, Does.Not.Contain("failover_command"), "Poold ran no failover command of its own");
    }

    [Test]
    public async Task PatroniUnreachable_TheLastViewStays_AndShowPoolNodesSaysSo()
    {
        var patroni = _patroni!;
        var deadPort = Cluster.FreePort.Get();
        var config = PooldConfig(patroni).Replace($"patroni_urls = '{patroni.Urls}'", $"patroni_urls = 'http://127.0.0.1:{deadPort}'",
            StringComparison.Ordinal);
        await using var poold = await PooldInstance.StartAsync(config, ssl: false);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.DiscoveryWarning is not null), TimeSpan.FromSeconds(10),
            "Poold to notice that Patroni does not answer");

        // Without Patroni's view, Poold's own replication check finds the node that is not in recovery.
        var leader = (await patroni.ClusterAsync()).Single(m => m.Role == "leader");
        var leaderNode = patroni.Members.ToList().FindIndex(m => m.PgPort == leader.Port);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.PrimaryNodeId == leaderNode), TimeSpan.FromSeconds(15),
            "Poold's replication check to find the primary");

        await using var connection = new NpgsqlConnection(Client(poold).ConnectionString);
        var notices = new List<string>();
        connection.Notice += (_, e) => notices.Add(e.Notice.MessageText);
        await connection.OpenAsync();
        await using (var reader = await new NpgsqlCommand("SHOW POOL_NODES", connection).ExecuteReaderAsync())
        {
            var rows = 0;
            while (await reader.ReadAsync())
            {
                rows++;
            }

            Assert.That(rows, Is.EqualTo(3));
        }

        Assert.That(notices, Has.Some.Contains("Patroni's view has not been readable"));
        Assert.That(poold.Log, Does.Contain("Patroni's view cannot be read"));
    }
}
