using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Chaos;

/// <summary>
/// Chaos with a ledger: a TPC-B-like load through the Poold daemon (its own process) while, one after another, a
/// replica is killed -9, a replica hangs (SIGSTOP, later SIGCONT), the primary is killed and a standby promoted, and
/// Poold itself is stopped <c>-m fast</c> and restarted. Then: every acknowledged commit is on the new primary, no
/// round trip took longer than the configuration allows, and neither backend connections nor file descriptors leaked.
/// Each phase lasts <c>POOLD_CHAOS_PHASE_SECONDS</c> (default 4; scripts/chaos.sh can make it longer).
/// </summary>
[NonParallelizable]
public class ChaosLedgerTests
{
    private const int Clients = 6;
    private const int HealthCheckPeriod = 1;
    private const int HealthCheckTimeout = 2;
    private const int HealthCheckMaxRetries = 0;
    private const int ConnectTimeoutMs = 2000;
    private const int ConnectionLifeTime = 2;
    private const int ClientTimeout = 20;
    private const int FdSlack = 10;

    /// <summary>
    /// The longest any client round trip may take: a hung node is declared down after at most one health check period
    /// plus its timeout per try, and a connection attempt to it gives up after connect_timeout; 3 s for scheduling on
    /// a busy 2-core machine. The clients' own timeouts (<see cref="ClientTimeout"/>) are well above this, so a hang
    /// shows here rather than as a client timeout.
    /// </summary>
    private static readonly TimeSpan OperationBound = TimeSpan.FromSeconds(HealthCheckPeriod + HealthCheckTimeout * (HealthCheckMaxRetries + 1))
        + TimeSpan.FromMilliseconds(ConnectTimeoutMs) + TimeSpan.FromSeconds(3);

    private static readonly TimeSpan PhaseLength = TimeSpan.FromSeconds(
        int.TryParse(Environment.GetEnvironmentVariable("POOLD_CHAOS_PHASE_SECONDS"), NumberStyles.None, CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 4);

    private readonly List<string> _findings = [];
    private readonly List<PhaseStats> _phases = [];

    [Test]
    public async Task TpcbLedger_ThroughReplicaCrash_HungReplica_Failover_AndPooldRestart_KeepsEveryAcknowledgedCommit()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 2);
        await PrepareAsync(cluster);
        var failoverLog = Path.Combine(cluster.Directory, "failover.log");
        var processes = new List<PooldProcess> { await PooldProcess.StartAsync(Config(cluster, failoverLog)) };
        try
        {
            await RunAsync(cluster, processes, failoverLog);
        }
        finally
        {
            foreach (var process in processes)
            {
                await process.DisposeAsync();
            }
        }
    }

    private async Task RunAsync(PgCluster cluster, List<PooldProcess> processes, string failoverLog)
    {
        var poold = processes[0];
        var connectionString = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = poold.Port,
            Username = TestRoles.TrustUser,
            Database = PgCluster.TestDatabase,
            SslMode = SslMode.Disable,
            Pooling = false,
            Timeout = ClientTimeout,
            CommandTimeout = ClientTimeout,
        }.ConnectionString;

        // Baseline: Poold idle, after one session, with its pool drained.
        await using (var first = new NpgsqlConnection(connectionString))
        {
            await first.OpenAsync();
            await new NpgsqlCommand("SELECT 1", first).ExecuteScalarAsync();
        }

        await DrainAsync(cluster, "start", [0, 1, 2]);
        var baselineFds = CountFds(poold.Pid);
        await TestContext.Out.WriteLineAsync($"poold pid {poold.Pid}: {baselineFds} at idle start; operation bound {OperationBound.TotalSeconds} s");

        await using var workload = new LedgerWorkload(connectionString, Clients, Begin("steady load"));
        try
        {
            await RunForAsync(workload, PhaseLength);

            workload.Enter(Begin("replica 1 killed -9"));
            await cluster.KillNodeHardAsync(1);
            await RunForAsync(workload, PhaseLength);
            await cluster.StartNodeAsync(1);
            await Poll.UntilAsync(async () => await cluster.StreamingReplicaCountAsync() == 2, TimeSpan.FromSeconds(60), "replica 1 to stream again");

            workload.Enter(Begin("replica 2 frozen (SIGSTOP)"));
            var frozen = Stopwatch.StartNew();
            cluster.FreezeNode(2);
            try
            {
                // Hung for longer than any round trip may take, so a client stuck on it shows; the health check must
                // declare it down within the same bound.
                try
                {
                    await Poll.UntilAsync(() => Task.FromResult(File.Exists(failoverLog) && File.ReadAllText(failoverLog).Contains("failed 2,", StringComparison.Ordinal)),
                        OperationBound, "the health check to detach the frozen node 2");
                }
                catch (TimeoutException e)
                {
                    _findings.Add($"frozen replica: {e.Message} (health_check_period {HealthCheckPeriod} s, health_check_timeout {HealthCheckTimeout} s)");
                }

                var remaining = OperationBound + PhaseLength - frozen.Elapsed;
                await RunForAsync(workload, remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero);
            }
            finally
            {
                cluster.ThawNode(2);
            }

            await Poll.UntilAsync(async () => await cluster.StreamingReplicaCountAsync() == 2, TimeSpan.FromSeconds(60), "replica 2 to stream again");

            var failover = Begin("primary killed -9, standby promoted");
            workload.Enter(failover);
            await cluster.KillNodeHardAsync(0);
            var promoted = await PromoteMostAdvancedAsync(cluster);
            var before = failover.Commits;
            await Poll.UntilAsync(() => Task.FromResult(failover.Commits > before), TimeSpan.FromSeconds(60),
                $"commits through Poold on the promoted node {promoted}");
            await RunForAsync(workload, PhaseLength);

            // Checkpoint: the first Poold process has been through every backend fault; nothing may have leaked.
            workload.Enter(Begin("checkpoint (clients paused)"));
            await workload.PauseAsync(TimeSpan.FromSeconds(ClientTimeout * 2));
            var live = new[] { 1, 2 };
            await DrainAsync(cluster, "after the backend faults", live);
            await CheckFdsAsync(poold, baselineFds, "after the backend faults");
            workload.Resume();

            workload.Enter(Begin("poold stopped -m fast and restarted"));
            await RunForAsync(workload, TimeSpan.FromSeconds(1));
            var stop = await poold.RunCommandAsync("-m", "fast", "stop");
            Assert.That(stop.ExitCode, Is.Zero, stop.Output);
            await poold.WaitForExitAsync(TimeSpan.FromSeconds(30));
            poold = await poold.RestartAsync();
            processes.Add(poold);
            await RunForAsync(workload, PhaseLength);

            await workload.StopAsync(TimeSpan.FromSeconds(ClientTimeout * 3));
            await DrainAsync(cluster, "at the end", live);
            await CheckFdsAsync(poold, baselineFds, "at the end (restarted process, against the first one's idle count)");
            await CheckLedgerAsync(cluster, promoted, workload);
        }
        finally
        {
            await workload.StopAsync(TimeSpan.FromSeconds(ClientTimeout * 3));
            await ReportAsync(failoverLog, processes);
        }

        var slowest = _phases.MaxBy(p => p.MaxOperation)!;
        Assert.Multiple(() =>
        {
            Assert.That(slowest.MaxOperation, Is.LessThanOrEqualTo(OperationBound),
                $"the slowest client round trip ({slowest.Name}) exceeds what the timeouts allow");
            Assert.That(_findings, Is.Empty, "leaks or lost commits");
        });
    }

    private PhaseStats Begin(string name)
    {
        var phase = new PhaseStats(name);
        _phases.Add(phase);
        return phase;
    }

    /// <summary>The load runs by itself; the test only lets wall-clock time pass while it does.</summary>
    private static Task RunForAsync(LedgerWorkload workload, TimeSpan duration) => Task.Delay(duration);

    private static string Config(PgCluster cluster, string failoverLog)
    {
        var text = new StringBuilder();
        for (var i = 0; i < cluster.Nodes.Count; i++)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {cluster.Nodes[i].Port}\nbackend_weight{i} = 1\nbackend_application_name{i} = 'replica{i}'\n");
        }

        text.Append(CultureInfo.InvariantCulture, $"""
            health_check_period = {HealthCheckPeriod}
            health_check_timeout = {HealthCheckTimeout}
            health_check_max_retries = {HealthCheckMaxRetries}
            health_check_user = '{TestRoles.Admin}'
            health_check_password = '{TestRoles.Password(TestRoles.Admin)}'
            health_check_database = '{PgCluster.TestDatabase}'
            sr_check_period = 1
            sr_check_user = '{TestRoles.Admin}'
            sr_check_password = '{TestRoles.Password(TestRoles.Admin)}'
            sr_check_database = '{PgCluster.TestDatabase}'
            search_primary_node_timeout = 30
            connect_timeout = {ConnectTimeoutMs}
            connection_life_time = {ConnectionLifeTime}
            auto_failback = on
            auto_failback_interval = 1
            failover_command = 'echo "failed %d, new primary %m" >> {failoverLog}'

            """);
        return text.ToString();
    }

    /// <summary>
    /// Tables, and synchronous replication to either standby: with asynchronous replication a failover loses
    /// acknowledged commits by design, whatever the middleware does; with <c>ANY 1</c> every acknowledged commit is
    /// on a standby, and <see cref="PromoteMostAdvancedAsync"/> promotes the one that received the most.
    /// </summary>
    private static async Task PrepareAsync(PgCluster cluster)
    {
        await cluster.ScalarAsync(0, "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (replica1, replica2)'");
        await cluster.ScalarAsync(0, "ALTER SYSTEM SET synchronous_commit = 'on'");
        await cluster.ScalarAsync(0, "SELECT pg_reload_conf()");
        await cluster.ScalarAsync(0, $"""
            CREATE TABLE accounts (aid int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
            INSERT INTO accounts (aid) SELECT generate_series(1, {LedgerWorkload.Accounts});
            CREATE TABLE ledger (id bigint PRIMARY KEY, client int NOT NULL, aid int NOT NULL, delta int NOT NULL,
                at timestamptz NOT NULL DEFAULT clock_timestamp());
            GRANT ALL ON accounts, ledger TO PUBLIC
            """);
        await Poll.UntilAsync(async () => (long)(await cluster.ScalarAsync(0,
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'"))! == 2, TimeSpan.FromSeconds(30),
            "both standbys to be quorum-synchronous");
        await cluster.WaitForReplayAsync();
    }

    private static async Task<int> PromoteMostAdvancedAsync(PgCluster cluster)
    {
        var received = new Dictionary<int, decimal>();
        foreach (var node in new[] { 1, 2 })
        {
            received[node] = (decimal)(await cluster.ScalarAsync(node, "SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn"))!;
        }

        var best = received.MaxBy(r => r.Value).Key;
        await TestContext.Out.WriteLineAsync($"received WAL: node 1 {received[1]}, node 2 {received[2]}; promoting node {best}");
        await cluster.PromoteAsync(best);
        return best;
    }

    /// <summary>
    /// Counts Poold's backend connections (the clients' role; health and replication checks use another) on each live
    /// node: at most one per client per node while idle, then none once connection_life_time has pruned the pool.
    /// </summary>
    private async Task DrainAsync(PgCluster cluster, string when, int[] nodes)
    {
        var counts = await BackendCountsAsync(cluster, nodes);
        if (counts.Any(c => c.Value > Clients))
        {
            _findings.Add($"{when}: idle pool holds more backend connections than clients ever ran concurrently: {Show(counts)}");
        }

        try
        {
            await Poll.UntilAsync(async () => (await BackendCountsAsync(cluster, nodes)).Values.Sum() == 0,
                TimeSpan.FromSeconds(ConnectionLifeTime * 3 + 10), "Poold's backend connections to be pruned");
        }
        catch (TimeoutException)
        {
            var left = new StringBuilder();
            foreach (var node in nodes)
            {
                await using var connection = new NpgsqlConnection(cluster.ConnectionString(node).ConnectionString);
                await connection.OpenAsync();
                await using var reader = await new NpgsqlCommand($"""
                    SELECT pid, state, backend_start, state_change, left(query, 60) FROM pg_stat_activity
                    WHERE usename = '{TestRoles.TrustUser}'
                    """, connection).ExecuteReaderAsync();
                while (await reader.ReadAsync())
                {
                    left.Append(CultureInfo.InvariantCulture,
                        $"\n  node {node}: pid {reader[0]} {reader[1]} since {reader[2]:HH:mm:ss.fff} changed {reader[3]:HH:mm:ss.fff}: {reader[4]}");
                }
            }

            _findings.Add($"{when}: backend connections still open {ConnectionLifeTime * 3 + 10} s after every client closed "
                + $"(connection_life_time = {ConnectionLifeTime}):{left}");
        }
    }

    private static async Task<Dictionary<int, long>> BackendCountsAsync(PgCluster cluster, int[] nodes)
    {
        var counts = new Dictionary<int, long>();
        foreach (var node in nodes)
        {
            counts[node] = (long)(await cluster.ScalarAsync(node,
                $"SELECT count(*) FROM pg_stat_activity WHERE usename = '{TestRoles.TrustUser}'"))!;
        }

        return counts;
    }

    private static string Show(Dictionary<int, long> counts) => string.Join(", ", counts.Select(c => $"node {c.Key}: {c.Value}"));

    /// <summary>
    /// Poold's open fds in three kinds: sockets; runtime files (assemblies, which the runtime keeps open once loaded,
    /// so their number grows once as code paths are first used: not a leak); and the rest (pipes, devices, epoll...).
    /// </summary>
    private static FdCounts CountFds(int pid)
    {
        int sockets = 0, runtime = 0, other = 0;
        foreach (var fd in Directory.GetFileSystemEntries($"/proc/{pid}/fd"))
        {
            var target = new FileInfo(fd).LinkTarget ?? "";
            if (target.StartsWith("socket:", StringComparison.Ordinal))
            {
                sockets++;
            }
            else if (target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".pdb", StringComparison.Ordinal)
                || target.StartsWith("/memfd:doublemapper", StringComparison.Ordinal))
            {
                runtime++;
            }
            else
            {
                other++;
            }
        }

        return new(sockets, runtime, other);
    }

    /// <summary>Sockets back to the idle level (+2: a health check in flight), other fds within <see cref="FdSlack"/>.</summary>
    private async Task CheckFdsAsync(PooldProcess poold, FdCounts baseline, string when)
    {
        try
        {
            await Poll.UntilAsync(() =>
                {
                    var now = CountFds(poold.Pid);
                    return Task.FromResult(now.Sockets <= baseline.Sockets + 2 && now.Other <= baseline.Other + FdSlack);
                }, TimeSpan.FromSeconds(10), "Poold's fd count to come back to its idle level");
            await TestContext.Out.WriteLineAsync($"poold pid {poold.Pid}: {CountFds(poold.Pid)} {when}");
        }
        catch (TimeoutException)
        {
            var kinds = Directory.GetFileSystemEntries($"/proc/{poold.Pid}/fd")
                .Select(fd => new FileInfo(fd).LinkTarget ?? "?")
                .Where(target => !target.EndsWith(".dll", StringComparison.Ordinal))
                .GroupBy(target => target.StartsWith("socket:", StringComparison.Ordinal) ? "socket" : target)
                .Select(g => $"{g.Count()} × {g.Key}");
            _findings.Add($"{when}: poold pid {poold.Pid} holds {CountFds(poold.Pid)}, idle baseline {baseline} "
                + $"(sockets +2, other +{FdSlack} allowed): " + string.Join(", ", kinds));
        }
    }

    private readonly record struct FdCounts(int Sockets, int Runtime, int Other);

    private async Task CheckLedgerAsync(PgCluster cluster, int primary, LedgerWorkload workload)
    {
        var present = new HashSet<long>();
        await using (var connection = new NpgsqlConnection(cluster.ConnectionString(primary).ConnectionString))
        {
            await connection.OpenAsync();
            await using var reader = await new NpgsqlCommand("SELECT id FROM ledger", connection).ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                present.Add(reader.GetInt64(0));
            }
        }

        var acknowledged = workload.Acknowledged.ToList();
        var missing = acknowledged.Where(id => !present.Contains(id)).ToList();
        await TestContext.Out.WriteLineAsync(
            $"ledger on node {primary}: {present.Count} rows; acknowledged {acknowledged.Count}; missing {missing.Count}; "
            + $"committed without an acknowledgement (in doubt) {present.Count - (acknowledged.Count - missing.Count)}");
        if (missing.Count > 0)
        {
            _findings.Add($"{missing.Count} acknowledged commits are not on the new primary (node {primary}), e.g. {string.Join(", ", missing.Take(10))}");
        }

        var balanced = (bool)(await cluster.ScalarAsync(primary,
            "SELECT (SELECT sum(balance) FROM accounts) = (SELECT coalesce(sum(delta), 0) FROM ledger)"))!;
        if (!balanced)
        {
            _findings.Add("sum(accounts.balance) differs from sum(ledger.delta): a transaction was applied in part");
        }
    }

    private async Task ReportAsync(string failoverLog, List<PooldProcess> processes)
    {
        var report = new StringBuilder("| phase | seconds | commits acknowledged | reads | round trips | errors | max round trip, ms (which) |\n|---|---|---|---|---|---|---|\n");
        foreach (var phase in _phases)
        {
            report.AppendLine(phase.Describe());
        }

        await TestContext.Out.WriteLineAsync(report.ToString());
        if (File.Exists(failoverLog))
        {
            await TestContext.Out.WriteLineAsync("failover_command ran:\n" + await File.ReadAllTextAsync(failoverLog));
        }

        foreach (var finding in _findings)
        {
            await TestContext.Out.WriteLineAsync("FINDING: " + finding);
        }

        var dump = Environment.GetEnvironmentVariable("POOLD_CHAOS_LOG");
        if (!string.IsNullOrEmpty(dump))
        {
            await File.WriteAllTextAsync(dump, string.Join("\n---- restart ----\n", processes.Select(p => p.Output)));
        }
    }
}
