using System.Collections.Concurrent;
using System.Globalization;
using Npgsql;
using Poold.Backends;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.TransactionPooling;

/// <summary>
/// pool_mode = transaction across a failover, on a cluster of its own: sessions idle between transactions hold no
/// server connection, so after the primary dies and a replica is promoted their next transaction runs on the new
/// primary with no error; a session caught inside a transaction gets an error.
/// </summary>
[NonParallelizable]
public class TransactionModeFailoverTests
{
    private const string Table = "txfail_rows";

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
        pool_mode = transaction
        default_pool_size = 4

        """;

    private static NpgsqlConnection Connection(PooldInstance poold, string applicationName)
    {
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.ApplicationName = applicationName;
        builder.Pooling = false;
        builder.Timeout = 30;
        builder.CommandTimeout = 30;
        return new NpgsqlConnection(builder.ConnectionString);
    }

    [Test]
    public async Task IdleSessions_FollowThePromotedPrimary_WithNoError_AndASessionInsideATransactionGetsOne()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 1);
        await cluster.ScalarAsync(0, $"CREATE TABLE {Table} (client int, phase int); GRANT ALL ON {Table} TO PUBLIC");
        await cluster.WaitForReplayAsync();
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(cluster) + Checks, ssl: false);

        const int clients = 20;
        var sessions = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < clients; i++)
            {
                var c = Connection(poold, $"txfail-{i}");
                await c.OpenAsync();
                await using (var tx = await c.BeginTransactionAsync())
                {
                    await new NpgsqlCommand($"INSERT INTO {Table} VALUES ({i}, 1)", c, tx).ExecuteNonQueryAsync();
                    await tx.CommitAsync();
                }

                sessions.Add(c);
            }

            // One more session is left inside a transaction that has written on the old primary.
            await using var inside = Connection(poold, "txfail-inside");
            await inside.OpenAsync();
            var open = await inside.BeginTransactionAsync();
            await new NpgsqlCommand($"INSERT INTO {Table} VALUES (-1, 1)", inside, open).ExecuteNonQueryAsync();

            await cluster.KillNodeAsync(0);
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[0].Status == NodeStatus.Down), TimeSpan.FromSeconds(30),
                "node 0 to be detached");
            await cluster.PromoteAsync(1);
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.PrimaryNodeId == 1), TimeSpan.FromSeconds(60),
                "Poold to find the new primary");

            // Every idle session's next transaction: a write, its commit, then a read of it; not a single error.
            var failures = new ConcurrentQueue<string>();
            await Task.WhenAll(sessions.Select(async (c, i) =>
            {
                try
                {
                    await using (var tx = await c.BeginTransactionAsync())
                    {
                        await new NpgsqlCommand($"INSERT INTO {Table} VALUES ({i}, 2)", c, tx).ExecuteNonQueryAsync();
                        await tx.CommitAsync();
                    }

                    var seen = Convert.ToInt64(await new NpgsqlCommand($"SELECT count(*) FROM {Table} WHERE client = {i} AND phase = 2", c)
                        .ExecuteScalarAsync(), CultureInfo.InvariantCulture);
                    if (seen != 1)
                    {
                        failures.Enqueue($"client {i} read {seen} of its rows after the failover, expected 1");
                    }

                    var port = Convert.ToInt32(await new NpgsqlCommand("SELECT inet_server_port()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
                    if (port != cluster.Nodes[1].Port)
                    {
                        failures.Enqueue($"client {i} ran on port {port}, not on the new primary's {cluster.Nodes[1].Port}");
                    }
                }
                catch (Exception e)
                {
                    failures.Enqueue($"client {i}: {e.GetType().Name}: {e.Message}");
                }
            }));

            Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)) + "\nthe log:\n" + Tail(poold.Log));
            Assert.That(await cluster.ScalarAsync(1, $"SELECT count(DISTINCT client) FROM {Table} WHERE phase = 2"), Is.EqualTo((long)clients),
                "every post-failover row is on the new primary");
            await poold.WaitForLogAsync("the primary changed between transactions (node 0 to node 1)");

            // The session that was inside a transaction when its primary died cannot commit it.
            var error = Assert.CatchAsync(async () =>
            {
                await new NpgsqlCommand($"INSERT INTO {Table} VALUES (-1, 2)", inside, open).ExecuteNonQueryAsync();
                await open.CommitAsync();
            });
            Assert.That(error, Is.InstanceOf<NpgsqlException>().Or.InstanceOf<InvalidOperationException>());
            Assert.That(await cluster.ScalarAsync(1, $"SELECT count(*) FROM {Table} WHERE client = -1 AND phase = 2"), Is.Zero,
                "nothing of the broken transaction was committed");
        }
        finally
        {
            foreach (var c in sessions)
            {
                await c.DisposeAsync();
            }
        }
    }

    private static string Tail(string log) => log.Length <= 6000 ? log : log[^6000..];
}
