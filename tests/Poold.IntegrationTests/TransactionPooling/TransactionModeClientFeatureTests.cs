using System.Collections.Concurrent;
using System.Globalization;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.TransactionPooling;

/// <summary>
/// pool_mode = transaction with Npgsql features that keep protocol state: explicitly prepared commands reused across
/// transactions while other clients churn a pool of two, batches and multiple result sets; and pool_mode_database_list
/// giving one database session pooling while the default stays transaction pooling.
/// </summary>
public class TransactionModeClientFeatureTests
{
    private const string Table = "txfeat_rows";
    private const string SessionDatabase = "txpool_sessiondb";

    [OneTimeSetUp]
    public async Task CreateTableAndDatabase()
    {
        var cluster = ClusterFixture.Cluster;
        await cluster.ScalarAsync(0, $"CREATE TABLE IF NOT EXISTS {Table} (client int, n int); GRANT ALL ON {Table} TO PUBLIC");
        if (await cluster.ScalarAsync(0, $"SELECT 1 FROM pg_database WHERE datname = '{SessionDatabase}'") is null)
        {
            await cluster.ScalarAsync(0, $"CREATE DATABASE {SessionDatabase} OWNER {TestRoles.TrustUser}");
        }

        await cluster.WaitForReplayAsync();
    }

    private static Task<PooldInstance> StartAsync(string extra) =>
        PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, 0)
                                 + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\n" + extra, ssl: false);

    private static NpgsqlConnection Connection(PooldInstance poold, string applicationName, string database = PgCluster.TestDatabase)
    {
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.ApplicationName = applicationName;
        builder.Database = database;
        builder.Pooling = false;
        builder.Timeout = 60;
        builder.CommandTimeout = 60;
        return new NpgsqlConnection(builder.ConnectionString);
    }

    private static async Task<int> BackendPidAsync(NpgsqlConnection c) =>
        Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);

    [Test]
    public async Task ExplicitlyPreparedCommands_RunManyTimesAcrossTransactions_WhileOthersChurnAPoolOfTwo()
    {
        await using var poold = await StartAsync("default_pool_size = 2\nquery_wait_timeout = 60\n");
        var failures = new ConcurrentQueue<string>();
        var pids = new ConcurrentDictionary<int, byte>();
        using var churning = new CancellationTokenSource();
        await ClusterFixture.Cluster.ScalarAsync(0, $"DELETE FROM {Table} WHERE n < 0");

        // Churners: unprepared statements and their own explicitly prepared ones, whose names (_p1...) collide with the others'.
        var churners = Enumerable.Range(0, 4).Select(async k =>
        {
            await using var c = Connection(poold, $"txfeat-churn-{k}");
            await c.OpenAsync();
            await using var mine = new NpgsqlCommand("SELECT $1::int - 1000", c);
            mine.Parameters.Add(new NpgsqlParameter<int> { Value = 0 });
            await mine.PrepareAsync();
            var i = 0;
            while (!churning.IsCancellationRequested)
            {
                pids[await BackendPidAsync(c)] = 0;
                mine.Parameters[0].Value = i;
                var got = Convert.ToInt32(await mine.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
                if (got != i - 1000)
                {
                    failures.Enqueue($"churner {k}: {got}, expected {i - 1000}");
                }

                i++;
            }
        }).ToList();

        var workers = Enumerable.Range(0, 6).Select(async client =>
        {
            try
            {
                await using var c = Connection(poold, $"txfeat-prepared-{client}");
                await c.OpenAsync();
                await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ($1, $2)", c);
                insert.Parameters.Add(new NpgsqlParameter<int> { Value = client });
                insert.Parameters.Add(new NpgsqlParameter<int> { Value = 0 });
                await insert.PrepareAsync();
                await using var compute = new NpgsqlCommand($"SELECT $1::int * 3 + {client}, $2::text || '-{client}'", c);
                compute.Parameters.Add(new NpgsqlParameter<int> { Value = 0 });
                compute.Parameters.Add(new NpgsqlParameter<string> { Value = "" });
                await compute.PrepareAsync();
                Assert.That(insert.IsPrepared && compute.IsPrepared);
                for (var i = 0; i < 40; i++)
                {
                    compute.Parameters[0].Value = i;
                    compute.Parameters[1].Value = $"v{i}";
                    await using var tx = i % 2 == 0 ? await c.BeginTransactionAsync() : null;
                    compute.Transaction = tx;
                    insert.Transaction = tx;
                    await using (var reader = await compute.ExecuteReaderAsync())
                    {
                        await reader.ReadAsync();
                        var (number, text) = (reader.GetInt32(0), reader.GetString(1));
                        if (number != i * 3 + client || text != $"v{i}-{client}")
                        {
                            failures.Enqueue($"client {client} round {i}: ({number}, {text}), expected ({i * 3 + client}, v{i}-{client})");
                        }
                    }

                    insert.Parameters[1].Value = -1 - i;
                    await insert.ExecuteNonQueryAsync();
                    if (tx is not null)
                    {
                        await tx.CommitAsync();
                    }
                }

                var rows = Convert.ToInt64(await new NpgsqlCommand($"SELECT count(*) FROM {Table} WHERE client = {client} AND n < 0", c)
                    .ExecuteScalarAsync(), CultureInfo.InvariantCulture);
                if (rows != 40)
                {
                    failures.Enqueue($"client {client}: {rows} rows, expected 40");
                }
            }
            catch (Exception e)
            {
                failures.Enqueue($"client {client}: {e.GetType().Name}: {e.Message}");
            }
        }).ToList();

        await Task.WhenAll(workers);
        await churning.CancelAsync();
        await Task.WhenAll(churners);
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
        Assert.That(pids, Has.Count.InRange(1, 2), "everyone took turns on two server connections");
        Assert.That(poold.Log, Does.Not.Contain("keeps its server connections"), "protocol-level prepared statements pin nothing");
    }

    [Test]
    public async Task BatchesAndMultipleResultSets_ComeBackWhole_WhileOthersChurn()
    {
        await using var poold = await StartAsync("default_pool_size = 2\nquery_wait_timeout = 60\n");
        var failures = new ConcurrentQueue<string>();
        await ClusterFixture.Cluster.ScalarAsync(0, $"DELETE FROM {Table} WHERE client >= 1000");
        var tasks = Enumerable.Range(0, 8).Select(async client =>
        {
            try
            {
                await using var c = Connection(poold, $"txfeat-batch-{client}");
                await c.OpenAsync();
                for (var i = 0; i < 20; i++)
                {
                    // An extended-protocol batch (one Sync), inside a transaction every other round.
                    await using var tx = i % 2 == 0 ? await c.BeginTransactionAsync() : null;
                    await using var batch = new NpgsqlBatch(c, tx)
                    {
                        BatchCommands =
                        {
                            new NpgsqlBatchCommand($"INSERT INTO {Table} VALUES ({client + 1000}, {i}) RETURNING n"),
                            new NpgsqlBatchCommand($"SELECT generate_series(1, {client + 2})"),
                            new NpgsqlBatchCommand("SELECT $1::int + 1") { Parameters = { new NpgsqlParameter<int> { Value = i } } },
                        },
                    };
                    var sets = new List<List<int>>();
                    await using (var reader = await batch.ExecuteReaderAsync())
                    {
                        do
                        {
                            var set = new List<int>();
                            while (await reader.ReadAsync())
                            {
                                set.Add(reader.GetInt32(0));
                            }

                            sets.Add(set);
                        }
                        while (await reader.NextResultAsync());
                    }

                    if (tx is not null)
                    {
                        await tx.CommitAsync();
                    }

                    var expected = new[] { new[] { i }, Enumerable.Range(1, client + 2).ToArray(), new[] { i + 1 } };
                    if (sets.Count != 3 || !sets.Zip(expected).All(p => p.First.SequenceEqual(p.Second)))
                    {
                        failures.Enqueue($"client {client} batch {i}: {string.Join(" | ", sets.Select(s => string.Join(",", s)))}");
                    }

                    // A simple-protocol query string with several statements: several result sets.
                    await using var multi = new NpgsqlCommand($"SELECT {client}; SELECT {i}, 'x'; SELECT count(*) FROM {Table} WHERE client = {client + 1000}", c);
                    await using var r = await multi.ExecuteReaderAsync();
                    await r.ReadAsync();
                    var a = r.GetInt32(0);
                    await r.NextResultAsync();
                    await r.ReadAsync();
                    var b = r.GetInt32(0);
                    await r.NextResultAsync();
                    await r.ReadAsync();
                    var count = r.GetInt64(0);
                    if (a != client || b != i || count != i + 1)
                    {
                        failures.Enqueue($"client {client} multi {i}: {a}, {b}, {count}; expected {client}, {i}, {i + 1}");
                    }
                }
            }
            catch (Exception e)
            {
                failures.Enqueue($"client {client}: {e.GetType().Name}: {e.Message}");
            }
        }).ToList();

        await Task.WhenAll(tasks);
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
    }

    [Test]
    public async Task PoolModeDatabaseList_ASessionDatabaseKeepsItsBackends_TheDefaultDatabaseSharesThem()
    {
        await using var poold = await StartAsync($"default_pool_size = 2\nquery_wait_timeout = 60\npool_mode_database_list = '{SessionDatabase}:session'\n");
        var session = new List<NpgsqlConnection>();
        var pooled = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                var c = Connection(poold, $"txfeat-session-{i}", SessionDatabase);
                await c.OpenAsync();
                session.Add(c);
            }

            for (var i = 0; i < 6; i++)
            {
                var c = Connection(poold, $"txfeat-pooled-{i}");
                await c.OpenAsync();
                pooled.Add(c);
            }

            var sessionPids = new List<int>[2] { [], [] };
            var pooledPids = new Dictionary<int, HashSet<int>>();
            for (var round = 0; round < 5; round++)
            {
                for (var i = 0; i < session.Count; i++)
                {
                    sessionPids[i].Add(await BackendPidAsync(session[i]));
                }

                for (var i = 0; i < pooled.Count; i++)
                {
                    var pid = await BackendPidAsync(pooled[i]);
                    (pooledPids.TryGetValue(pid, out var users) ? users : pooledPids[pid] = []).Add(i);
                }
            }

            Assert.That(sessionPids[0].Distinct().Count(), Is.EqualTo(1), "a session-mode client keeps its backend");
            Assert.That(sessionPids[1].Distinct().Count(), Is.EqualTo(1), "a session-mode client keeps its backend");
            Assert.That(sessionPids[0][0], Is.Not.EqualTo(sessionPids[1][0]), "two session-mode clients do not share a backend");
            Assert.That(pooledPids.Keys, Has.Count.InRange(1, 2), "six transaction-mode clients took turns on two backends");
            Assert.That(pooledPids.Values.Max(users => users.Count), Is.GreaterThan(1), "a backend served several clients");

            // SQL PREPARE pins a transaction-mode session; in a session-mode database there is nothing to pin.
            await new NpgsqlCommand("PREPARE txfeat_s AS SELECT 1", session[0]).ExecuteNonQueryAsync();
            Assert.That(await new NpgsqlCommand("EXECUTE txfeat_s", session[0]).ExecuteScalarAsync(), Is.EqualTo(1));
            Assert.That(poold.Log, Does.Not.Contain("keeps its server connections"));
            await new NpgsqlCommand("PREPARE txfeat_t AS SELECT 2", pooled[0]).ExecuteNonQueryAsync();
            await poold.WaitForLogAsync("keeps its server connections to its end because of SQL PREPARE");
        }
        finally
        {
            foreach (var c in session.Concat(pooled))
            {
                await c.DisposeAsync();
            }
        }
    }

    /// <summary>What pgbench -M prepared sends: each statement Parsed (and synced) just before its first run, inside the transaction.</summary>
    [Test]
    public async Task NamedStatementParsedInsideATransaction_AfterANamedBegin_Runs()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 5\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-raw");
        var timeout = TimeSpan.FromSeconds(10);
        await raw.SendAsync(RawClient.Parse("P0_0", "BEGIN"), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));
        await raw.SendAsync(RawClient.Bind("", "P0_0"), RawClient.Execute(""), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '2', 'C', 'Z' }));
        await raw.SendAsync(RawClient.Parse("P0_1", $"UPDATE {Table} SET n = n WHERE client = -42"), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));
        await raw.SendAsync(RawClient.Bind("", "P0_1"), RawClient.Execute(""), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '2', 'C', 'Z' }));
        await raw.SendAsync(RawClient.Query("COMMIT"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { 'C', 'Z' }));
    }

    /// <summary>As above with a second client waiting for the only server connection while the first is in its transaction.</summary>
    [Test]
    public async Task NamedStatementParsedInsideATransaction_WhileAnotherClientWaits_Runs()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 30\n");
        await using var a = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-raw-a");
        await using var b = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-raw-b");
        var timeout = TimeSpan.FromSeconds(10);
        await a.SendAsync(RawClient.Parse("P0_0", "BEGIN"), RawClient.Sync());
        await a.ReadUntilReadyAsync(timeout);
        await a.SendAsync(RawClient.Bind("", "P0_0"), RawClient.Execute(""), RawClient.Sync());
        await a.ReadUntilReadyAsync(timeout);
        await b.SendAsync(RawClient.Parse("P0_0", "BEGIN"), RawClient.Sync());
        await a.SendAsync(RawClient.Parse("P0_1", $"UPDATE {Table} SET n = n WHERE client = -42"), RawClient.Sync());
        Assert.That((await a.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));
        await a.SendAsync(RawClient.Bind("", "P0_1"), RawClient.Execute(""), RawClient.Sync());
        Assert.That((await a.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '2', 'C', 'Z' }));
        await a.SendAsync(RawClient.Query("COMMIT"));
        Assert.That((await a.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { 'C', 'Z' }));
        Assert.That((await b.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));
    }

    /// <summary>
    /// A batch split by a Flush whose later part binds a statement prepared in an earlier transaction, on a server
    /// connection that does not have it (the one that does is held by another client): Poold parses it there first, and
    /// the client sees only its own replies, in order. Before, the later part was sent as it was and got 26000.
    /// </summary>
    private static char[] Codes(List<BackendMessage> messages) => [.. messages.Select(m => m.Code)];

    /// <summary>
    /// On a pool of two: A prepares S1 (<c>SELECT 41 + 1</c>) on the only server connection there is, then B holds that
    /// one in a transaction, so A's next batch runs on the other. Returns the pid B holds.
    /// </summary>
    private static async Task<string> PrepareWhereBThenHoldsItAsync(RawClient a, RawClient b, TimeSpan timeout)
    {
        await a.SendAsync(RawClient.Parse("S1", "SELECT 41 + 1"), RawClient.Sync());
        Assert.That(Codes(await a.ReadUntilReadyAsync(timeout)), Is.EqualTo(new[] { '1', 'Z' }));
        await b.SendAsync(RawClient.Query("BEGIN"), RawClient.Query("SELECT pg_backend_pid()"));
        await b.ReadUntilReadyAsync(timeout);
        return (await b.ReadUntilReadyAsync(timeout)).Single(m => m.Code == 'D').FirstColumn;
    }

    [Test]
    public async Task ALaterPartOfABatch_BindsAStatementItsConnectionLacks_ItIsParsedThereFirst()
    {
        await using var poold = await StartAsync("default_pool_size = 2\nquery_wait_timeout = 30\n");
        await using var a = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-flush-a");
        await using var b = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-flush-b");
        var timeout = TimeSpan.FromSeconds(10);
        var heldByB = await PrepareWhereBThenHoldsItAsync(a, b, timeout);

        // A's batch: a first part up to a Flush (on the second connection), then a part that binds S1.
        await a.SendAsync(RawClient.Parse("", "SELECT pg_backend_pid()"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        var first = await a.ReadUntilAsync("C", timeout);
        Assert.That(Codes(first), Is.EqualTo(new[] { '1', '2', 'D', 'C' }));
        Assert.That(first.Single(m => m.Code == 'D').FirstColumn, Is.Not.EqualTo(heldByB), "A's batch runs on the connection without S1");

        await a.SendAsync(RawClient.Bind("", "S1"), RawClient.Execute(""), RawClient.Parse("S2", "SELECT 2"), RawClient.Sync());
        var rest = await a.ReadUntilReadyAsync(timeout);
        Assert.That(Codes(rest), Is.EqualTo(new[] { '2', 'D', 'C', '1', 'Z' }), string.Join(", ", rest));
        Assert.That(rest.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"));

        // Both statements stay usable on either connection.
        await b.SendAsync(RawClient.Query("COMMIT"));
        await b.ReadUntilReadyAsync(timeout);
        await a.SendAsync(RawClient.Bind("", "S2"), RawClient.Execute(""), RawClient.Bind("", "S1"), RawClient.Execute(""), RawClient.Sync());
        var again = await a.ReadUntilReadyAsync(timeout);
        Assert.That(again.Where(m => m.Code == 'D').Select(m => m.FirstColumn), Is.EqualTo(new[] { "2", "42" }), string.Join(", ", again));
    }

    /// <summary>
    /// As above, but the batch's first part fails: the server skips everything up to the Sync, the statement Poold put
    /// ahead of the later part included. Poold's records must not count it as parsed there: the client's next Bind of
    /// it, on the same server connection, still works — sent after the failed batch's ReadyForQuery, or pipelined
    /// behind it (then Poold cannot know yet whether its Parse ran, and takes the statement as absent: closed, then
    /// parsed again). Pipelined, it got 26000 with the first version of the fix.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task ALaterPartOfAFailedBatch_TheStatementPutAheadOfItIsSkipped_ItsRecordIsPutRight(bool pipelined)
    {
        await using var poold = await StartAsync("default_pool_size = 2\nquery_wait_timeout = 30\n");
        await using var a = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-flushfail-a");
        await using var b = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-flushfail-b");
        var timeout = TimeSpan.FromSeconds(10);
        await PrepareWhereBThenHoldsItAsync(a, b, timeout);

        await a.SendAsync(RawClient.Parse("", "SELECT 1/0"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        Assert.That((await a.ReadUntilAsync("E", timeout))[^1].SqlState, Is.EqualTo("22012"));
        byte[][] bindS1 = [RawClient.Bind("", "S1"), RawClient.Execute(""), RawClient.Sync()];
        await a.SendAsync(pipelined ? [.. bindS1, .. bindS1] : bindS1);
        var skipped = await a.ReadUntilReadyAsync(timeout);
        Assert.That(Codes(skipped), Is.EqualTo(new[] { 'Z' }), string.Join(", ", skipped));

        // B still holds the other connection: A's next batch runs where the skipped Parse went.
        if (!pipelined)
        {
            await a.SendAsync(bindS1);
        }

        var next = await a.ReadUntilReadyAsync(timeout);
        Assert.That(Codes(next), Is.EqualTo(new[] { '2', 'D', 'C', 'Z' }), string.Join(", ", next.Select(m => m.Code + ":" + m.Text)));
        Assert.That(next[1].FirstColumn, Is.EqualTo("42"));
        await b.SendAsync(RawClient.Query("COMMIT"));
        await b.ReadUntilReadyAsync(timeout);
    }

    /// <summary>
    /// A client that deallocated its statement and binds the name again gets PostgreSQL's 26000 and runs nothing, even
    /// where another client's statement of that name and text lives on the server connection; that client's statement
    /// keeps working. Before, the Bind ran the other client's copy.
    /// </summary>
    [Test]
    public async Task BindingAStatementTheClientDeallocated_Fails26000_EvenWhereAnotherClientsCopyLives()
    {
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 30\n");
        await using var a = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-dealloc-a");
        await using var b = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txfeat-dealloc-b");
        var timeout = TimeSpan.FromSeconds(10);

        await a.SendAsync(RawClient.Parse("s1", "SELECT 7"), RawClient.Sync());
        Assert.That(Codes(await a.ReadUntilReadyAsync(timeout)), Is.EqualTo(new[] { '1', 'Z' }));
        await b.SendAsync(RawClient.Parse("s1", "SELECT 7"), RawClient.Sync());
        Assert.That(Codes(await b.ReadUntilReadyAsync(timeout)), Is.EqualTo(new[] { '1', 'Z' }));

        await a.SendAsync(RawClient.Query("DEALLOCATE s1"));
        Assert.That(Codes(await a.ReadUntilReadyAsync(timeout)), Is.EqualTo(new[] { 'C', 'Z' }));
        await a.SendAsync(RawClient.Bind("", "s1"), RawClient.Execute(""), RawClient.Sync());
        var refused = await a.ReadUntilReadyAsync(timeout);
        Assert.That(Codes(refused), Is.EqualTo(new[] { 'E', 'Z' }), string.Join(", ", refused));
        Assert.That(refused[0].SqlState, Is.EqualTo("26000"));

        await b.SendAsync(RawClient.Bind("", "s1"), RawClient.Execute(""), RawClient.Sync());
        var served = await b.ReadUntilReadyAsync(timeout);
        Assert.That(Codes(served), Is.EqualTo(new[] { '2', 'D', 'C', 'Z' }), string.Join(", ", served));
        Assert.That(served[1].FirstColumn, Is.EqualTo("7"));
    }
}
