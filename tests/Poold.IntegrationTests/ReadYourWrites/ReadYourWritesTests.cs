using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;
using Poold.Backends;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.ReadYourWrites;

/// <summary>
/// read_your_writes = session on a cluster of its own whose replica 2 applies WAL 300 ms late
/// (recovery_min_apply_delay) and whose replica 1 does not; the primary commits synchronously, as in production. One
/// session writes a row and reads it back at once, over and over, with statement-level load balancing drawing either
/// replica: with the option on no read misses its row and reads still go to the up-to-date replica; with it off, reads
/// on the late replica miss their rows (so these tests can fail).
/// </summary>
[NonParallelizable]
public class ReadYourWritesTests
{
    private const string Table = "ryw_rows";
    private const int Iterations = 1000;
    private static int _nextId;
    private PgCluster _cluster = null!;

    [OneTimeSetUp]
    public async Task StartClusterAsync()
    {
        _cluster = await PgCluster.StartAsync(replicas: 2);
        await _cluster.ScalarAsync(0, "ALTER SYSTEM SET synchronous_commit = on");
        await _cluster.ScalarAsync(0, "SELECT pg_reload_conf()");
        await _cluster.ScalarAsync(2, "ALTER SYSTEM SET recovery_min_apply_delay = '300ms'");
        await _cluster.ScalarAsync(2, "SELECT pg_reload_conf()");
        await _cluster.ScalarAsync(0, $"CREATE TABLE {Table} (id int PRIMARY KEY); GRANT ALL ON {Table} TO PUBLIC");
        await Poll.UntilAsync(async () => (string?)await _cluster.ScalarAsync(2, "SHOW recovery_min_apply_delay") == "300ms"
                                           && (string?)await _cluster.ScalarAsync(0, "SHOW synchronous_commit") == "on",
            TimeSpan.FromSeconds(30), "replica 2 to apply WAL 300 ms late and the primary to commit synchronously");
        await _cluster.WaitForReplayAsync();
    }

    [OneTimeTearDown]
    public async Task StopClusterAsync() => await _cluster.DisposeAsync();

    private Task<PooldInstance> StartAsync(string readYourWrites, double[]? weights = null, string extra = "")
    {
        weights ??= [0, 1, 1];
        var lines = new StringBuilder();
        for (var i = 0; i < 3; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {_cluster.Nodes[i].Port}\nbackend_weight{i} = {weights[i]}\n");
        }

        return PooldInstance.StartAsync(lines + $"""
            statement_level_load_balance = on
            log_per_node_statement = on
            health_check_period = 0
            sr_check_period = 0
            sr_check_user = 'poold_admin'
            sr_check_password = 'poold_admin_pw!'
            sr_check_database = 'poold_test'
            read_your_writes = {readYourWrites}

            """ + extra, ssl: false);
    }

    private static async Task<NpgsqlConnection> OpenAsync(PooldInstance poold)
    {
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.Pooling = false;
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    /// <summary>Where reads ran (by node index) and how many of them missed the row written just before.</summary>
    private sealed class Tally(PgCluster cluster)
    {
        public int Stale { get; set; }

        public int[] ByNode { get; } = new int[3];

        public void Read(int port, bool found)
        {
            ByNode[cluster.Nodes.Single(n => n.Port == port).Index]++;
            if (!found)
            {
                Stale++;
            }
        }

        public override string ToString() => $"stale {Stale}, reads by node [{string.Join(", ", ByNode)}]";
    }

    /// <summary>How many statements went where, and why (the per-statement log lines, WAL positions left out).</summary>
    private static void PrintRoutes(PooldInstance poold)
    {
        const string Marker = "statement to node";
        foreach (var g in poold.Log.Split('\n').Where(l => l.Contains(Marker, StringComparison.Ordinal))
                     .Select(l => Regex.Replace(l[l.IndexOf(Marker, StringComparison.Ordinal)..], "[0-9A-F]+/[0-9A-F]+", "X/X"))
                     .GroupBy(l => l).OrderByDescending(g => g.Count()).Take(12))
        {
            TestContext.Out.WriteLine($"{g.Count(),5} {g.Key}");
        }
    }

    /// <summary>
    /// How many of the reads must find the up-to-date replica: it replays a commit in about a millisecond, but on a loaded
    /// machine a read can come before that, and with read_your_writes_wait = 0 it then goes to the primary (seen: 36 % to
    /// 95 % of the reads on replica 1, depending on the load). Without the option's standby choice it would be 0 or all.
    /// </summary>
    private const int UpToDateShare = Iterations / 10;

    private const string ReadBack = $"SELECT inet_server_port(), EXISTS (SELECT 1 FROM {Table} WHERE id = @id)";

    /// <summary>Npgsql (the extended protocol): an autocommit INSERT, or one inside BEGIN … COMMIT, then the read at once.</summary>
    private async Task<Tally> WriteThenReadAsync(NpgsqlConnection connection, int iterations, bool explicitTransactions = false, int stopAfterStale = int.MaxValue)
    {
        var tally = new Tally(_cluster);
        for (var i = 0; i < iterations && tally.Stale < stopAfterStale; i++)
        {
            var id = Interlocked.Increment(ref _nextId);
            if (explicitTransactions)
            {
                await using var tx = await connection.BeginTransactionAsync();
                await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES (@id)", connection, tx) { Parameters = { new("id", id) } };
                await insert.ExecuteNonQueryAsync();
                await tx.CommitAsync();
            }
            else
            {
                await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES (@id)", connection) { Parameters = { new("id", id) } };
                await insert.ExecuteNonQueryAsync();
            }

            await using var read = new NpgsqlCommand(ReadBack, connection) { Parameters = { new("id", id) } };
            await using var reader = await read.ExecuteReaderAsync();
            await reader.ReadAsync();
            tally.Read(reader.GetInt32(0), reader.GetBoolean(1));
        }

        return tally;
    }

    [Test]
    public async Task OptionOn_ExtendedProtocol_SessionMode_NoStaleRead_AndReadsStillGoToTheUpToDateStandby()
    {
        await using var poold = await StartAsync("session");
        await using var connection = await OpenAsync(poold);
        var watch = Stopwatch.StartNew();
        var tally = await WriteThenReadAsync(connection, Iterations);
        TestContext.Out.WriteLine($"{Iterations} write-then-read iterations in {watch.Elapsed.TotalSeconds:0.0} s: {tally}");

        Assert.That(tally.Stale, Is.Zero, tally.ToString());
        PrintRoutes(poold);
        Assert.That(tally.ByNode[1], Is.GreaterThan(UpToDateShare), "reads keep going to the standby that has replayed the write: " + tally);
        Assert.That(poold.Log, Does.Contain("(standby behind session LSN): standby behind session LSN: node 2 has replayed"),
            "the late replica was drawn and passed over, with the rule in the per-statement log line");
    }

    [Test]
    public async Task OptionOff_ReadsOnTheLateStandby_MissTheirOwnWrites()
    {
        await using var poold = await StartAsync("off");
        await using var connection = await OpenAsync(poold);
        var tally = await WriteThenReadAsync(connection, Iterations, stopAfterStale: 20);
        TestContext.Out.WriteLine(tally.ToString());

        Assert.That(tally.Stale, Is.GreaterThan(0), "without the option the late replica serves reads that miss the row just written: " + tally);
    }

    [Test]
    public async Task OptionOn_TransactionPooling_ExplicitTransactions_NoStaleRead()
    {
        await using var poold = await StartAsync("session", extra: "pool_mode = transaction\ndefault_pool_size = 4\n");
        await using var connection = await OpenAsync(poold);
        var tally = await WriteThenReadAsync(connection, Iterations, explicitTransactions: true);
        TestContext.Out.WriteLine(tally.ToString());
        PrintRoutes(poold);

        Assert.That(tally.Stale, Is.Zero, tally.ToString());
        Assert.That(tally.ByNode[1], Is.GreaterThan(UpToDateShare), tally.ToString());
    }

    [Test]
    public async Task OptionOn_SimpleProtocol_NoStaleRead()
    {
        await using var poold = await StartAsync("session");
        await using var client = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "ryw-simple");
        var tally = new Tally(_cluster);
        for (var i = 0; i < Iterations / 2; i++)
        {
            var id = Interlocked.Increment(ref _nextId);
            await client.SendAsync(RawClient.Query($"INSERT INTO {Table} VALUES ({id})"));
            Assert.That((await client.ReadUntilReadyAsync()).Any(m => m.Code == 'E'), Is.False);
            await client.SendAsync(RawClient.Query(ReadBack.Replace("@id", id.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)));
            var row = (await client.ReadUntilReadyAsync()).Single(m => m.Code == 'D');
            var columns = DataRow(row.Body);
            tally.Read(int.Parse(columns[0], CultureInfo.InvariantCulture), columns[1] == "t");
        }

        TestContext.Out.WriteLine(tally.ToString());
        Assert.That(tally.Stale, Is.Zero, tally.ToString());
        // A raw client reads the instant its write is acknowledged, often before replica 1 has replayed it (the read then goes to
        // the primary: read_your_writes_wait is 0); some reads still find replica 1 caught up.
        Assert.That(tally.ByNode[1], Is.GreaterThan(Iterations / 40), tally.ToString());
    }

    [Test]
    public async Task OptionOn_ASessionThatNeverWrites_KeepsBalancing_AndIsNeverSentToThePrimary()
    {
        await using var poold = await StartAsync("session");
        await using var writer = await OpenAsync(poold);
        await using var reader = await OpenAsync(poold);
        var id = Interlocked.Increment(ref _nextId);
        await using (var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ({id})", writer))
        {
            await insert.ExecuteNonQueryAsync();
        }

        // Another session's writes go on meanwhile: they move the primary's position, never the reader's reads.
        using var stop = new CancellationTokenSource();
        var writes = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ({Interlocked.Increment(ref _nextId)})", writer);
                await insert.ExecuteNonQueryAsync();
            }
        });

        var byNode = new int[3];
        for (var i = 0; i < 300; i++)
        {
            await using var read = new NpgsqlCommand("SELECT inet_server_port()", reader);
            var port = (int)(await read.ExecuteScalarAsync())!;
            byNode[_cluster.Nodes.Single(n => n.Port == port).Index]++;
        }

        await stop.CancelAsync();
        await writes;
        Assert.That(byNode[0], Is.Zero, $"reads by node [{string.Join(", ", byNode)}]");
        Assert.That(byNode[2], Is.GreaterThan(0), $"the late replica still gets this session's reads: [{string.Join(", ", byNode)}]");
    }

    [Test]
    public async Task OptionOn_WithAWait_TheOnlyStandbyIsWaitedFor_AndTheWaitIsBounded()
    {
        // Only the late replica takes reads: with a wait much longer than its delay each read waits for it. (In two CI runs
        // one read went to the primary after the whole wait: its write's commit had ended at a WAL page boundary, where
        // the replica stopped, short of the insert position past the next page's header; see the next test.)
        await using (var poold = await StartAsync("session", weights: [0, 0, 1], extra: "read_your_writes_wait = 5000\n"))
        {
            await using var connection = await OpenAsync(poold);
            var watch = Stopwatch.StartNew();
            var tally = await WriteThenReadAsync(connection, 10);
            TestContext.Out.WriteLine($"wait 5000 ms: {tally} in {watch.ElapsedMilliseconds} ms");
            Assert.That(tally.Stale, Is.Zero, tally.ToString());
            Assert.That(tally.ByNode[2], Is.EqualTo(10), "every read waited for the late replica: " + tally);
            Assert.That(watch.ElapsedMilliseconds, Is.GreaterThan(10 * 250), "each read waited about the replica's 300 ms delay");
            Assert.That(poold.Log, Does.Contain("(waiting for replay): waiting for replay: node 2 replayed"));
        }

        // A wait shorter than the delay: the read goes to the primary once the wait is over, never later.
        await using (var poold = await StartAsync("session", weights: [0, 0, 1], extra: "read_your_writes_wait = 50\n"))
        {
            await using var connection = await OpenAsync(poold);
            var longest = 0L;
            var tally = new Tally(_cluster);
            for (var i = 0; i < 10; i++)
            {
                var id = Interlocked.Increment(ref _nextId);
                await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ({id})", connection);
                await insert.ExecuteNonQueryAsync();
                var watch = Stopwatch.StartNew();
                await using var read = new NpgsqlCommand(ReadBack, connection) { Parameters = { new("id", id) } };
                await using var reader = await read.ExecuteReaderAsync();
                await reader.ReadAsync();
                longest = Math.Max(longest, watch.ElapsedMilliseconds);
                tally.Read(reader.GetInt32(0), reader.GetBoolean(1));
            }

            TestContext.Out.WriteLine($"wait 50 ms: {tally}, longest read {longest} ms");
            Assert.That(tally.Stale, Is.Zero, tally.ToString());
            Assert.That(tally.ByNode[0], Is.EqualTo(10), "the late replica never replays within 50 ms: the primary: " + tally);
            Assert.That(longest, Is.LessThan(250), "no read waited for the 300 ms delay");
            Assert.That(poold.Log, Does.Contain("no standby has: the primary (after waiting"));
        }
    }

    [Test]
    public async Task AWriteWhoseCommitEndsAtAWalPageBoundary_IsSeenReplayed_TheReadGoesToTheStandby()
    {
        // A quiet primary: the session's last write is a commit that ends exactly at a WAL page boundary (one DO block
        // commits row after row until the insert position lies right past the next page's header, and nothing follows).
        // The up-to-date replica replays that commit and stops at the boundary: the read must find it there within the
        // wait, not wait out the 3 s for a position no record will ever reach and go to the primary.
        await using var poold = await StartAsync("session", weights: [0, 1, 0], extra: "read_your_writes_wait = 3000\n");
        await using var connection = await OpenAsync(poold);
        var first = Interlocked.Add(ref _nextId, 100_000) - 100_000 + 1;
        await using (var write = new NpgsqlCommand($"""
            DO $$
            BEGIN
              FOR i IN {first}..{first + 99_999} LOOP
                INSERT INTO {Table} VALUES (i);
                COMMIT;
                EXIT WHEN (pg_current_wal_insert_lsn() - '0/0') % current_setting('wal_block_size')::int = 24;
              END LOOP;
            END $$
            """, connection))
        {
            await write.ExecuteNonQueryAsync();
        }

        var insert = (string)(await _cluster.ScalarAsync(0, "SELECT pg_current_wal_insert_lsn()::text"))!;
        Assert.That(NodeMonitor.ParseLsn(insert) % 8192, Is.EqualTo(24), $"the write stopped right past a page header: {insert}");

        await using var read = new NpgsqlCommand(ReadBack, connection) { Parameters = { new("id", first) } };
        await using var reader = await read.ExecuteReaderAsync();
        Assert.That(await reader.ReadAsync(), Is.True);
        var node = _cluster.Nodes.Single(n => n.Port == reader.GetInt32(0)).Index;
        var replayed = (string?)await _cluster.ScalarAsync(1, "SELECT pg_last_wal_replay_lsn()::text");
        Assert.That(node, Is.EqualTo(1), $"the read waited for replica 1, which replayed up to {replayed} (insert position {insert}): {poold.Log}");
        Assert.That(reader.GetBoolean(1), Is.True, "replica 1 has the row");
    }

    [Test]
    public async Task OptionOn_TheSessionsPositionOutlivesItsServerConnections()
    {
        // Session mode: every 25 iterations the session's server connection to replica 1 (the up-to-date one, where its
        // reads after writes go) is closed by the server; Poold opens a new one (the node stays attached), and the position
        // the session wrote up to still rules its reads: a read whose standby turns out to be gone goes to the primary,
        // never to a node drawn again (replica 2, weighted 9 to 1, would be drawn and is late).
        await using var poold = await StartAsync("session", weights: [0, 1, 9], extra: "failover_on_backend_error = off\n");
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.Pooling = false;
        builder.ApplicationName = "ryw-reconnect";
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        var tally = new Tally(_cluster);
        var terminated = 0L;
        for (var round = 0; round < 8; round++)
        {
            var part = await WriteThenReadAsync(connection, 25);
            tally.Stale += part.Stale;
            for (var n = 0; n < 3; n++)
            {
                tally.ByNode[n] += part.ByNode[n];
            }

            terminated += (long)(await _cluster.ScalarAsync(1,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'ryw-reconnect'"))!;

            // Gone before the session's next read, so the read never races the server's FATAL on that connection.
            await Poll.UntilAsync(async () => (long)(await _cluster.ScalarAsync(1,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ryw-reconnect'"))! == 0,
                TimeSpan.FromSeconds(10), "the session's connection to replica 1 to end");
        }

        TestContext.Out.WriteLine($"{tally}, {terminated} server connections closed");
        PrintRoutes(poold);
        Assert.That(terminated, Is.GreaterThanOrEqualTo(2), "the session's connection to replica 1 was closed under it, round after round");
        Assert.That(tally.ByNode[1], Is.GreaterThan(0), "reads went back to a replica after each reconnect: " + tally);
        Assert.That(tally.Stale, Is.Zero, tally.ToString());
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task OptionOn_AfterCopyFromStdin_TheReadSeesTheCopiedRow(bool extended)
    {
        // COPY leaves the connection in copy mode, so its position is asked at the next read (the shared poll of the
        // primary). Only the late replica takes reads: without the option every read would miss its row.
        await using var poold = await StartAsync("session", weights: [0, 0, 1]);
        await using var client = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "ryw-copy");
        var tally = new Tally(_cluster);
        for (var i = 0; i < 10; i++)
        {
            var id = Interlocked.Increment(ref _nextId);
            var text = id.ToString(CultureInfo.InvariantCulture);
            if (extended)
            {
                await client.SendAsync(RawClient.Parse("", $"COPY {Table} (id) FROM STDIN"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
                await client.ReadUntilAsync("G");
                await client.SendAsync(RawClient.CopyData(text + "\n"), RawClient.CopyDone(), RawClient.Sync());
            }
            else
            {
                await client.SendAsync(RawClient.Query($"COPY {Table} (id) FROM STDIN"));
                await client.ReadUntilAsync("G");
                await client.SendAsync(RawClient.CopyData(text + "\n"), RawClient.CopyDone());
            }

            Assert.That((await client.ReadUntilReadyAsync()).Any(m => m.Code == 'E'), Is.False);
            await client.SendAsync(RawClient.Query(ReadBack.Replace("@id", text, StringComparison.Ordinal)));
            var columns = DataRow((await client.ReadUntilReadyAsync()).Single(m => m.Code == 'D').Body);
            tally.Read(int.Parse(columns[0], CultureInfo.InvariantCulture), columns[1] == "t");
        }

        TestContext.Out.WriteLine(tally.ToString());
        Assert.That(tally.Stale, Is.Zero, tally.ToString());
        Assert.That(poold.Log, Does.Contain("(standby behind session LSN)"));
    }

    [Test]
    public async Task ExplainRoute_NamesTheRule_OnceTheSessionHasWritten()
    {
        await using var poold = await StartAsync("session", weights: [0, 0, 1]);
        await using var connection = await OpenAsync(poold);
        Assert.That(await ExplainAsync(connection), Is.EqualTo((2, "weight draw")), "no write yet: the load-balance node");

        await using (var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ({Interlocked.Increment(ref _nextId)})", connection))
        {
            await insert.ExecuteNonQueryAsync();
        }

        Assert.That(await ExplainAsync(connection), Is.EqualTo((0, "standby behind session LSN")),
            "the only standby replays 300 ms late: the primary");
        await Poll.UntilAsync(async () => await ExplainAsync(connection) == (2, "weight draw"), TimeSpan.FromSeconds(10),
            "the late replica to replay the write (the poll sees it), and reads to go back to it");
    }

    private static async Task<(int Node, string Rule)> ExplainAsync(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand("PGPOOL EXPLAIN ROUTE SELECT 1", connection);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (int.Parse(reader.GetString(0), CultureInfo.InvariantCulture), reader.GetString(1));
    }

    private static List<string> DataRow(byte[] body)
    {
        var values = new List<string>();
        var count = (body[0] << 8) | body[1];
        var at = 2;
        for (var i = 0; i < count; i++)
        {
            var length = (body[at] << 24) | (body[at + 1] << 16) | (body[at + 2] << 8) | body[at + 3];
            at += 4;
            values.Add(Encoding.UTF8.GetString(body, at, length));
            at += length;
        }

        return values;
    }
}
