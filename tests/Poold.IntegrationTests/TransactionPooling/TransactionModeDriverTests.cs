using System.Diagnostics;
using System.Globalization;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.TransactionPooling;

/// <summary>
/// pool_mode = transaction with load balancing, through drivers other than Npgsql: PgJDBC (Debian's
/// libpostgresql-jdbc-java, a single-file Java program) with server-side prepared statements inside and outside
/// transactions, psycopg2 (libpq) with its implicit BEGIN, per-client search_path and server-side cursors, and
/// node-postgres (the npm package pg, which scripts/test.sh installs) with named statements parsed once per connection
/// and errors inside transactions. Twenty clients of each share three server connections per node; each checks every
/// answer it gets and what it committed is counted on the primary.
/// </summary>
public class TransactionModeDriverTests
{
    private const string JdbcJar = "/usr/share/java/postgresql.jar";
    private const string Python = "/usr/bin/python3";

    /// <summary>Where scripts/test.sh installs node-postgres (POOLD_TEST_NODE_MODULES overrides it).</summary>
    private static readonly string NodeModules =
        Environment.GetEnvironmentVariable("POOLD_TEST_NODE_MODULES") is { Length: > 0 } set ? set : "/usr/local/lib/poold-test-node/node_modules";
    private const int Clients = 20;
    private const int Rounds = 30;

    /// <summary>Every fifth transaction is rolled back.</summary>
    private const int CommittedPerClient = Rounds - Rounds / 5;

    private static async Task<PooldInstance> StartAsync() =>
        await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster)
                                       + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\ndefault_pool_size = 3\nquery_wait_timeout = 60\n"
                                       + "log_per_node_statement = on\n",
            ssl: false);

    private static async Task CreateTableAsync(string table)
    {
        var schemas = string.Join("; ", Enumerable.Range(0, Clients).Select(k => $"CREATE SCHEMA IF NOT EXISTS txdrv_{k}; GRANT ALL ON SCHEMA txdrv_{k} TO PUBLIC"));
        await ClusterFixture.Cluster.ScalarAsync(0,
            $"CREATE TABLE IF NOT EXISTS {table} (client int, n int); GRANT ALL ON {table} TO PUBLIC; TRUNCATE {table}; {schemas}");
        await ClusterFixture.Cluster.WaitForReplayAsync();
    }

    private static Task<Dictionary<string, string>> RunAsync(string file, params string[] arguments) =>
        ProcessRunner.RunClientProgramAsync(file, arguments, TimeSpan.FromSeconds(240));

    private static string[] ClientArguments(string script, PooldInstance poold, string table) =>
    [
        script, "127.0.0.1", poold.Port.ToString(CultureInfo.InvariantCulture), PgCluster.TestDatabase, TestRoles.TrustUser, table,
        Clients.ToString(CultureInfo.InvariantCulture), Rounds.ToString(CultureInfo.InvariantCulture),
    ];

    private static async Task AssertCommittedAsync(Dictionary<string, string> output, string table)
    {
        var wrong = output.Where(p => p.Key.StartsWith("wrong_", StringComparison.Ordinal) || p.Key.StartsWith("exception_", StringComparison.Ordinal));
        Assert.That(wrong, Is.Empty, "every answer as the client expected");
        Assert.That(output.GetValueOrDefault("errors"), Is.EqualTo("0"));
        for (var k = 0; k < Clients; k++)
        {
            Assert.That(output.GetValueOrDefault($"client_{k}_rows"), Is.EqualTo(CommittedPerClient.ToString(CultureInfo.InvariantCulture)), $"client {k}");
        }

        var counts = await ClusterFixture.Cluster.ScalarAsync(0,
            $"SELECT string_agg(DISTINCT c::text, ',') FROM (SELECT count(*) AS c FROM {table} GROUP BY client) per_client");
        var clients = await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(DISTINCT client) FROM {table}");
        Assert.That((counts, Convert.ToInt32(clients, CultureInfo.InvariantCulture)), Is.EqualTo((CommittedPerClient.ToString(CultureInfo.InvariantCulture), Clients)),
            "the primary has exactly the committed rows of every client, none of the rolled-back ones");
    }

    [Test]
    public async Task Jdbc_TwentyClientsOnThreeConnectionsPerNode_PreparedStatementsAndSettingsFollowEachClient()
    {
        if (!File.Exists("/usr/bin/java") || !File.Exists(JdbcJar))
        {
            Assert.Ignore($"needs java and {JdbcJar} (apt-get install default-jre-headless libpostgresql-jdbc-java; scripts/test.sh does as root)");
        }

        const string table = "public.txdrv_jdbc";
        await CreateTableAsync(table);
        await using var poold = await StartAsync();
        var output = await RunAsync("java", ["-cp", JdbcJar, .. ClientArguments("TxCheck.java", poold, table)]);
        await AssertCommittedAsync(output, table);
        Assert.That(poold.Host.Pool.SharedPools().Max(p => p.Open), Is.LessThanOrEqualTo(3), "default_pool_size held");
        Assert.That(poold.Log, Does.Match("statement to node [12] "), "the autocommit reads were balanced onto the standbys");
    }

    [Test]
    public async Task Psycopg2_TwentyClientsOnThreeConnectionsPerNode_ImplicitBeginsNamedCursorsAndSearchPaths()
    {
        if (!File.Exists(Python))
        {
            Assert.Ignore($"needs {Python} with python3-psycopg2");
        }

        var (probe, _, _) = await ProcessRunner.RunAsync(new ProcessStartInfo(Python, "-c \"import psycopg2\""), TimeSpan.FromSeconds(30));
        if (probe != 0)
        {
            Assert.Ignore($"{Python} cannot import psycopg2 (apt-get install python3-psycopg2)");
        }

        const string table = "public.txdrv_py";
        await CreateTableAsync(table);
        await using var poold = await StartAsync();
        var output = await RunAsync(Python, ClientArguments("txcheck.py", poold, table));
        await AssertCommittedAsync(output, table);
        Assert.That(poold.Host.Pool.SharedPools().Max(p => p.Open), Is.LessThanOrEqualTo(3), "default_pool_size held");

        // psycopg2 sends its BEGIN alone: opened on the session's read node, then given back at the first write.
        Assert.That(poold.Log, Does.Match("statement to node [12] .*BEGIN"), "some BEGINs opened on a standby");
        Assert.That(poold.Log, Does.Contain("ran only this transaction's BEGIN"), "and those standbys went back before the primary was bound");
    }

    [Test]
    public async Task NodePostgres_TwentyClientsOnThreeConnectionsPerNode_NamedStatementsParsedOncePerConnectionAndErrorsInTransactions()
    {
        var node = new[] { "/usr/bin/node", "/usr/local/bin/node" }.FirstOrDefault(File.Exists);
        if (node is null || !File.Exists(Path.Combine(NodeModules, "pg", "package.json")))
        {
            Assert.Ignore($"needs node and node-postgres in {NodeModules} (scripts/test.sh runs npm install pg there)");
        }

        const string table = "public.txdrv_node";
        await CreateTableAsync(table);
        await using var poold = await StartAsync();
        var output = await ProcessRunner.RunClientProgramAsync(node, ClientArguments("txcheck.js", poold, table), TimeSpan.FromSeconds(240),
            new Dictionary<string, string> { ["NODE_PATH"] = NodeModules });
        await AssertCommittedAsync(output, table);
        Assert.That(poold.Host.Pool.SharedPools().Max(p => p.Open), Is.LessThanOrEqualTo(3), "default_pool_size held");
        Assert.That(poold.Log, Does.Match("statement to node [12] \\(weight draw\\)"), "the named autocommit reads were balanced onto the standbys");
    }
}
