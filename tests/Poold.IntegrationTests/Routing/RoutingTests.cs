using System.Globalization;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Routing;

/// <summary>
/// Reads on replicas by weight, everything else on the primary, through real sessions. Which node ran a statement is
/// read from <c>inet_server_port()</c> in the same statement (STABLE, so pgpool-II's rules balance it).
/// </summary>
public class RoutingTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static int PrimaryPort => Cluster.Nodes[0].Port;

    /// <summary>Poold over the three nodes with the given weights (primary first).</summary>
    private static Task<PooldInstance> StartAsync(double[] weights, string extra = "")
    {
        var lines = new System.Text.StringBuilder();
        for (var i = 0; i < 3; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {Cluster.Nodes[i].Port}\nbackend_weight{i} = {weights[i]}\n");
        }

        return PooldInstance.StartAsync(lines + "log_per_node_statement = on\n" + extra, ssl: false);
    }

    private static async Task<NpgsqlConnection> OpenAsync(PooldInstance poold, string? applicationName = null, bool autoPrepare = false,
        string user = TestRoles.ScramUser)
    {
        var builder = poold.ConnectionString(user, TestRoles.Password(user), sslMode: SslMode.Disable);
        builder.ApplicationName = applicationName;
        if (autoPrepare)
        {
            builder.MaxAutoPrepare = 10;
            builder.AutoPrepareMinUsages = 2;
        }

        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<int> PortAsync(NpgsqlConnection connection, string sql = "SELECT inet_server_port()", NpgsqlTransaction? tx = null) =>
        Convert.ToInt32(await new NpgsqlCommand(sql, connection, tx).ExecuteScalarAsync(), CultureInfo.InvariantCulture);

    [Test]
    public async Task Sessions_SpreadOverReplicasByWeight_WeightZeroGetsNone()
    {
        await using var poold = await StartAsync([0, 1, 2]);
        var counts = new Dictionary<int, int>();
        const int Sessions = 300;
        for (var i = 0; i < Sessions; i++)
        {
            await using var connection = await OpenAsync(poold);
            var port = await PortAsync(connection);
            counts[port] = counts.GetValueOrDefault(port) + 1;
        }

        var share1 = 100.0 * counts.GetValueOrDefault(Cluster.Nodes[1].Port) / Sessions;
        var share2 = 100.0 * counts.GetValueOrDefault(Cluster.Nodes[2].Port) / Sessions;
        await TestContext.Out.WriteLineAsync($"node 1: {share1:0.0}% (expected 33.3), node 2: {share2:0.0}% (expected 66.7)");
        Assert.That(counts.GetValueOrDefault(PrimaryPort), Is.Zero, "weight 0: the primary gets no balanced read");
        // 300 draws: one standard deviation is 2.7 points; ±9.5 (3.5 sd) fails a correct draw about once in 2,000 runs
        // and still catches a wrong weighting (an even split is 16.7 points off).
        Assert.That(share1, Is.InRange(100.0 / 3 - 9.5, 100.0 / 3 + 9.5));
        Assert.That(share2, Is.InRange(200.0 / 3 - 9.5, 200.0 / 3 + 9.5));
    }

    /// <summary>
    /// A function created (or made volatile) through Poold a moment ago runs on the primary at once, in the session that
    /// made it and in one that was already open: the catalog Poold read at login does not know it yet, and a balanced
    /// call reached a standby (25006, or 42883 before the standby replayed it). Once a new session reads the catalog
    /// again, a STABLE function is balanced as before.
    /// </summary>
    [TestCase("session")]
    [TestCase("transaction")]
    public async Task AFunctionCreatedThroughPoold_RunsOnThePrimaryUntilTheCatalogIsReadAgain(string poolMode)
    {
        await using var poold = await StartAsync([0, 1, 1], $"pool_mode = {poolMode}\n");
        await using var creator = await OpenAsync(poold);
        await using var other = await OpenAsync(poold);
        var table = "rt_" + Guid.NewGuid().ToString("N")[..8];
        var function = table + "_Write";
        await new NpgsqlCommand($"CREATE TABLE {table} (port int)", creator).ExecuteNonQueryAsync();
        try
        {
            Assert.That(await PortAsync(other), Is.Not.EqualTo(PrimaryPort), "a plain read is balanced to a replica");
            await new NpgsqlCommand($"""
                CREATE FUNCTION {function}() RETURNS int LANGUAGE sql VOLATILE
                AS 'INSERT INTO {table} VALUES (inet_server_port()) RETURNING port'
                """, creator).ExecuteNonQueryAsync();
            Assert.That(await PortAsync(creator, $"SELECT {function}()"), Is.EqualTo(PrimaryPort), "the creating session");
            Assert.That(await PortAsync(other, $"SELECT public.{function.ToUpperInvariant()}()"), Is.EqualTo(PrimaryPort),
                "a session open before (the name folded, schema-qualified)");

            // Made STABLE (and read-only) by an ALTER through Poold: still the primary until the catalog is read again.
            await new NpgsqlCommand($"CREATE OR REPLACE FUNCTION {function}() RETURNS int LANGUAGE sql AS 'SELECT inet_server_port()'",
                creator).ExecuteNonQueryAsync();
            await new NpgsqlCommand($"ALTER FUNCTION {function}() STABLE", creator).ExecuteNonQueryAsync();
            Assert.That(await PortAsync(other, $"SELECT {function}()"), Is.EqualTo(PrimaryPort));
            await Cluster.WaitForReplayAsync();
            await using var later = await OpenAsync(poold);
            Assert.That(await PortAsync(later, $"SELECT {function}()"), Is.Not.EqualTo(PrimaryPort), "a new session read the catalog: STABLE, balanced");
        }
        finally
        {
            await new NpgsqlCommand($"DROP FUNCTION IF EXISTS {function}(); DROP TABLE {table}", creator).ExecuteNonQueryAsync();
        }
    }

    /// <summary>
    /// A STABLE function made VOLATILE inside a transaction: a session that starts while that transaction is open reads
    /// the catalog and still finds it STABLE; once the transaction commits, calls of it go to the primary (the catalog is
    /// read again by the next session that starts).
    /// </summary>
    [TestCase("session")]
    [TestCase("transaction")]
    public async Task AFunctionMadeVolatileInATransaction_RunsOnThePrimaryOnceItCommits(string poolMode)
    {
        await using var poold = await StartAsync([0, 1, 1], $"pool_mode = {poolMode}\n");
        await using var creator = await OpenAsync(poold);
        var function = "rt_" + Guid.NewGuid().ToString("N")[..8] + "_port";
        await new NpgsqlCommand($"CREATE FUNCTION {function}() RETURNS int LANGUAGE sql STABLE AS 'SELECT inet_server_port()'", creator)
            .ExecuteNonQueryAsync();
        try
        {
            await Cluster.WaitForReplayAsync();
            await using (var reader = await OpenAsync(poold))
            {
                Assert.That(await PortAsync(reader, $"SELECT {function}()"), Is.Not.EqualTo(PrimaryPort), "STABLE: balanced");
            }

            await using (var tx = await creator.BeginTransactionAsync())
            {
                await new NpgsqlCommand($"CREATE OR REPLACE FUNCTION {function}() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT inet_server_port()'",
                    creator, tx).ExecuteNonQueryAsync();
                await using var during = await OpenAsync(poold);
                Assert.That(await PortAsync(during), Is.Not.EqualTo(PrimaryPort), "a session started (and read the catalog) meanwhile");
                await tx.CommitAsync();
            }

            await Cluster.WaitForReplayAsync();
            await using var after = await OpenAsync(poold);
            Assert.That(await PortAsync(after, $"SELECT {function}()"), Is.EqualTo(PrimaryPort), "VOLATILE now");
            Assert.That(await PortAsync(creator, $"SELECT {function}()"), Is.EqualTo(PrimaryPort), "VOLATILE now, in the session that changed it");
        }
        finally
        {
            await new NpgsqlCommand($"DROP FUNCTION IF EXISTS {function}()", creator).ExecuteNonQueryAsync();
        }
    }

    [Test]
    public async Task WritesLocksVolatileFunctionsAndSerializable_RunOnThePrimary()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var connection = await OpenAsync(poold);
        var table = "rt_" + Guid.NewGuid().ToString("N")[..8];
        await new NpgsqlCommand($"CREATE TABLE {table} (id serial, port int)", connection).ExecuteNonQueryAsync();
        try
        {
            Assert.That(await PortAsync(connection), Is.Not.EqualTo(PrimaryPort), "a plain read is balanced to a replica");
            Assert.That(await PortAsync(connection, $"INSERT INTO {table} (port) SELECT inet_server_port() RETURNING port"), Is.EqualTo(PrimaryPort));
            Assert.That(await PortAsync(connection, $"WITH w AS (UPDATE {table} SET port = port RETURNING port) SELECT inet_server_port() FROM w LIMIT 1"),
                Is.EqualTo(PrimaryPort), "writable CTE");
            Assert.That(await PortAsync(connection, $"SELECT inet_server_port() FROM {table} FOR UPDATE"), Is.EqualTo(PrimaryPort));
            Assert.That(await PortAsync(connection, $"SELECT inet_server_port() + 0 * nextval('{table}_id_seq')"), Is.EqualTo(PrimaryPort),
                "nextval is volatile");
            Assert.That(await PortAsync(connection, "SELECT inet_server_port() + 0 * random()::int"), Is.EqualTo(PrimaryPort), "random() is volatile");
            Assert.That(await PortAsync(connection, "SELECT inet_server_port() + 0 * txid_current()"), Is.EqualTo(PrimaryPort),
                "txid_current() is STABLE but a standby refuses it");
            Assert.That(await PortAsync(connection, "SELECT inet_server_port() FROM pg_catalog.pg_class LIMIT 1"), Is.EqualTo(PrimaryPort),
                "system catalogs are read on the primary");

            await using (var tx = await connection.BeginTransactionAsync(System.Data.IsolationLevel.Serializable))
            {
                Assert.That(await PortAsync(connection, tx: tx), Is.EqualTo(PrimaryPort), "SERIALIZABLE transactions stay on the primary");
                await tx.CommitAsync();
            }

            await using (var tx = await connection.BeginTransactionAsync())
            {
                var firstRead = await PortAsync(connection, tx: tx);
                Assert.That(firstRead, Is.Not.EqualTo(PrimaryPort), "a read before any write in a transaction is balanced");
                await new NpgsqlCommand($"INSERT INTO {table} (port) VALUES (0)", connection, tx).ExecuteNonQueryAsync();
                Assert.That(await PortAsync(connection, tx: tx), Is.EqualTo(PrimaryPort), "after a write the transaction reads on the primary");
                Assert.That(await PortAsync(connection, $"SELECT count(*)::int FROM {table} WHERE port = 0", tx), Is.EqualTo(1),
                    "the transaction sees its own write");
                await tx.CommitAsync();
            }

            Assert.That(await PortAsync(connection), Is.Not.EqualTo(PrimaryPort), "after COMMIT reads are balanced again (transaction mode)");

            await new NpgsqlCommand("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", connection).ExecuteNonQueryAsync();
            Assert.That(await PortAsync(connection), Is.EqualTo(PrimaryPort), "a SERIALIZABLE session reads on the primary (pgpool-II does not track this)");
        }
        finally
        {
            await new NpgsqlCommand($"DROP TABLE {table}", connection).ExecuteNonQueryAsync();
        }
    }

    [Test]
    public async Task ErrorsInsideABalancedTransaction_AbortItEverywhere_AndTheSessionRecovers()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var connection = await OpenAsync(poold);
        await using (var tx = await connection.BeginTransactionAsync())
        {
            Assert.That(await PortAsync(connection, tx: tx), Is.Not.EqualTo(PrimaryPort));
            var e = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("SELECT 1/0", connection, tx).ExecuteScalarAsync());
            Assert.That(e!.SqlState, Is.EqualTo("22012"));
            var aborted = Assert.ThrowsAsync<PostgresException>(async () =>
                await new NpgsqlCommand("CREATE TABLE must_not_exist_anywhere (a int)", connection, tx).ExecuteNonQueryAsync());
            Assert.That(aborted!.SqlState, Is.EqualTo("25P02"), "a write after the error is refused, not run on the primary");
            await tx.RollbackAsync();
        }

        Assert.That(await PortAsync(connection, "SELECT count(*)::int FROM pg_catalog.pg_tables WHERE tablename = 'must_not_exist_anywhere'"), Is.Zero);
        Assert.That(await PortAsync(connection, "SELECT 7"), Is.EqualTo(7));
    }

    [Test]
    public async Task SessionSettings_FollowTheSessionToTheReplica()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var connection = await OpenAsync(poold, user: TestRoles.Admin);
        var schema = "rs_" + Guid.NewGuid().ToString("N")[..8];
        await new NpgsqlCommand($"CREATE SCHEMA {schema}; CREATE TABLE {schema}.only_here (v text); INSERT INTO {schema}.only_here VALUES ('found')",
            connection).ExecuteNonQueryAsync();
        try
        {
            await Cluster.WaitForReplayAsync();
            await new NpgsqlCommand($"SET search_path = {schema}, public", connection).ExecuteNonQueryAsync();
            await new NpgsqlCommand("SET application_name = 'routed-app'", connection).ExecuteNonQueryAsync();
            await using var reader = await new NpgsqlCommand(
                "SELECT inet_server_port(), (SELECT v FROM only_here), current_setting('search_path'), current_setting('application_name')",
                connection).ExecuteReaderAsync();
            Assert.That(await reader.ReadAsync(), Is.True);
            Assert.That(reader.GetInt32(0), Is.Not.EqualTo(PrimaryPort), "ran on a replica");
            Assert.That((reader.GetString(1), reader.GetString(2), reader.GetString(3)), Is.EqualTo(("found", $"{schema}, public", "routed-app")));
        }
        finally
        {
            await new NpgsqlCommand($"DROP SCHEMA {schema} CASCADE", connection).ExecuteNonQueryAsync();
        }
    }

    [Test]
    public async Task TemporaryTables_AreUsableAndStayOnThePrimary()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var connection = await OpenAsync(poold);
        await new NpgsqlCommand("CREATE TEMP TABLE scratch (a int)", connection).ExecuteNonQueryAsync();
        await new NpgsqlCommand("INSERT INTO scratch VALUES (1), (2), (3)", connection).ExecuteNonQueryAsync();
        Assert.That(await PortAsync(connection, "SELECT sum(a)::int FROM scratch"), Is.EqualTo(6));
        Assert.That(await PortAsync(connection, "SELECT inet_server_port() FROM scratch LIMIT 1"), Is.EqualTo(PrimaryPort));
        Assert.That(await PortAsync(connection), Is.Not.EqualTo(PrimaryPort), "other reads are still balanced");
    }

    [Test]
    public async Task PreparedStatements_Reused1000TimesAcrossBalancedNodes_ReturnCorrectResults()
    {
        // statement_level_load_balance re-draws the node for every read, so the prepared statement must follow.
        await using var poold = await StartAsync([0, 1, 1], "statement_level_load_balance = on\n");
        await using var connection = await OpenAsync(poold);
        await using var command = new NpgsqlCommand("SELECT $1::int * 2, inet_server_port()", connection);
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Integer });
        await command.PrepareAsync();
        var ports = new HashSet<int>();
        for (var i = 0; i < 1000; i++)
        {
            command.Parameters[0].Value = i;
            await using var reader = await command.ExecuteReaderAsync();
            Assert.That(await reader.ReadAsync(), Is.True);
            Assert.That(reader.GetInt32(0), Is.EqualTo(i * 2));
            ports.Add(reader.GetInt32(1));
        }

        Assert.That(ports, Is.EquivalentTo(new[] { Cluster.Nodes[1].Port, Cluster.Nodes[2].Port }), "both replicas ran the prepared statement");
        await command.UnprepareAsync();
        Assert.That(await PortAsync(connection, "SELECT 5"), Is.EqualTo(5));
    }

    [Test]
    public async Task NpgsqlAutoPrepare_WorksWithLoadBalancing()
    {
        await using var poold = await StartAsync([1, 1, 1], "statement_level_load_balance = on\n");
        await using var connection = await OpenAsync(poold, autoPrepare: true);
        for (var i = 0; i < 200; i++)
        {
            await using var command = new NpgsqlCommand("SELECT $1::int + 1", connection) { Parameters = { new() { Value = i } } };
            Assert.That(await command.ExecuteScalarAsync(), Is.EqualTo(i + 1));
        }
    }

    [Test]
    public async Task DisableLoadBalanceOnWriteAlways_SendsLaterReadsToThePrimary()
    {
        await using var poold = await StartAsync([0, 1, 1], "disable_load_balance_on_write = always\n");
        await using var connection = await OpenAsync(poold);
        Assert.That(await PortAsync(connection), Is.Not.EqualTo(PrimaryPort));
        await new NpgsqlCommand("CREATE TEMP TABLE w (a int)", connection).ExecuteNonQueryAsync();
        Assert.That(await PortAsync(connection), Is.EqualTo(PrimaryPort));
    }

    [Test]
    public async Task AppNameRedirect_SendsMatchingApplicationsToTheirNode()
    {
        await using var poold = await StartAsync([0, 1, 1], "app_name_redirect_preference_list = 'reporting.*:2,primaryapp:primary'\n");
        for (var i = 0; i < 10; i++)
        {
            await using var reporting = await OpenAsync(poold, "reporting-job");
            Assert.That(await PortAsync(reporting), Is.EqualTo(Cluster.Nodes[2].Port));
            await using var pinned = await OpenAsync(poold, "primaryapp");
            Assert.That(await PortAsync(pinned), Is.EqualTo(PrimaryPort));
        }
    }

    [Test]
    public async Task LoadBalanceModeOff_KeepsEverythingOnThePrimary()
    {
        await using var poold = await StartAsync([1, 1, 1], "load_balance_mode = off\n");
        await using var connection = await OpenAsync(poold);
        for (var i = 0; i < 10; i++)
        {
            Assert.That(await PortAsync(connection), Is.EqualTo(PrimaryPort));
        }
    }

    [Test]
    public async Task ListenNotify_AndCopy_WorkWithReplicasInUse()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var listener = await OpenAsync(poold);
        Assert.That(await PortAsync(listener), Is.Not.EqualTo(PrimaryPort), "the session uses a replica too");
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        listener.Notification += (_, e) => received.TrySetResult(e.Payload);
        await new NpgsqlCommand("LISTEN routed_channel", listener).ExecuteNonQueryAsync();
        await using (var sender = await OpenAsync(poold))
        {
            await new NpgsqlCommand("NOTIFY routed_channel, 'hello'", sender).ExecuteNonQueryAsync();
        }

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (!received.Task.IsCompleted)
        {
            await listener.WaitAsync(deadline.Token);
        }

        Assert.That(await received.Task, Is.EqualTo("hello"));
        using var export = await listener.BeginTextExportAsync("COPY (SELECT generate_series(1, 3)) TO STDOUT");
        Assert.That(await export.ReadToEndAsync(), Is.EqualTo("1\n2\n3\n"));
    }

    [Test]
    public async Task TransactionControlInsideExtendedBatches_AsJdbcSendsIt_ReachesEveryNodeInTheTransaction()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var connection = await OpenAsync(poold);
        var table = "jb_" + Guid.NewGuid().ToString("N")[..8];
        await new NpgsqlCommand($"CREATE TABLE {table} (port int)", connection).ExecuteNonQueryAsync();
        await Cluster.WaitForReplayAsync();
        try
        {
            async Task<List<int>> BatchAsync(params string[] statements)
            {
                await using var batch = new NpgsqlBatch(connection);
                foreach (var sql in statements)
                {
                    batch.BatchCommands.Add(new NpgsqlBatchCommand(sql));
                }

                var ports = new List<int>();
                await using var reader = await batch.ExecuteReaderAsync();
                do
                {
                    while (await reader.ReadAsync())
                    {
                        ports.Add(reader.GetInt32(0));
                    }
                }
                while (await reader.NextResultAsync());
                return ports;
            }

            var first = await BatchAsync("BEGIN", "SELECT inet_server_port()");
            Assert.That(first.Single(), Is.Not.EqualTo(PrimaryPort), "BEGIN and a read in one batch run on a replica");
            var written = await BatchAsync($"INSERT INTO {table} SELECT inet_server_port() RETURNING port", "SELECT inet_server_port()");
            Assert.That(written, Is.EqualTo(new[] { PrimaryPort, PrimaryPort }), "the write and the reads after it run on the primary");
            await BatchAsync("COMMIT");
            await Cluster.WaitForReplayAsync();
            var cnt = await PortAsync(connection, "SELECT pg_catalog.count(*)::int FROM " + table);
            Assert.That(cnt, Is.EqualTo(1), "committed");
            Assert.That(await PortAsync(connection, "SELECT count(*)::int FROM pg_catalog.pg_stat_activity WHERE usename = current_user AND state LIKE 'idle in transaction%'"),
                Is.Zero, "no transaction is left open on the primary");
            foreach (var replica in new[] { 1, 2 })
            {
                Assert.That(await Cluster.ScalarAsync(replica,
                        $"SELECT count(*) FROM pg_stat_activity WHERE usename = '{TestRoles.ScramUser}' AND state LIKE 'idle in transaction%'"),
                    Is.Zero, $"no transaction is left open on replica {replica}");
            }
        }
        finally
        {
            await new NpgsqlCommand($"DROP TABLE {table}", connection).ExecuteNonQueryAsync();
        }
    }

    [Test]
    public async Task DmlAdaptive_SendsOnlyReadsOfWrittenObjectsToThePrimary()
    {
        await using var poold = await StartAsync([0, 1, 1], "disable_load_balance_on_write = dml_adaptive\n");
        await using var connection = await OpenAsync(poold);
        var (written, other) = ("dw_" + Guid.NewGuid().ToString("N")[..8], "do_" + Guid.NewGuid().ToString("N")[..8]);
        await new NpgsqlCommand($"CREATE TABLE {written} (a int); CREATE TABLE {other} (a int)", connection).ExecuteNonQueryAsync();
        try
        {
            await Cluster.WaitForReplayAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await new NpgsqlCommand($"INSERT INTO {written} VALUES (1)", connection, tx).ExecuteNonQueryAsync();
            Assert.That(await PortAsync(connection, $"SELECT inet_server_port() FROM {written}", tx), Is.EqualTo(PrimaryPort));
            Assert.That(await PortAsync(connection, $"SELECT inet_server_port() FROM {other} UNION ALL SELECT inet_server_port()", tx),
                Is.Not.EqualTo(PrimaryPort), "a table the transaction did not write is still read on a replica");
            await tx.RollbackAsync();
        }
        finally
        {
            await new NpgsqlCommand($"DROP TABLE {written}, {other}", connection).ExecuteNonQueryAsync();
        }
    }

    [Test]
    public async Task TransTransaction_KeepsLaterTransactionsOnThePrimary_ButNotAutocommitReads()
    {
        await using var poold = await StartAsync([0, 1, 1], "disable_load_balance_on_write = trans_transaction\n");
        await using var connection = await OpenAsync(poold);
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await new NpgsqlCommand("CREATE TEMP TABLE tt (a int)", connection, tx).ExecuteNonQueryAsync();
            await tx.CommitAsync();
        }

        Assert.That(await PortAsync(connection), Is.Not.EqualTo(PrimaryPort), "reads outside transactions are still balanced");
        await using (var tx = await connection.BeginTransactionAsync())
        {
            Assert.That(await PortAsync(connection, tx: tx), Is.EqualTo(PrimaryPort), "a later transaction reads on the primary");
            await tx.CommitAsync();
        }
    }
}
