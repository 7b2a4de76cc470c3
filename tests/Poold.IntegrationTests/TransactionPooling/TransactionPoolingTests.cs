using System.Collections.Concurrent;
using System.Globalization;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.TransactionPooling;

/// <summary>
/// pool_mode = transaction against the shared cluster: many clients over a few server connections, session state and
/// named prepared statements that follow each client and never leak to another, what pins a session, cancels that
/// cannot reach the wrong client, waiting for a connection, and a client that dies inside a transaction.
/// </summary>
public class TransactionPoolingTests
{
    private const string Table = "txpool_rows";

    [OneTimeSetUp]
    public async Task CreateTable()
    {
        await ClusterFixture.Cluster.ScalarAsync(0, $"CREATE TABLE IF NOT EXISTS {Table} (client int, n int); GRANT ALL ON {Table} TO PUBLIC");
        await ClusterFixture.Cluster.ScalarAsync(0, "CREATE SCHEMA IF NOT EXISTS txpool_a; CREATE SCHEMA IF NOT EXISTS txpool_b; GRANT ALL ON SCHEMA txpool_a, txpool_b TO PUBLIC");
        await ClusterFixture.Cluster.WaitForReplayAsync();
    }

    private static Task<PooldInstance> StartAsync(string extra, bool loadBalance = false) =>
        PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, loadBalance ? null : 0)
                                 + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\n" + extra, ssl: false);

    private static NpgsqlConnection Connection(PooldInstance poold, string applicationName, string extra = "")
    {
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.ApplicationName = applicationName;
        builder.Pooling = false;
        builder.Timeout = 60;
        builder.CommandTimeout = 60;
        if (extra.Length > 0)
        {
            foreach (var part in extra.Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = part.IndexOf('=', StringComparison.Ordinal);
                builder[part[..eq]] = part[(eq + 1)..];
            }
        }

        return new NpgsqlConnection(builder.ConnectionString);
    }

    private static async Task<int> BackendPidAsync(NpgsqlConnection c) =>
        Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);

    private static async Task<long> ServerConnectionsAsync(int node, string user) =>
        Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(node,
            $"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}' AND backend_type = 'client backend'"), CultureInfo.InvariantCulture);

    [Test]
    public async Task IdleClients_HoldNoServerConnection_AndTakeTurnsOnFew()
    {
        await using var poold = await StartAsync("default_pool_size = 2\n");
        var clients = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < 20; i++)
            {
                var c = Connection(poold, $"txpool-idle-{i}");
                await c.OpenAsync();
                clients.Add(c);
            }

            var pids = new HashSet<int>();
            for (var round = 0; round < 3; round++)
            {
                foreach (var c in clients)
                {
                    pids.Add(await BackendPidAsync(c));
                }
            }

            Assert.That(pids, Has.Count.InRange(1, 2), "20 clients took turns on at most default_pool_size server connections");
            Assert.That(poold.Host.Pool.OpenCount(0), Is.InRange(1, 2));
            Assert.That(await ServerConnectionsAsync(0, TestRoles.TrustUser), Is.LessThanOrEqualTo(2));
        }
        finally
        {
            foreach (var c in clients)
            {
                await c.DisposeAsync();
            }
        }
    }

    [Test]
    public async Task ManyClients_ReadWriteMix_OverTenServerConnectionsPerNode_GetCorrectResults()
    {
        await using var poold = await StartAsync("default_pool_size = 10\nquery_wait_timeout = 60\n", loadBalance: true);
        const int clients = 2000;
        const int transactions = 3;
        var runId = Random.Shared.Next(1_000_000);
        await ClusterFixture.Cluster.ScalarAsync(0, $"DELETE FROM {Table} WHERE n >= 0");
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var failures = new ConcurrentQueue<string>();
        var maxOpen = new int[ClusterFixture.Cluster.Nodes.Count];
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                for (var node = 0; node < maxOpen.Length; node++)
                {
                    maxOpen[node] = Math.Max(maxOpen[node], poold.Host.Pool.OpenCount(node));
                }

                await Task.Delay(20, CancellationToken.None);
            }
        });

        // Connections open in waves (the listen queue and the login path are not under test here), then all run at once.
        using var start = new SemaphoreSlim(64);
        var tasks = Enumerable.Range(0, clients).Select(async client =>
        {
            try
            {
                await start.WaitAsync(deadline.Token);
                NpgsqlConnection c;
                try
                {
                    c = Connection(poold, "txpool-mix");
                    await c.OpenAsync(deadline.Token);
                }
                finally
                {
                    start.Release();
                }

                await using (c)
                {
                    for (var t = 0; t < transactions; t++)
                    {
                        await using (var tx = await c.BeginTransactionAsync(deadline.Token))
                        {
                            await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ({client}, {runId + t})", c, tx);
                            await insert.ExecuteNonQueryAsync(deadline.Token);
                            await using var mine = new NpgsqlCommand($"SELECT count(*) FROM {Table} WHERE client = {client} AND n >= {runId}", c, tx);
                            var seen = Convert.ToInt32(await mine.ExecuteScalarAsync(deadline.Token), CultureInfo.InvariantCulture);
                            if (seen != t + 1)
                            {
                                failures.Enqueue($"client {client} saw {seen} of its rows inside transaction {t}, expected {t + 1}");
                            }

                            await tx.CommitAsync(deadline.Token);
                        }

                        // An autocommit read, balanced over the nodes.
                        await using var read = new NpgsqlCommand($"SELECT {client * 10 + t}", c);
                        var value = Convert.ToInt32(await read.ExecuteScalarAsync(deadline.Token), CultureInfo.InvariantCulture);
                        if (value != client * 10 + t)
                        {
                            failures.Enqueue($"client {client} got {value} for SELECT {client * 10 + t}");
                        }
                    }
                }
            }
            catch (Exception e)
            {
                failures.Enqueue($"client {client}: {e.GetType().Name}: {e.Message}");
            }
        }).ToList();
        await Task.WhenAll(tasks);
        await sampling.CancelAsync();
        await sampler;

        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
        var rows = Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE n >= {runId}"), CultureInfo.InvariantCulture);
        Assert.That(rows, Is.EqualTo(clients * transactions), "every committed insert is there");
        Assert.That(maxOpen, Has.All.LessThanOrEqualTo(10), "never more than default_pool_size server connections per node");
        Assert.That(maxOpen[0], Is.GreaterThan(0));
    }

    [Test]
    public async Task SearchPath_SetByOneClient_IsNeverSeenByAnother()
    {
        await using var poold = await StartAsync("default_pool_size = 2\n");
        var failures = new ConcurrentQueue<string>();
        var tasks = Enumerable.Range(0, 12).Select(async client =>
        {
            var mode = client % 3;
            await using var c = Connection(poold, $"txpool-path-{client}");
            await c.OpenAsync();
            var expected = mode switch
            {
                0 => "txpool_a",
                1 => "txpool_b",
                _ => "\"$user\", public",
            };
            if (mode < 2)
            {
                await new NpgsqlCommand($"SET search_path = {expected}", c).ExecuteNonQueryAsync();
                await new NpgsqlCommand($"SET application_name = 'txpool-path-set-{client}'", c).ExecuteNonQueryAsync();
            }

            for (var i = 0; i < 40; i++)
            {
                await using var show = new NpgsqlCommand("SELECT current_setting('search_path'), current_setting('application_name')", c);
                await using var reader = await show.ExecuteReaderAsync();
                await reader.ReadAsync();
                var (path, app) = (reader.GetString(0), reader.GetString(1));
                var expectedApp = mode < 2 ? $"txpool-path-set-{client}" : $"txpool-path-{client}";
                if (path != expected || app != expectedApp)
                {
                    failures.Enqueue($"client {client} statement {i}: search_path {path} (expected {expected}), application_name {app} (expected {expectedApp})");
                }
            }
        });
        await Task.WhenAll(tasks);
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
    }

    [Test]
    public async Task AutoPreparedStatements_FollowEachClient_AcrossServerConnections()
    {
        await using var poold = await StartAsync("default_pool_size = 3\nmax_prepared_statements = 4\n");
        var failures = new ConcurrentQueue<string>();
        var tasks = Enumerable.Range(0, 16).Select(async client =>
        {
            await using var c = Connection(poold, "txpool-prepared", "Max Auto Prepare=8;Auto Prepare Min Usages=2");
            await c.OpenAsync();
            for (var i = 0; i < 60; i++)
            {
                // Six statements per client, two of them the same text in every client: names collide across clients.
                var shape = i % 6;
                await using var cmd = new NpgsqlCommand($"SELECT $1::int + {shape} + {(shape < 2 ? 0 : client * 100)}", c);
                cmd.Parameters.AddWithValue(i);
                var value = Convert.ToInt32(await cmd.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
                var expected = i + shape + (shape < 2 ? 0 : client * 100);
                if (value != expected)
                {
                    failures.Enqueue($"client {client} statement {i}: {value}, expected {expected}");
                }
            }
        });
        await Task.WhenAll(tasks);
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
        Assert.That(poold.Log, Does.Not.Contain("already exists"));
    }

    [Test]
    public async Task APinnedSessionsConnection_IsClosedAtItsEnd_WhenTheResetListCannotUndoWhatPinned()
    {
        // reset_query_list without DISCARD ALL: the temporary table that pinned the session would outlive the reset.
        await using var poold = await StartAsync("default_pool_size = 1\nreset_query_list = 'ABORT'\n");
        int pinnedPid;
        await using (var pinned = Connection(poold, "txpool-pinned-temp"))
        {
            await pinned.OpenAsync();
            await new NpgsqlCommand("CREATE TEMP TABLE txpool_left_behind (x int)", pinned).ExecuteNonQueryAsync();
            pinnedPid = await BackendPidAsync(pinned);
        }

        // Given back (idle in the pool) or closed: either way no longer in use.
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.SharedPools().All(p => p.Open == p.Idle)), TimeSpan.FromSeconds(10),
            "the pinned session's connection to be let go");
        await using var next = Connection(poold, "txpool-pinned-temp");
        await next.OpenAsync();
        Assert.That(await BackendPidAsync(next), Is.Not.EqualTo(pinnedPid), "a new server connection");
        Assert.That(await new NpgsqlCommand("SELECT to_regclass('pg_temp.txpool_left_behind') IS NULL", next).ExecuteScalarAsync(), Is.True,
            "no other client's temporary table");
    }

    [Test]
    public async Task ExplicitPrepare_PinsTheSession_AndItKeepsWorking()
    {
        await using var poold = await StartAsync("default_pool_size = 4\n");
        await using var pinned = Connection(poold, "txpool-pin");
        await pinned.OpenAsync();
        await new NpgsqlCommand("PREPARE txpool_p(int) AS SELECT $1 * 2", pinned).ExecuteNonQueryAsync();
        var pid = await BackendPidAsync(pinned);

        await using (var other = Connection(poold, "txpool-pin-other"))
        {
            await other.OpenAsync();
            for (var i = 0; i < 5; i++)
            {
                Assert.That(await BackendPidAsync(other), Is.Not.EqualTo(pid), "a pinned connection is nobody else's");
            }
        }

        for (var i = 0; i < 5; i++)
        {
            Assert.That(await new NpgsqlCommand($"EXECUTE txpool_p({i})", pinned).ExecuteScalarAsync(), Is.EqualTo(i * 2));
            Assert.That(await BackendPidAsync(pinned), Is.EqualTo(pid));
        }

        await poold.WaitForLogAsync("keeps its server connections to its end because of SQL PREPARE");
    }

    [TestCase("LISTEN txpool_channel", "LISTEN")]
    [TestCase("CREATE TEMP TABLE txpool_temp (x int)", "a temporary table")]
    [TestCase("SELECT pg_advisory_lock(4242)", "pg_advisory_lock()")]
    [TestCase("BEGIN; DECLARE txpool_cursor CURSOR WITH HOLD FOR SELECT 1; COMMIT", "DECLARE ... WITH HOLD")]
    [TestCase("SET ROLE " + TestRoles.TrustUser, "SET ROLE")]
    public async Task SessionStateThatCannotMove_PinsTheSession(string statement, string reason)
    {
        await using var poold = await StartAsync("default_pool_size = 4\n");
        await using var c = Connection(poold, "txpool-pins");
        await c.OpenAsync();
        var before = await BackendPidAsync(c);
        await new NpgsqlCommand(statement, c).ExecuteNonQueryAsync();
        var pid = await BackendPidAsync(c);

        // Other clients churn on the pool meanwhile; the pinned client stays on its connection.
        await using (var other = Connection(poold, "txpool-pins-other"))
        {
            await other.OpenAsync();
            for (var i = 0; i < 4; i++)
            {
                Assert.That(await BackendPidAsync(other), Is.Not.EqualTo(pid));
            }
        }

        Assert.That(await BackendPidAsync(c), Is.EqualTo(pid));
        Assert.That(before, Is.Not.Zero);
        await poold.WaitForLogAsync("because of " + reason);
        if (statement.StartsWith("CREATE TEMP", StringComparison.Ordinal))
        {
            Assert.That(await new NpgsqlCommand("SELECT count(*) FROM txpool_temp", c).ExecuteScalarAsync(), Is.Zero);
        }
    }

    [Test]
    public async Task AnAnswerOfPooldsLast_TheConnectionStillGoesBack_WithoutTheClientSendingMore()
    {
        // One server connection; a query and a pool command pipelined: the pool command's answer (Poold's own) is the
        // last thing the session waits for. The connection must go back then, not at the client's next message.
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 5\n");
        await using var first = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-pipelined");
        await using var second = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-next");
        await first.SendAsync(RawClient.Query("SELECT pg_sleep(0.2)"), RawClient.Query("SHOW POOL_NODES"));
        var answers = await first.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        answers.AddRange(await first.ReadUntilReadyAsync(TimeSpan.FromSeconds(10)));
        Assert.That(answers.Count(m => m.Code == 'E'), Is.Zero, string.Join(" ", answers));

        // The first client now sends nothing; the second must get the one connection well within query_wait_timeout.
        await second.SendAsync(RawClient.Query("SELECT 7"));
        var reply = await second.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(reply.Any(m => m.Code == 'E'), Is.False, string.Join(" ", reply));
        Assert.That(reply.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("7"));
    }

    [Test]
    public async Task PoolExhausted_TheWaitingClientGets53300AfterQueryWaitTimeout()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 1\n");
        await using var holder = Connection(poold, "txpool-holder");
        await holder.OpenAsync();

        // The first login with this startup state goes through a server connection: logged in before the holder's transaction.
        await using var waiter = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-waiter");
        await using var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();

        var started = DateTime.UtcNow;
        await waiter.SendAsync(RawClient.Query("SELECT 2"));
        var answer = await waiter.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        var error = answer.Single(m => m.Code == 'E');
        Assert.That(error.SqlState, Is.EqualTo("53300"));
        Assert.That(error.Text, Does.Contain("query_wait_timeout"));
        Assert.That(DateTime.UtcNow - started, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(0.9)));

        // The same in the extended protocol: the error, then ReadyForQuery at the Sync.
        await waiter.SendAsync(RawClient.Parse("", "SELECT 4"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
        answer = await waiter.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(answer.Select(m => m.Code), Is.EqualTo(new[] { 'E', 'Z' }));

        // The waiter's session is still usable once the holder is done.
        await tx.CommitAsync();
        await waiter.SendAsync(RawClient.Query("SELECT 3"));
        answer = await waiter.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(answer.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("3"));
    }

    /// <summary>
    /// A reload that lowers default_pool_size holds for the connections already open: idle ones past the new size are
    /// closed, not handed out, and a client past it waits (here until query_wait_timeout), as PgBouncer does. Poold kept
    /// using every connection it had opened under the old size.
    /// </summary>
    [Test]
    public async Task DefaultPoolSize_LoweredByAReload_HoldsForTheConnectionsAlreadyOpen()
    {
        await using var poold = await StartAsync("default_pool_size = 4\nquery_wait_timeout = 2\n");
        var holders = new List<RawClient>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                holders.Add(await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-shrink"));
            }

            async Task<List<string>> BeginAllAsync(IEnumerable<RawClient> clients)
            {
                var pids = new List<string>();
                foreach (var client in clients)
                {
                    await client.SendAsync(RawClient.Query("BEGIN"), RawClient.Query("SELECT pg_backend_pid()"));
                    await client.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
                    var reply = await client.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
                    Assert.That(reply[^1].Text, Is.EqualTo("T"), string.Join(", ", reply));
                    pids.Add(reply.Single(m => m.Code == 'D').FirstColumn);
                }

                return pids;
            }

            async Task CommitAllAsync(IEnumerable<RawClient> clients)
            {
                foreach (var client in clients)
                {
                    await client.SendAsync(RawClient.Query("COMMIT"));
                    Assert.That((await client.ReadUntilReadyAsync(TimeSpan.FromSeconds(10)))[^1].Text, Is.EqualTo("I"));
                }
            }

            Assert.That((await BeginAllAsync(holders)).Distinct().Count(), Is.EqualTo(4), "four transactions at once: four server connections");
            await CommitAllAsync(holders);

            var conf = Path.Combine(poold.Directory, "poold.conf");
            await File.WriteAllTextAsync(conf, (await File.ReadAllTextAsync(conf))
                .Replace("default_pool_size = 4", "default_pool_size = 2", StringComparison.Ordinal));
            poold.Host.Reload();
            await poold.WaitForLogAsync("configuration reloaded");

            Assert.That((await BeginAllAsync(holders.Take(2))).Distinct().Count(), Is.EqualTo(2));
            await holders[2].SendAsync(RawClient.Query("SELECT 1"));
            var refused = await holders[2].ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
            Assert.That(refused.Single(m => m.Code == 'E').SqlState, Is.EqualTo("53300"), "the third client waits: the pool holds two now");
            Assert.That(poold.Host.Pool.SharedPools().Where(p => p.Key.NodeId == 0).Sum(p => p.Open), Is.EqualTo(2),
                "the idle connections past the new size were closed");
            await CommitAllAsync(holders.Take(2));
            await holders[2].SendAsync(RawClient.Query("SELECT 3"));
            Assert.That((await holders[2].ReadUntilReadyAsync(TimeSpan.FromSeconds(10))).Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("3"));
        }
        finally
        {
            foreach (var holder in holders)
            {
                await holder.DisposeAsync();
            }
        }
    }

    [Test]
    public async Task SettingsChangedWhereTheHistoryCannotFollow_NeverReachTheNextClientOfTheConnection()
    {
        // One server connection, two clients with the same startup packet: the next one takes the connection as it is
        // unless it is known to carry something else.
        await using var poold = await StartAsync("default_pool_size = 1\n");
        await using var a = Connection(poold, "txpool-uncertain");
        await using var b = Connection(poold, "txpool-uncertain");
        await a.OpenAsync();
        await b.OpenAsync();

        async Task<string> SettingSeenByB(string name) => (string)(await new NpgsqlCommand($"SHOW {name}", b).ExecuteScalarAsync())!;

        Assert.That(await SettingSeenByB("statement_timeout"), Is.EqualTo("0"));
        await new NpgsqlCommand("SELECT set_config('statement_timeout', '4321ms', false)", a).ExecuteScalarAsync();
        Assert.That(await SettingSeenByB("statement_timeout"), Is.EqualTo("0"), "set_config() in a query");

        await new NpgsqlCommand("SET statement_timeout = '1111ms'; SELECT 1", a).ExecuteScalarAsync();
        Assert.That(await SettingSeenByB("statement_timeout"), Is.EqualTo("0"), "a SET among other statements");

        await new NpgsqlCommand("SET default_transaction_isolation = 'repeatable read'", a).ExecuteNonQueryAsync();
        Assert.That(await SettingSeenByB("default_transaction_isolation"), Is.EqualTo("read committed"), "a SET the history does not keep");

        await using (var tx = await a.BeginTransactionAsync())
        {
            await new NpgsqlCommand("SET search_path = txpool_a", a, tx).ExecuteNonQueryAsync();
            await tx.RollbackAsync();
        }

        Assert.That(await SettingSeenByB("search_path"), Is.EqualTo("\"$user\", public"), "a SET inside a transaction");
    }

    [Test]
    public async Task DiscardAllAndDeallocate_BetweenTransactions_TouchOnlyTheClientsOwnStatements()
    {
        await using var poold = await StartAsync("default_pool_size = 1\n");
        await using var owner = Connection(poold, "txpool-owner");
        await owner.OpenAsync();
        await using var prepared = new NpgsqlCommand("SELECT 40 + 2", owner);
        await prepared.PrepareAsync();
        Assert.That(await prepared.ExecuteScalarAsync(), Is.EqualTo(42));

        // Another client on the same (only) server connection, with a statement of the same name and text (so the one
        // on the server is shared): its DEALLOCATE and DISCARD ALL are its own business.
        await using var other = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-discarder");
        await other.SendAsync(RawClient.Parse("_p1", "SELECT 40 + 2"), RawClient.Bind("", "_p1"), RawClient.Execute(""), RawClient.Sync());
        Assert.That((await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10))).Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"));
        await other.SendAsync(RawClient.Query("DEALLOCATE _p1"));
        var answer = await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(answer.Any(m => m.Code == 'E'), Is.False, string.Join(" ", answer));
        Assert.That(await prepared.ExecuteScalarAsync(), Is.EqualTo(42), "the first client's statement of that name still works");
        await other.SendAsync(RawClient.Query("DEALLOCATE _p1"));
        answer = await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(answer.Single(m => m.Code == 'E').SqlState, Is.EqualTo("26000"), "deallocated once, as on a server");
        await other.SendAsync(RawClient.Query("DEALLOCATE"));
        answer = await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(answer.Single(m => m.Code == 'E').SqlState, Is.EqualTo("42601"), "a DEALLOCATE with no name is the server's syntax error");
        await other.SendAsync(RawClient.Query("SET statement_timeout = '5s'"), RawClient.Query("DISCARD ALL"), RawClient.Query("SHOW statement_timeout"));
        answer = [];
        for (var i = 0; i < 3; i++)
        {
            answer.AddRange(await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10)));
        }

        Assert.That(answer.Any(m => m.Code == 'E'), Is.False, string.Join(" ", answer));
        Assert.That(answer.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("0"), "DISCARD ALL put the client's settings back");

        // DISCARD ALL and, in the same write, a statement of that name again: parsed anew, not taken for the one dropped.
        await other.SendAsync(RawClient.Query("DISCARD ALL"), RawClient.Parse("_p1", "SELECT 40 + 2"), RawClient.Bind("", "_p1"), RawClient.Execute(""),
            RawClient.Sync());
        answer = [.. await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10)), .. await other.ReadUntilReadyAsync(TimeSpan.FromSeconds(10))];
        Assert.That(answer.Any(m => m.Code == 'E'), Is.False, string.Join(" ", answer));
        Assert.That(answer.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"));

        Assert.That(await prepared.ExecuteScalarAsync(), Is.EqualTo(42), "the first client's statement still works on the shared connection");
        await using var again = new NpgsqlCommand("SELECT 40 + 3", owner);
        await again.PrepareAsync();
        Assert.That(await again.ExecuteScalarAsync(), Is.EqualTo(43));
    }

    [Test]
    public async Task QueryWaitTimeoutZero_WaitsAsLongAsTheConnectionIsHeld_AsInPgBouncer()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 0\n");
        await using var holder = Connection(poold, "txpool-holder0");
        await holder.OpenAsync();
        await using var waiter = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-waiter0");
        await using var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();

        await waiter.SendAsync(RawClient.Query("SELECT 2"));
        var answer = waiter.ReadUntilReadyAsync(TimeSpan.FromSeconds(60));
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.SharedPools().Sum(p => p.Waiting) == 1), TimeSpan.FromSeconds(10),
            "the second client to wait for the one connection");

        // Well past what a zero deadline would allow: still waiting, no error.
        Assert.That(await Task.WhenAny(answer, Task.Delay(TimeSpan.FromSeconds(1.5))), Is.Not.SameAs(answer), "no answer while the connection is held");
        Assert.That(poold.Host.Pool.SharedPools().Sum(p => p.Waiting), Is.EqualTo(1));

        await tx.CommitAsync();
        var reply = await answer;
        Assert.That(reply.Any(m => m.Code == 'E'), Is.False, string.Join(" ", reply));
        Assert.That(reply.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("2"));
    }

    [Test]
    public async Task ClientKilledInsideATransaction_LeavesNoLockBehind()
    {
        await using var poold = await StartAsync("default_pool_size = 2\n");
        await ClusterFixture.Cluster.ScalarAsync(0, $"INSERT INTO {Table} VALUES (-1, -1)");
        var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-killed");
        await raw.SendAsync(RawClient.Query($"BEGIN; UPDATE {Table} SET n = -2 WHERE client = -1"));
        await raw.ReadUntilReadyAsync();
        raw.Socket.Close(0);
        await raw.DisposeAsync();

        await using var c = Connection(poold, "txpool-after-kill");
        await c.OpenAsync();
        await new NpgsqlCommand("SET lock_timeout = '5s'", c).ExecuteNonQueryAsync();
        Assert.That(await new NpgsqlCommand($"UPDATE {Table} SET n = -3 WHERE client = -1", c).ExecuteNonQueryAsync(), Is.GreaterThan(0),
            "the dead client's row lock is gone");
        Assert.That(await new NpgsqlCommand($"SELECT count(*) FROM {Table} WHERE n = -2", c).ExecuteScalarAsync(), Is.Zero,
            "its uncommitted update was rolled back");
    }

    [Test]
    public async Task LateCancel_NeverCancelsTheNextClientsStatement()
    {
        await using var poold = await StartAsync("default_pool_size = 1\n");
        await using var a = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-cancel-a");
        await using var b = Connection(poold, "txpool-cancel-b");
        await b.OpenAsync();
        for (var round = 0; round < 5; round++)
        {
            await a.SendAsync(RawClient.Query("SELECT 1"));
            await a.ReadUntilReadyAsync();

            // A's statement is over; B now runs on the same (only) server connection while A's cancel arrives.
            var slow = new NpgsqlCommand($"SELECT {round} FROM pg_sleep(1)", b).ExecuteScalarAsync();
            await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                    $"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT {round} FROM pg_sleep(1)'"),
                CultureInfo.InvariantCulture) == 1, TimeSpan.FromSeconds(10), "B's statement to run");
            await a.CancelThroughAsync(poold.Port);
            Assert.That(await slow, Is.EqualTo(round), $"round {round}: B's statement ran to its end");
        }
    }

    [Test]
    public async Task ShowPoolClientsAndServers_ShowWhoHoldsAndWhoWaits()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 30\n");
        await using var observer = Connection(poold, "txpool-observer");
        await observer.OpenAsync();
        await using var holder = Connection(poold, "txpool-show-holder");
        await holder.OpenAsync();
        await using var waiter = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txpool-show-waiter");
        await using var tx = await holder.BeginTransactionAsync();
        var holderPid = Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", holder, tx).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
        await waiter.SendAsync(RawClient.Query("SELECT 2"));

        async Task<List<Dictionary<string, string>>> ShowAsync(string what)
        {
            var rows = new List<Dictionary<string, string>>();
            await using var reader = await new NpgsqlCommand("SHOW " + what, observer).ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                rows.Add(Enumerable.Range(0, reader.FieldCount).ToDictionary(reader.GetName, i => reader.GetString(i)));
            }

            return rows;
        }

        await Poll.UntilAsync(async () => (await ShowAsync("POOL_CLIENTS")).Any(r => r["state"] == "waiting"), TimeSpan.FromSeconds(10),
            "the waiter to show as waiting");
        var clients = await ShowAsync("POOL_CLIENTS");
        Assert.That(clients, Has.Count.EqualTo(3));
        Assert.That(clients.Select(r => r["pool_mode"]), Is.All.EqualTo("transaction"));
        Assert.That(clients.Count(r => r["state"] == "active" && r["backends"] == $"0:{holderPid}"), Is.EqualTo(1), "the holder and its backend pid");
        Assert.That(clients.Count(r => r["state"] == "idle" && r["backends"] == ""), Is.EqualTo(1), "the observer holds nothing between statements");

        var servers = await ShowAsync("POOL_SERVERS");
        var pool = servers.Single(r => r["node_id"] == "0" && r["username"] == TestRoles.TrustUser);
        Assert.That((pool["sv_active"], pool["sv_idle"], pool["sv_open"], pool["cl_waiting"]), Is.EqualTo(("1", "0", "1", "1")));

        await tx.CommitAsync();
        var answer = await waiter.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(answer.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("2"), "the waiter ran once the holder committed");
    }

    [Test]
    public async Task TlsClients_ShareServerConnections_WithScramToTheBackends()
    {
        // Clients over TLS, authenticated by SCRAM in pass-through; a few server connections serve them all.
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, 0)
                                                               + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\ndefault_pool_size = 2\n");
        var pids = new ConcurrentBag<int>();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            var builder = poold.ConnectionString(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Require);
            builder.Pooling = false;
            await using var c = new NpgsqlConnection(builder.ConnectionString);
            await c.OpenAsync();
            for (var n = 0; n < 10; n++)
            {
                await using var cmd = new NpgsqlCommand($"SELECT pg_backend_pid(), {i * 100 + n}", c);
                await using var reader = await cmd.ExecuteReaderAsync();
                Assert.That(await reader.ReadAsync(), Is.True);
                pids.Add(reader.GetInt32(0));
                Assert.That(reader.GetInt32(1), Is.EqualTo(i * 100 + n));
            }
        }));
        Assert.That(pids.Distinct().Count(), Is.InRange(1, 2), "80 statements of 8 TLS clients on at most default_pool_size server connections");
    }

    [Test]
    public async Task MaxClientConn_RefusesTheClientPastIt_With53300()
    {
        await using var poold = await StartAsync("max_client_conn = 2\n");
        await using var first = Connection(poold, "txpool-cap-1");
        await using var second = Connection(poold, "txpool-cap-2");
        await first.OpenAsync();
        await second.OpenAsync();
        await using var third = Connection(poold, "txpool-cap-3");
        var refused = Assert.ThrowsAsync<PostgresException>(async () => await third.OpenAsync());
        Assert.That(refused!.SqlState, Is.EqualTo("53300"));
        Assert.That(refused.MessageText, Does.Contain("max_client_conn"));

        await first.CloseAsync();
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.TransactionClients == 1), TimeSpan.FromSeconds(10), "the first client's slot to be free");
        await using var fourth = Connection(poold, "txpool-cap-4");
        await fourth.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT 4", fourth).ExecuteScalarAsync(), Is.EqualTo(4));
    }

    [Test]
    public async Task WaitingClients_AreServedFirstComeFirstServed()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 30\n");
        await using var holder = Connection(poold, "txpool-fifo-holder");
        await holder.OpenAsync();
        var waiters = new List<RawClient>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                waiters.Add(await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, $"txpool-fifo-{i}"));
            }

            await using var tx = await holder.BeginTransactionAsync();
            await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();

            // Each waiter queues only once the one before it is waiting: their order is known.
            for (var i = 0; i < waiters.Count; i++)
            {
                await waiters[i].SendAsync(RawClient.Query($"SELECT clock_timestamp()::text /* waiter {i} */"));
                var expected = i + 1;
                await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.SharedPools().Sum(p => p.Waiting) == expected), TimeSpan.FromSeconds(10),
                    $"{expected} clients to wait");
            }

            await tx.CommitAsync();
            var times = new List<string>();
            foreach (var waiter in waiters)
            {
                var row = (await waiter.ReadUntilReadyAsync(TimeSpan.FromSeconds(20))).Single(m => m.Code == 'D');
                times.Add(row.FirstColumn);
            }

            Assert.That(times, Is.Ordered, "the connection went to the waiters in the order they came");
        }
        finally
        {
            foreach (var waiter in waiters)
            {
                await waiter.DisposeAsync();
            }
        }
    }

    /// <summary>Load balancing, one server connection per node, and each named client sent where <paramref name="redirects"/> says.</summary>
    private static Task<PooldInstance> StartOneConnectionPerNodeAsync(string redirects) =>
        StartAsync($"default_pool_size = 1\nquery_wait_timeout = 5\napp_name_redirect_preference_list = '{redirects}'\n", loadBalance: true);

    private static Task<RawClient> RawAsync(PooldInstance poold, string applicationName) =>
        RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, applicationName);

    [TestCase(false)]
    [TestCase(true)]
    public async Task ATransactionThatOnlyBeganOnAStandby_GivesItBack_BeforeWaitingForThePrimary(bool extended)
    {
        // One server connection per node. A's transaction begins where A reads (the standby, node 1), then writes while
        // another client holds the primary's only connection. Holding the standby while it waits would make every reader
        // of node 1 wait behind the primary's line: nothing ran on it but BEGIN, so it goes back first.
        await using var poold = await StartOneConnectionPerNodeAsync("txpool-lb-holder:primary,txpool-lb-a:1,txpool-lb-c:1");
        await ClusterFixture.Cluster.ScalarAsync(0, $"DELETE FROM {Table} WHERE client IN (-10, -11); INSERT INTO {Table} VALUES (-10, 0), (-11, 0)");
        await using var holder = await RawAsync(poold, "txpool-lb-holder");
        await using var a = await RawAsync(poold, "txpool-lb-a");
        await using var c = await RawAsync(poold, "txpool-lb-c");

        await holder.SendAsync(RawClient.Query($"BEGIN; UPDATE {Table} SET n = 1 WHERE client = -10"));
        Assert.That((await holder.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("T"u8.ToArray()), "the holder's transaction is open on the primary");

        await a.SendAsync(Statement("BEGIN", extended));
        Assert.That((await a.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("T"u8.ToArray()), "A's BEGIN was answered");
        Assert.That(await StandbyTransactionsAsync(), Is.EqualTo(1), "A's transaction began on the standby");

        await a.SendAsync(Statement($"UPDATE {Table} SET n = 2 WHERE client = -11", extended));
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.SharedPools().Sum(p => p.Waiting) == 1), TimeSpan.FromSeconds(10),
            "A to wait for the primary");
        Assert.That(await StandbyTransactionsAsync(), Is.Zero, "the standby's empty transaction was rolled back before A waited");

        // C reads on node 1 while A still waits: the standby's connection is free.
        await c.SendAsync(RawClient.Query("SELECT 42"));
        var read = await c.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(read.Where(m => m.Code == 'E'), Is.Empty, "C did not wait for query_wait_timeout");
        Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"));

        await holder.SendAsync(RawClient.Query("COMMIT"));
        await holder.ReadUntilReadyAsync();
        var updated = await a.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(updated.Single(m => m.Code == 'C').Text, Does.StartWith("UPDATE 1"));
        Assert.That(updated.Last().Body, Is.EqualTo("T"u8.ToArray()), "A's transaction went on, on the primary");
        await a.SendAsync(RawClient.Query("COMMIT"));
        Assert.That((await a.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("I"u8.ToArray()));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT string_agg(n::text, ',' ORDER BY client) FROM {Table} WHERE client IN (-10, -11)"),
            Is.EqualTo("2,1"), "both transactions committed on the primary");

        static byte[][] Statement(string sql, bool extended) =>
            extended ? [RawClient.Parse("", sql), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync()] : [RawClient.Query(sql)];

        static async Task<long> StandbyTransactionsAsync() =>
            Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(1,
                $"SELECT count(*) FROM pg_stat_activity WHERE usename = '{TestRoles.TrustUser}' AND state LIKE 'idle in transaction%'"),
                CultureInfo.InvariantCulture);
    }

    [Test]
    public async Task QueryWaitTimeout_AfterTheStandbyWentBackInsideATransaction_EndsTheSessionWithFatal()
    {
        // A's transaction began on the standby and gave it back to wait for the primary: A holds nothing, yet its BEGIN
        // stands. Answering the timeout with ERROR and ReadyForQuery 'I' would tell A its transaction is over.
        await using var poold = await StartAsync(
            "default_pool_size = 1\nquery_wait_timeout = 1\napp_name_redirect_preference_list = 'txpool-qw-holder:primary,txpool-qw-a:1'\n",
            loadBalance: true);
        await ClusterFixture.Cluster.ScalarAsync(0, $"DELETE FROM {Table} WHERE client IN (-13, -14); INSERT INTO {Table} VALUES (-13, 0), (-14, 0)");
        await using var holder = await RawAsync(poold, "txpool-qw-holder");
        await using var a = await RawAsync(poold, "txpool-qw-a");

        await holder.SendAsync(RawClient.Query($"BEGIN; UPDATE {Table} SET n = 1 WHERE client = -13"));
        Assert.That((await holder.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("T"u8.ToArray()));
        await a.SendAsync(RawClient.Query("BEGIN"));
        Assert.That((await a.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("T"u8.ToArray()));

        await a.SendAsync(RawClient.Query($"UPDATE {Table} SET n = 2 WHERE client = -14"));
        var answer = await a.ReadUntilAsync("EZ", TimeSpan.FromSeconds(15));
        var error = answer.Single(m => m.Code == 'E');
        Assert.That(error.SqlState, Is.EqualTo("53300"), error.ToString());
        Assert.That(error.Text, Does.Contain("SFATAL"), "a FATAL, not an ERROR the client could go on after");
        Assert.That(async () => await a.ReadUntilReadyAsync(TimeSpan.FromSeconds(10)), Throws.InstanceOf<EndOfStreamException>().Or.InstanceOf<IOException>(),
            "the session ended");

        await holder.SendAsync(RawClient.Query("ROLLBACK"));
        Assert.That((await holder.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("I"u8.ToArray()));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT n FROM {Table} WHERE client = -14"), Is.EqualTo(0), "nothing of A's ran");
    }

    [Test]
    public async Task ASavepointAfterBeginOnAStandby_MovesTheTransactionToThePrimary_AndTheStandbyGoesBackClean()
    {
        await using var poold = await StartOneConnectionPerNodeAsync("txpool-sp-a:1,txpool-sp-c:1");
        await ClusterFixture.Cluster.ScalarAsync(0, $"DELETE FROM {Table} WHERE client = -12; INSERT INTO {Table} VALUES (-12, 0)");
        await using var a = await RawAsync(poold, "txpool-sp-a");
        await using var c = await RawAsync(poold, "txpool-sp-c");

        foreach (var sql in new[] { "BEGIN", "SAVEPOINT s1", $"UPDATE {Table} SET n = 1 WHERE client = -12", "ROLLBACK TO SAVEPOINT s1",
                     $"UPDATE {Table} SET n = n + 5 WHERE client = -12" })
        {
            await a.SendAsync(RawClient.Query(sql));
            var answer = await a.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
            Assert.That(answer.Where(m => m.Code == 'E'), Is.Empty, sql);
            Assert.That(answer.Last().Body, Is.EqualTo("T"u8.ToArray()), sql);

            if (sql == "BEGIN")
            {
                // A holds the standby's only connection until its transaction moves to the primary.
                continue;
            }

            // From the SAVEPOINT on, the standby's only connection serves another client's reads, in step with its replies.
            await c.SendAsync(RawClient.Query("SELECT 42"));
            var read = await c.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
            Assert.That(read.Where(m => m.Code == 'E'), Is.Empty, $"C's read after A's {sql}");
            Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"));
        }

        await a.SendAsync(RawClient.Query("COMMIT"));
        Assert.That((await a.ReadUntilReadyAsync()).Last().Body, Is.EqualTo("I"u8.ToArray()));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT n FROM {Table} WHERE client = -12"), Is.EqualTo(5),
            "the savepoint's rollback undid only the first update");
        Assert.That(poold.Log, Does.Not.Contain("refused a statement Poold replayed"));
    }
}
