using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Observability;

/// <summary>
/// <c>PGPOOL EXPLAIN ROUTE statement</c>: the node a statement would go to now in this session and the rule that decided,
/// in the simple and the extended protocol, without running it; one case per rule the router has.
/// </summary>
public class ExplainRouteTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static Task<PooldInstance> StartAsync(double[] weights, string extra = "")
    {
        var lines = new StringBuilder();
        for (var i = 0; i < 3; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {Cluster.Nodes[i].Port}\nbackend_weight{i} = {weights[i]}\n");
        }

        return PooldInstance.StartAsync(lines + "log_per_node_statement = on\n" + extra, ssl: false);
    }

    private static async Task<NpgsqlConnection> OpenAsync(PooldInstance poold, string? applicationName = null)
    {
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.ApplicationName = applicationName;
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    /// <summary>Through Npgsql: the extended protocol (Parse, Bind, Describe, Execute, Sync).</summary>
    private static async Task<(int Node, string Rule, string Reason)> ExplainAsync(NpgsqlConnection connection, string statement)
    {
        await using var command = new NpgsqlCommand("PGPOOL EXPLAIN ROUTE " + statement, connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.That(await reader.ReadAsync(), Is.True);
        Assert.That(reader.GetName(0), Is.EqualTo("node_id"));
        return (int.Parse(reader.GetString(0), CultureInfo.InvariantCulture), reader.GetString(1), reader.GetString(2));
    }

    /// <summary>Through a raw simple Query.</summary>
    private static async Task<(int Node, string Rule, string Reason)> ExplainSimpleAsync(RawClient client, string statement)
    {
        await client.SendAsync(RawClient.Query("PGPOOL EXPLAIN ROUTE " + statement));
        var replies = await client.ReadUntilReadyAsync();
        Assert.That(replies.Select(m => m.Code), Is.EqualTo(new[] { 'T', 'D', 'C', 'Z' }), string.Join(" ", replies));
        var columns = DataRow(replies[1].Body);
        return (int.Parse(columns[0], CultureInfo.InvariantCulture), columns[1], columns[2]);
    }

    private static List<string> DataRow(byte[] body)
    {
        var count = BinaryPrimitives.ReadInt16BigEndian(body);
        var columns = new List<string>();
        var at = 2;
        for (var i = 0; i < count; i++)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(body.AsSpan(at));
            columns.Add(Encoding.UTF8.GetString(body, at + 4, length));
            at += 4 + length;
        }

        return columns;
    }

    private static async Task ExecAsync(NpgsqlConnection connection, string sql) => await new NpgsqlCommand(sql, connection).ExecuteNonQueryAsync();

    [Test]
    public async Task ExplainRoute_NamesTheRule_InTheExtendedProtocol_WithoutRunningTheStatement()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var connection = await OpenAsync(poold);
        var table = "er_" + Guid.NewGuid().ToString("N")[..8];
        await ExecAsync(connection, $"CREATE TABLE {table} (id serial, a int)");
        try
        {
            var read = await ExplainAsync(connection, $"SELECT a FROM {table}");
            Assert.That((read.Node is 1 or 2, read.Rule), Is.EqualTo((true, "weight draw")), read.Reason);
            var port = Convert.ToInt32(await new NpgsqlCommand("SELECT inet_server_port()", connection).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
            Assert.That(port, Is.EqualTo(Cluster.Nodes[read.Node].Port), "the read goes where EXPLAIN ROUTE said");

            var write = await ExplainAsync(connection, $"INSERT INTO {table} (a) VALUES (1)");
            Assert.That((write.Node, write.Rule), Is.EqualTo((0, "write")), write.Reason);
            Assert.That(await new NpgsqlCommand($"/*NO LOAD BALANCE*/ SELECT count(*)::int FROM {table}", connection).ExecuteScalarAsync(), Is.Zero,
                "EXPLAIN ROUTE ran nothing");

            var cases = new (string Statement, string Rule)[]
            {
                ($"SELECT * FROM {table} FOR UPDATE", "FOR UPDATE"),
                ($"SELECT * INTO {table}_copy FROM {table}", "SELECT INTO"),
                ($"SELECT nextval('{table}_id_seq')", "volatile function"),
                ("/*NO LOAD BALANCE*/ SELECT 1", "NO LOAD BALANCE comment"),
                ("/* hello */ SELECT 1", "allow_sql_comments"),
                ("EXPLAIN SELECT 1", "EXPLAIN"),
                ("SELECT relname FROM pg_class", "system catalog"),
                ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "serializable"),
                ("SET application_name = 'x'", "session state"),
                ("BEGIN", "BEGIN"),
            };
            foreach (var (statement, rule) in cases)
            {
                var explained = await ExplainAsync(connection, statement);
                Assert.That(explained.Rule, Is.EqualTo(rule), $"{statement}: {explained.Reason}");
                if (rule is "volatile function")
                {
                    Assert.That(explained.Reason, Does.Contain("nextval"));
                }

                if (rule is not ("session state" or "BEGIN"))
                {
                    Assert.That(explained.Node, Is.Zero, statement);
                }
            }

            await ExecAsync(connection, "CREATE TEMP TABLE er_temp (a int)");
            Assert.That((await ExplainAsync(connection, "SELECT * FROM er_temp")).Rule, Is.EqualTo("temp table"));

            await ExecAsync(connection, "BEGIN");
            Assert.That((await ExplainAsync(connection, "SELECT 1")).Rule, Is.EqualTo("weight draw"), "a read before any write in a transaction");
            await ExecAsync(connection, $"INSERT INTO {table} (a) VALUES (2)");
            Assert.That(await ExplainAsync(connection, "SELECT 1"), Is.EqualTo((0, "in transaction after write",
                "the transaction has written (disable_load_balance_on_write = transaction)")));
            await ExecAsync(connection, "COMMIT");
            Assert.That(await ExplainAsync(connection, "BEGIN"), Is.EqualTo((0, "last transaction wrote", "BEGIN: the session's last transaction wrote")));

            await ExecAsync(connection, "BEGIN ISOLATION LEVEL SERIALIZABLE");
            Assert.That((await ExplainAsync(connection, "SELECT 1")).Rule, Is.EqualTo("serializable"));
            await ExecAsync(connection, "COMMIT");

            await ExecAsync(connection, "BEGIN");
            await ExecAsync(connection, "SELECT 1");
            Assert.ThrowsAsync<PostgresException>(() => ExecAsync(connection, "SELECT 1/0"));
            var failed = await ExplainAsync(connection, $"INSERT INTO {table} (a) VALUES (3)");
            Assert.That(failed.Rule, Is.EqualTo("failed transaction"), failed.Reason);
            Assert.That(failed.Node, Is.Not.Zero, "the transaction failed on the replica it read on");
            await ExecAsync(connection, "ROLLBACK");
        }
        finally
        {
            await ExecAsync(connection, $"DROP TABLE {table}");
        }
    }

    [Test]
    public async Task ExplainRoute_InTheSimpleProtocol_IncludingMultiStatementText()
    {
        await using var poold = await StartAsync([0, 1, 0]);
        await using var client = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "explain-simple");
        Assert.That(await ExplainSimpleAsync(client, "SELECT 1"), Is.EqualTo((1, "weight draw", "SELECT: by weight")));
        Assert.That((await ExplainSimpleAsync(client, "SELECT 1; SELECT 2")).Rule, Is.EqualTo("multi-statement"));
        Assert.That((await ExplainSimpleAsync(client, "UPDATE t SET a = 1;")).Rule, Is.EqualTo("write"));

        await client.SendAsync(RawClient.Query("PGPOOL EXPLAIN ROUTE"));
        var error = await client.ReadUntilReadyAsync();
        Assert.That(error.Single(m => m.Code == 'E').SqlState, Is.EqualTo("42601"), "a missing statement is a syntax error");
    }

    /// <summary>The statements of the classifier's case table (QueryClassifierTests), read from its source.</summary>
    private static List<string> ClassifierCaseTable()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Poold.sln")))
        {
            dir = dir.Parent;
        }

        Assert.That(dir, Is.Not.Null, "the repository root");
        var source = File.ReadAllText(Path.Combine(dir!.FullName, "tests", "Poold.Tests", "Routing", "QueryClassifierTests.cs"));
        return
        [
            .. System.Text.RegularExpressions.Regex.Matches(source, """\[TestCase\("((?:[^"\\]|\\.)*)"[,)]""")
                .Select(m => System.Text.RegularExpressions.Regex.Unescape(m.Groups[1].Value))
                .Where(sql => sql.Trim().Trim(';').Trim().Length > 0 && !sql.Contains('\0'))
                .Distinct(),
        ];
    }

    [Test]
    public async Task ExplainRoute_AgreesWithTheClassifier_OnItsWholeCaseTable()
    {
        await using var poold = await StartAsync([0, 1, 1]);
        await using var client = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "explain-table");
        var options = Poold.Routing.RoutingOptions.From(poold.Host.Settings);
        var cases = ClassifierCaseTable();
        Assert.That(cases, Has.Count.GreaterThan(150), "the case table was read");
        int balanced = 0, primary = 0;
        foreach (var sql in cases)
        {
            var c = Poold.Routing.QueryClassifier.Classify(sql, options);
            var (node, rule, reason) = await ExplainSimpleAsync(client, sql);
            Assert.That(Poold.Routing.RouteRules.All, Does.Contain(rule), sql);
            switch (c.Target)
            {
                case Poold.Routing.RouteTarget.Primary:
                    Assert.That((node, rule, reason), Is.EqualTo((0, Poold.Routing.RouteRules.Of(c.Reason), c.Reason)), sql);
                    primary++;
                    break;
                case Poold.Routing.RouteTarget.LoadBalance when node != 0:
                    Assert.That(rule, Is.EqualTo("weight draw"), sql);
                    balanced++;
                    break;
                case Poold.Routing.RouteTarget.LoadBalance:
                    Assert.That(Poold.Routing.RouteRules.IsBalanceRule(rule), Is.False, $"{sql}: on the primary by {rule} ({reason})");
                    break;
                default:
                    Assert.That(rule, Is.AnyOf("session state", "BEGIN"), sql);
                    break;
            }
        }

        await TestContext.Out.WriteLineAsync($"{cases.Count} statements: {primary} to the primary by the classifier, {balanced} balanced");
        Assert.That(primary, Is.GreaterThan(0));
        Assert.That(balanced, Is.GreaterThan(0));
    }

    [Test]
    public async Task ExplainRoute_ConfiguredRules_FunctionLists_Patterns_Redirects_AndWriteModes()
    {
        await using (var poold = await StartAsync([0, 1, 1], """
            write_function_list = 'my_.*'
            primary_routing_query_pattern_list = '.*hot_table.*'
            disable_load_balance_on_write = 'always'
            app_name_redirect_preference_list = 'reporting:2'

            """))
        {
            await using var connection = await OpenAsync(poold, "reporting");
            Assert.That(await ExplainAsync(connection, "SELECT 1"), Is.EqualTo((2, "redirect list", "SELECT: redirect preference reporting:2")));
            Assert.That((await ExplainAsync(connection, "SELECT my_writer()")).Rule, Is.EqualTo("write_function_list"));
            Assert.That((await ExplainAsync(connection, "SELECT txid_current()")).Rule, Is.EqualTo("standby-unsafe function"));
            Assert.That((await ExplainAsync(connection, "SELECT * FROM hot_table")).Rule, Is.EqualTo("primary_routing_query_pattern_list"));
            await ExecAsync(connection, "CREATE TEMP TABLE er_always (a int)");
            Assert.That(await ExplainAsync(connection, "SELECT 1"), Is.EqualTo((0, "session wrote",
                "the session has written (disable_load_balance_on_write = always)")));
        }

        await using (var poold = await StartAsync([0, 1, 1], """
            read_only_function_list = 'safe_.*'
            disable_load_balance_on_write = 'dml_adaptive'

            """))
        {
            await using var connection = await OpenAsync(poold);
            Assert.That((await ExplainAsync(connection, "SELECT other_fn()")).Rule, Is.EqualTo("read_only_function_list"));
            Assert.That((await ExplainAsync(connection, "SELECT safe_fn()")).Rule, Is.EqualTo("weight draw"));
            await ExecAsync(connection, "CREATE TEMP TABLE er_dml (a int)");
            await ExecAsync(connection, "BEGIN");
            await ExecAsync(connection, "INSERT INTO er_dml VALUES (1)");
            Assert.That((await ExplainAsync(connection, "SELECT * FROM er_dml")).Rule, Is.EqualTo("dml_adaptive"));
            Assert.That((await ExplainAsync(connection, "SELECT * FROM er_other")).Rule, Is.EqualTo("weight draw"),
                "objects the transaction did not write are still balanced");
            await ExecAsync(connection, "ROLLBACK");
        }

        await using (var poold = await StartAsync([0, 1, 1], "load_balance_mode = off\n"))
        {
            await using var connection = await OpenAsync(poold);
            Assert.That(await ExplainAsync(connection, "SELECT 1"), Is.EqualTo((0, "load_balance_mode off", "load_balance_mode = off")));
        }
    }
}

/// <summary>The delay-threshold rule needs a replica that lags: a cluster of the test's own, replay paused on the replica.</summary>
[NonParallelizable]
public class ExplainRouteDelayTests
{
    [Test]
    public async Task ExplainRoute_AReplicaOverDelayThreshold_SendsReadsToThePrimary_UnderTheDelayRule()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 1);
        var backends = string.Concat(Enumerable.Range(0, 2).Select(i => string.Create(CultureInfo.InvariantCulture,
            $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {cluster.Nodes[i].Port}\nbackend_weight{i} = {(i == 0 ? 0 : 1)}\nbackend_application_name{i} = 'replica{i}'\n")));
        await using var poold = await PooldInstance.StartAsync(backends + """
            sr_check_period = 1
            sr_check_user = 'poold_admin'
            sr_check_password = 'poold_admin_pw!'
            sr_check_database = 'poold_test'
            delay_threshold = 1

            """, ssl: false);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[1].Replication.State == "streaming"), TimeSpan.FromSeconds(30),
            "node 1 to stream");
        await using var connection = new NpgsqlConnection(poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable).ConnectionString);
        await connection.OpenAsync();
        await using (var command = new NpgsqlCommand("PGPOOL EXPLAIN ROUTE SELECT 1", connection))
        await using (var before = await command.ExecuteReaderAsync())
        {
            Assert.That(await before.ReadAsync(), Is.True);
            Assert.That((before.GetString(0), before.GetString(1)), Is.EqualTo(("1", "weight draw")));
        }

        await cluster.ScalarAsync(1, "SELECT pg_wal_replay_pause()");
        try
        {
            await cluster.ScalarAsync(0, "CREATE TABLE lag_maker AS SELECT generate_series(1, 10000) AS i");
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[1].Replication.Lagging), TimeSpan.FromSeconds(30),
                "node 1 to be over delay_threshold");
            await using var reader = await new NpgsqlCommand("PGPOOL EXPLAIN ROUTE SELECT 1", connection).ExecuteReaderAsync();
            Assert.That(await reader.ReadAsync(), Is.True);
            Assert.That((reader.GetString(0), reader.GetString(1)), Is.EqualTo(("0", "delay threshold")), reader.GetString(2));
        }
        finally
        {
            await cluster.ScalarAsync(1, "SELECT pg_wal_replay_resume()");
        }
    }
}
