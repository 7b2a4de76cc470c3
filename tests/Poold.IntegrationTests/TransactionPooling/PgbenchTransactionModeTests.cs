using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.TransactionPooling;

/// <summary>
/// pgbench through Poold in pool_mode = transaction: 16 clients over default_pool_size = 4 server connections per node,
/// in each query mode, in a database of its own so its pgbench_* tables never meet ProxyTests' ones.
/// </summary>
public class PgbenchTransactionModeTests
{
    private const string Database = "txpool_bench";
    private const int Clients = 16;
    private const int PerClient = 100;

    [OneTimeSetUp]
    public async Task CreateDatabaseAndTables()
    {
        var cluster = ClusterFixture.Cluster;
        if (await cluster.ScalarAsync(0, $"SELECT 1 FROM pg_database WHERE datname = '{Database}'") is null)
        {
            await cluster.ScalarAsync(0, $"CREATE DATABASE {Database} OWNER {TestRoles.TrustUser}");
        }

        var (code, output) = await RunPgbench($"-i -q -s 1 -h 127.0.0.1 -p {cluster.Nodes[0].Port} -U {TestRoles.TrustUser} {Database}");
        Assert.That(code, Is.Zero, output);
        await cluster.WaitForReplayAsync();
    }

    [TestCase("simple", "-S")]
    [TestCase("extended", "-S")]
    [TestCase("prepared", "-S")]
    [TestCase("simple", "")]
    [TestCase("extended", "")]
    [TestCase("prepared", "")]
    [TestCase("prepared", "", true)]
    public async Task Pgbench_SixteenClientsOverFourServerConnections_HasNoFailedTransactions(string mode, string script, bool primaryOnly = false)
    {
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, primaryOnly ? 0 : null)
            + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\ndefault_pool_size = 4\nquery_wait_timeout = 60\n", ssl: false);
        var maxOpen = 0;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                for (var node = 0; node < ClusterFixture.Cluster.Nodes.Count; node++)
                {
                    maxOpen = Math.Max(maxOpen, poold.Host.Pool.OpenCount(node));
                }

                await Task.Delay(20, CancellationToken.None);
            }
        });

        // TPC-B -M prepared runs one pgbench thread per client: pgbench prepares each statement with a blocking PQprepare
        // the first time a client runs it, inside TPC-B's transaction, so with several clients per thread a client waiting
        // there for a server connection stops the others of its thread, which may hold every connection in their own
        // transactions: pgbench deadlocks itself (reproduced with 4 clients, -j 1, default_pool_size = 2; -j 4 runs).
        // -j 2 is kept wherever pgbench cannot block that way.
        var threads = mode == "prepared" && script.Length == 0 ? Clients : 2;
        var watch = Stopwatch.StartNew();
        int code;
        string output;
        try
        {
            (code, output) = await RunPgbench(
                $"{script} -M {mode} -c {Clients} -j {threads} -t {PerClient} -h 127.0.0.1 -p {poold.Port} -U {TestRoles.TrustUser} {Database}");
        }
        catch (TimeoutException e)
        {
            await sampling.CancelAsync();
            var full = Path.Combine(Path.GetTempPath(), $"txpool-bench-{mode}-{Guid.NewGuid():N}.log");
            await File.WriteAllTextAsync(full, poold.Log);
            Assert.Fail($"the whole Poold log: {full}\n" + $"{e.Message}; server connections Poold counts on node 0: {poold.Host.Pool.OpenCount(0)}; server sessions at that moment:\n{await ActivityAsync()}{Tail(poold.Log)}");
            throw;
        }

        await sampling.CancelAsync();
        await sampler;
        await TestContext.Out.WriteLineAsync($"pgbench {script} -M {mode}: {watch.Elapsed.TotalSeconds:0.0} s, max server connections per node {maxOpen}\n{output}");

        Assert.That(code, Is.Zero, output + Tail(poold.Log));
        Assert.That(output, Does.Match(@"number of failed transactions: 0 \("));
        var processed = Regex.Match(output, @"number of transactions actually processed: (\d+)/(\d+)");
        Assert.That(processed.Success, output);
        Assert.That(int.Parse(processed.Groups[1].Value, CultureInfo.InvariantCulture), Is.EqualTo(Clients * PerClient));
        Assert.That(int.Parse(processed.Groups[2].Value, CultureInfo.InvariantCulture), Is.EqualTo(Clients * PerClient));
        Assert.That(maxOpen, Is.InRange(1, 4), "never more than default_pool_size server connections per node");
        Assert.That(poold.Log, Does.Not.Contain("keeps its server connections"), "pgbench's statements pin nothing");
    }

    /// <summary>What the primary's sessions of the bench database are doing (for a hang's report).</summary>
    private static async Task<string> ActivityAsync()
    {
        await using var connection = new Npgsql.NpgsqlConnection(ClusterFixture.Cluster.ConnectionString(0).ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            $"SELECT pid, state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 80) FROM pg_stat_activity WHERE datname = '{Database}'",
            connection);
        await using var reader = await command.ExecuteReaderAsync();
        var lines = new System.Text.StringBuilder();
        while (await reader.ReadAsync())
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"{reader.GetInt32(0)} {reader.GetString(1)} {reader.GetString(2)}/{reader.GetString(3)}: {reader.GetString(4)}\n");
        }

        return lines.ToString();
    }

    private static async Task<(int Code, string Output)> RunPgbench(string arguments)
    {
        var start = new ProcessStartInfo("pgbench", arguments);
        start.Environment["PGSSLMODE"] = "disable";
        var (code, stdout, stderr) = await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(60));
        return (code, stdout + stderr);
    }

    private static string Tail(string log) => "\nthe log:\n" + (log.Length <= 6000 ? log : log[^6000..]);
}
