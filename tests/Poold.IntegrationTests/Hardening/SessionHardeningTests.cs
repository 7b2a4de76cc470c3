using System.Globalization;
using System.Text;
using Npgsql;
using Poold.Backends;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Hardening;

/// <summary>
/// Regression tests for defects a review found in the session relay: dead cached connections, a stream drained from
/// the middle of a frame, COPY in the extended protocol, Flush-split pipelines, a departing client taken for a failing
/// standby, sessions left on a demoted primary, transaction state guessed from SQL text, oversized messages. Each
/// failed before its fix. Poold runs in front of the shared cluster and changes only its own view of it.
/// </summary>
public class SessionHardeningTests
{
    private const string Table = "hardening_rows";

    [OneTimeSetUp]
    public async Task CreateTable()
    {
        await ClusterFixture.Cluster.ScalarAsync(0, $"CREATE TABLE IF NOT EXISTS {Table} (id int, note text); GRANT ALL ON {Table} TO PUBLIC");
        await ClusterFixture.Cluster.ScalarAsync(0, """
            CREATE OR REPLACE PROCEDURE hardening_proc(n int) LANGUAGE sql AS 'SELECT 1';
            GRANT EXECUTE ON PROCEDURE hardening_proc(int) TO PUBLIC
            """);
        await ClusterFixture.Cluster.WaitForReplayAsync();
    }

    /// <summary>Backend lines with the given weights (primary first).</summary>
    private static string Backends(params int[] weights)
    {
        var lines = new StringBuilder();
        var nodes = ClusterFixture.Cluster.Nodes;
        for (var i = 0; i < weights.Length; i++)
        {
            lines.Append(CultureInfo.InvariantCulture, $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {nodes[i].Port}\nbackend_weight{i} = {weights[i]}\n");
        }

        return lines.ToString();
    }

    /// <summary>A read that fails (22012) on a standby only: on the primary it answers 1.</summary>
    private static string FailsOnAStandby() =>
        $"SELECT 1 / (current_setting('port')::int = {ClusterFixture.Cluster.Nodes[0].Port})::int";

    /// <summary>BEGIN and a write on the primary (row <paramref name="id"/>): the transaction is open.</summary>
    private static async Task BeginAndWriteAsync(RawClient raw, int id, string note, TimeSpan timeout)
    {
        await raw.SendAsync(RawClient.Query("BEGIN"), RawClient.Query($"INSERT INTO {Table} VALUES ({id}, '{note}')"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Last().Text, Is.EqualTo("T"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Last().Text, Is.EqualTo("T"));
    }

    /// <summary>BEGIN, a write on the primary (row <paramref name="id"/>), then a read that fails on a standby.</summary>
    private static async Task WriteThenFailOnAStandbyAsync(RawClient raw, int id, TimeSpan timeout)
    {
        await BeginAndWriteAsync(raw, id, "rolled back", timeout);
        await raw.SendAsync(RawClient.Query(FailsOnAStandby()));
        var failed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(failed.Where(m => m.Code != 'T').Select(m => m.Code == 'E' ? m.SqlState : m.Text), Is.EqualTo(new[] { "22012", "E" }),
            "the read fails on a standby only");
    }

    /// <summary>Reads balanced to the standbys even after a write in a transaction, so one transaction spans nodes.</summary>
    private static Task<PooldInstance> StartBalancingAfterWritesAsync(string extra = "") =>
        StartAsync(Backends(0, 1, 1), "disable_load_balance_on_write = off\n" + extra);

    private static Task<PooldInstance> StartAsync(string backends, string extra = "") =>
        PooldInstance.StartAsync(backends + "health_check_period = 0\nsr_check_period = 0\n" + extra, ssl: false);

    private static NpgsqlConnection Connection(PooldInstance poold, string applicationName)
    {
        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.ApplicationName = applicationName;
        return new NpgsqlConnection(builder.ConnectionString);
    }

    private static async Task<long> CountAsync(int node, string applicationName) =>
        Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(node,
            $"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{applicationName}'"), CultureInfo.InvariantCulture);

    private static async Task TerminateAsync(string applicationName)
    {
        for (var node = 0; node < ClusterFixture.Cluster.Nodes.Count; node++)
        {
            await ClusterFixture.Cluster.ScalarAsync(node,
                $"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{applicationName}'");
            var n = node;
            await Poll.UntilAsync(async () => await CountAsync(n, applicationName) == 0, TimeSpan.FromSeconds(10),
                $"the terminated backends on node {n} to be gone");
        }
    }

    [Test]
    public async Task CachedConnections_TerminatedWhileIdle_NeverReachANewSession()
    {
        await using var poold = await StartAsync(Backends(1, 1, 1));
        const string app = "hardening-dead-cache";

        // Fill the cache with connections to every node: sessions that read (balanced) and write (primary).
        for (var i = 0; i < 6; i++)
        {
            await using var c = Connection(poold, app);
            await c.OpenAsync();
            await new NpgsqlCommand("SELECT 1", c).ExecuteScalarAsync();
        }

        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.IdleCount >= 2), TimeSpan.FromSeconds(10), "connections to be cached");

        // Every cached connection now holds a FATAL 57P01 and an EOF, as after a node restart.
        await TerminateAsync(app);

        for (var i = 0; i < 6; i++)
        {
            await using var c = Connection(poold, app);
            await c.OpenAsync();
            Assert.That(await new NpgsqlCommand($"SELECT {i}", c).ExecuteScalarAsync(), Is.EqualTo(i), "a read on the balance node");
            Assert.That(await new NpgsqlCommand($"SELECT {i} FROM {Table} LIMIT 0 FOR UPDATE", c).ExecuteScalarAsync(), Is.Null,
                "a statement on the primary");
        }
    }

    [Test]
    public async Task ServerCheckQuery_FindsAConnectionThatDiedSilently()
    {
        // server_check_delay = 0: every reuse is checked with a round trip; the check must keep working connections.
        await using var poold = await StartAsync(Backends(1), "server_check_delay = 0\n");
        const string app = "hardening-check";
        int firstPid;
        await using (var c = Connection(poold, app))
        {
            await c.OpenAsync();
            firstPid = Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
        }

        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.IdleCount == 1), TimeSpan.FromSeconds(10), "the connection to be cached");
        await using (var c = Connection(poold, app))
        {
            await c.OpenAsync();
            var pid = Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
            Assert.That(pid, Is.EqualTo(firstPid), "a healthy cached connection passes the check and is reused");
        }
    }

    [Test]
    public async Task ServerCheckQuery_ChangedByAReload_IsTheOneTheNextCheckRuns()
    {
        await using var poold = await StartAsync(Backends(1), "server_check_delay = 0\nserver_check_query = 'select 1'\n");
        const string app = "hardening-check-reload";

        async Task<int> BackendPidAsync()
        {
            await using var c = Connection(poold, app);
            await c.OpenAsync();
            var pid = Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
            await c.CloseAsync();
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.IdleCount == 1), TimeSpan.FromSeconds(10), "the connection to be cached");
            return pid;
        }

        var first = await BackendPidAsync();
        Assert.That(await BackendPidAsync(), Is.EqualTo(first), "the check passes: the cached connection is reused");

        // A check query that fails marks every cached connection dead: the next client gets a new one.
        var conf = Path.Combine(poold.Directory, "poold.conf");
        await File.WriteAllTextAsync(conf, (await File.ReadAllTextAsync(conf))
            .Replace("server_check_query = 'select 1'", "server_check_query = 'SELECT poold_no_such_function()'", StringComparison.Ordinal));
        poold.Host.Reload();
        await poold.WaitForLogAsync("configuration reloaded");
        Assert.That(await BackendPidAsync(), Is.Not.EqualTo(first), "the reloaded check query ran, failed, and the connection was replaced");
    }

    [Test]
    public async Task NodeDetached_PurgesItsCachedConnections()
    {
        await using var poold = await StartAsync(Backends(1, 1, 1));
        const string app = "hardening-purge";
        for (var i = 0; i < 6; i++)
        {
            await using var c = Connection(poold, app);
            await c.OpenAsync();
            await new NpgsqlCommand("SELECT 1", c).ExecuteScalarAsync();
        }

        await Poll.UntilAsync(async () => await CountAsync(1, app) + await CountAsync(2, app) > 0, TimeSpan.FromSeconds(10),
            "a cached connection to a standby");
        var standby = await CountAsync(1, app) > 0 ? 1 : 2;
        Assert.That(poold.Host.DetachNode(standby), Is.Null);
        await Poll.UntilAsync(async () => await CountAsync(standby, app) == 0, TimeSpan.FromSeconds(10),
            $"the cached connections to detached node {standby} to be closed");
    }

    [Test]
    public async Task ClientLeavingMidFrame_TheConnectionIsNeverPooledOutOfStep()
    {
        await using var poold = await StartAsync(Backends(1), "load_balance_mode = off\n");
        const string app = "hardening-midframe";

        // Rows whose bytes look like ReadyForQuery frames ('Z', length 5, 'I'), 1.2 MB each, in binary. Where the relay
        // stops inside a row is up to the sockets, so a drain that parses from there lands on a fake frame in one stop
        // out of six (the pattern's period): twelve rounds make a miss unlikely (one run in nine).
        var sql = "SELECT decode(repeat('5a0000000549', 200000), 'hex') FROM generate_series(1, 20)";
        for (var round = 0; round < 12; round++)
        {
            var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, app);
            await raw.SendAsync(RawClient.Parse("", sql), RawClient.Bind("", "", binaryResults: true), RawClient.Execute(""), RawClient.Sync());
            await raw.ReadBytesAsync(3_000_000);

            // The client says goodbye (EOF) and stops reading: Poold stops relaying inside a 1.2 MB frame.
            raw.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(20), "the session to end");
            await raw.DisposeAsync();

            await using var c = Connection(poold, app);
            await c.OpenAsync();
            for (var i = 0; i < 3; i++)
            {
                // A connection pooled out of step answers with someone else's bytes, or never: fail fast either way.
                await using var select = new NpgsqlCommand($"SELECT {round * 10 + i}", c) { CommandTimeout = 10 };
                Assert.That(await select.ExecuteScalarAsync(), Is.EqualTo(round * 10 + i), "the next session's statements get their own answers");
            }
        }
    }

    [Test]
    public async Task CopyFromStdin_InTheExtendedProtocol_WithLibpqsSecondSync_KeepsRepliesInStep()
    {
        await using var poold = await StartAsync(Backends(1, 1, 1));
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-copy");
        await raw.SendAsync(RawClient.Query("CREATE TEMP TABLE copied (x int)"));
        Assert.That((await raw.ReadUntilReadyAsync()).Select(m => m.Code), Does.Not.Contain('E'));

        // libpq's PQexecParams("COPY ... FROM STDIN") then PQputCopyEnd: a Sync after the Execute (ignored by the server
        // during COPY) and another after CopyDone.
        await raw.SendAsync(RawClient.Parse("", "COPY copied FROM STDIN"), RawClient.Bind("", ""), RawClient.DescribePortal(""),
            RawClient.Execute(""), RawClient.Sync());
        await raw.ReadUntilAsync("G");
        await raw.SendAsync(RawClient.CopyData("1\n"), RawClient.CopyData("2\n"), RawClient.CopyDone(), RawClient.Sync());
        var copy = await raw.ReadUntilReadyAsync();
        Assert.That(copy.Where(m => m.Code == 'C').Select(m => m.Text), Is.EqualTo(new[] { "COPY 2|" }));

        await raw.SendAsync(RawClient.Query("SELECT count(*) FROM copied"));
        var count = await raw.ReadUntilReadyAsync();
        Assert.That(count.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("2"));

        for (var i = 0; i < 4; i++)
        {
            // Reads balanced over the standbys, after the COPY: each gets its own answer, none hangs.
            await raw.SendAsync(RawClient.Query($"SELECT {i + 40}"));
            var read = await raw.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
            Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo((i + 40).ToString(CultureInfo.InvariantCulture)));
        }

        // The client has the last ReadyForQuery a few instructions before the reply pump marks the batch answered: the
        // status is polled, and a batch left outstanding keeps it from ever reading Idle.
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Sessions.Single().StatusText == "Idle"), TimeSpan.FromSeconds(5),
            "the session to have nothing outstanding");
    }

    [Test]
    public async Task Pipeline_ReadFlushThenWrite_TheWriteRunsOnThePrimary()
    {
        // Reads go to the standbys only (weight 0 on the primary).
        await using var poold = await StartAsync(Backends(0, 1, 1));
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush");
        var id = Random.Shared.Next(1_000_000, 2_000_000);
        await raw.SendAsync(RawClient.Parse("", "SELECT 7"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        var first = await raw.ReadUntilAsync("C");
        Assert.That(first.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("7"));

        await raw.SendAsync(RawClient.Parse("", $"INSERT INTO {Table} VALUES ({id}, 'flush')"), RawClient.Bind("", ""), RawClient.Execute(""),
            RawClient.Sync());
        var rest = await raw.ReadUntilReadyAsync();
        Assert.That(rest.Where(m => m.Code == 'E').Select(m => m.Text), Is.Empty, "no 25006 from a standby");
        Assert.That(rest.Where(m => m.Code == 'C').Select(m => m.Text), Is.EqualTo(new[] { "INSERT 0 1|" }));
        Assert.That(rest.Count(m => m.Code == 'Z'), Is.EqualTo(1), "one ReadyForQuery for the one Sync");
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(1L));

        // A simple Query after an unsynced batch: answered, not hung.
        await raw.SendAsync(RawClient.Parse("", "SELECT 8"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        await raw.ReadUntilAsync("C");
        await raw.SendAsync(RawClient.Query("SELECT 9"));
        var query = await raw.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(query.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("9"));
        Assert.That(query.Count(m => m.Code == 'Z'), Is.EqualTo(1));
    }

    [Test]
    public async Task Pipeline_FailedReadBeforeTheFlush_TheWriteAfterItIsSkipped()
    {
        await using var poold = await StartAsync(Backends(0, 1, 1));
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush-error");
        var id = Random.Shared.Next(2_000_000, 3_000_000);
        await raw.SendAsync(RawClient.Parse("", "SELECT 1/0"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        var first = await raw.ReadUntilAsync("E");
        Assert.That(first.Last().SqlState, Is.EqualTo("22012"));
        await raw.SendAsync(RawClient.Parse("", $"INSERT INTO {Table} VALUES ({id}, 'skipped')"), RawClient.Bind("", ""), RawClient.Execute(""),
            RawClient.Sync());
        var rest = await raw.ReadUntilReadyAsync();
        Assert.That(rest.Select(m => m.Code), Is.EqualTo(new[] { 'Z' }), "skipped up to the Sync, as the server does after an error");
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
    }

    /// <summary>
    /// The session-mode twin of the transaction-mode test of the same name: a statement prepared on the primary only
    /// (inside a transaction, after a write) is bound by the later part of a batch that runs on a standby, where Poold
    /// parses it first; the batch's first part fails, so the server skips that Parse. The standby's record must not
    /// count the statement as there: the client's next Bind of it, sent after the failed batch's ReadyForQuery or
    /// pipelined behind it, runs on the standby and answers.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task ALaterPartOfAFailedBatch_OnAStandby_TheStatementPutAheadOfItIsSkipped_ItsRecordIsPutRight(bool pipelined)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1));
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush-skip");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(3_000_000, 4_000_000);
        await raw.SendAsync(RawClient.Query("BEGIN"), RawClient.Query($"INSERT INTO {Table} VALUES ({id}, 'prepared on the primary')"),
            RawClient.Parse("S1", "SELECT current_setting('port')"), RawClient.Sync(),
            RawClient.Query("COMMIT"));
        for (var i = 0; i < 4; i++)
        {
            var reply = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(reply.Where(m => m.Code == 'E'), Is.Empty, string.Join(", ", reply));
        }

        await raw.SendAsync(RawClient.Parse("", "SELECT 1/0"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        Assert.That((await raw.ReadUntilAsync("E", timeout))[^1].SqlState, Is.EqualTo("22012"));
        byte[][] bindS1 = [RawClient.Bind("", "S1"), RawClient.Execute(""), RawClient.Sync()];
        await raw.SendAsync(pipelined ? [.. bindS1, .. bindS1] : bindS1);
        var skipped = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(skipped.Select(m => m.Code), Is.EqualTo(new[] { 'Z' }), string.Join(", ", skipped));

        if (!pipelined)
        {
            await raw.SendAsync(bindS1);
        }

        var next = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(next.Select(m => m.Code), Is.EqualTo(new[] { '2', 'D', 'C', 'Z' }), string.Join(", ", next.Select(m => m.Code + ":" + m.Text)));
        var primaryPort = ClusterFixture.Cluster.Nodes[0].Port.ToString(CultureInfo.InvariantCulture);
        Assert.That(next[1].FirstColumn, Is.Not.EqualTo(primaryPort), "a read, balanced to a standby");
    }

    [Test]
    public async Task ClientLeavingDuringAStandbyRead_DoesNotFailTheStandby()
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), "failover_on_backend_error = on\n");
        var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-leave");
        await raw.SendAsync(RawClient.Query("SELECT repeat('x', 1000) FROM generate_series(1, 200000)"));
        await raw.ReadBytesAsync(1_000_000);

        // Data that keeps coming to a socket closed for reading is answered with a reset: Poold's next write fails.
        raw.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Receive);
        raw.Abort();
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(20), "the session to end");
        Assert.That(poold.Host.Nodes.Current.Nodes.Take(3).Select(n => n.Status), Is.All.EqualTo(NodeStatus.Up));
        Assert.That(poold.Log, Does.Not.Contain("is unavailable for this session"), "the client's departure is not the standby's failure");
    }

    [Test]
    public async Task PrimaryChanged_TheSessionEndsWith57P01_AndWritesNothingToTheOldPrimary()
    {
        await using var poold = await StartAsync(Backends(1, 1, 1));
        await using var c = Connection(poold, "hardening-promote");
        await c.OpenAsync();
        await new NpgsqlCommand("SELECT 1", c).ExecuteScalarAsync();

        // pcp_promote_node in Poold's view only: the shared cluster is untouched.
        Assert.That(poold.Host.Nodes.Promote(1), Is.Null);
        var id = Random.Shared.Next(25_000_000, 26_000_000);
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
            await new NpgsqlCommand($"INSERT INTO {Table} VALUES ({id}, 'old primary')", c).ExecuteNonQueryAsync());
        Assert.That(e!.SqlState, Is.EqualTo("57P01"), e.Message);
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
    }

    [Test]
    public async Task DetachingThePrimary_LeavesNoDownNodeAsPrimary()
    {
        await using var poold = await StartAsync(Backends(1, 1, 1));
        Assert.That(poold.Host.Nodes.Current.PrimaryNodeId, Is.EqualTo(0));
        Assert.That(poold.Host.DetachNode(0), Is.Null);
        var nodes = poold.Host.Nodes.Current;
        Assert.That(nodes.Nodes[0].Status, Is.EqualTo(NodeStatus.Down));
        Assert.That(nodes.PrimaryNodeId, Is.Not.EqualTo(0), "a detached node is no longer the primary");
    }

    [Test]
    public async Task FailedCallAndCommitUnderOneSync_ThenRollback_PooldFollowsTheServersTransactionState()
    {
        await using var poold = await StartAsync(Backends(1), "load_balance_mode = off\n");
        await using var c = Connection(poold, "hardening-txn");
        await c.OpenAsync();
        await new NpgsqlCommand("BEGIN ISOLATION LEVEL SERIALIZABLE", c).ExecuteNonQueryAsync();
        await using (var batch = new NpgsqlBatch(c))
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("CALL hardening_proc('not a number')"));
            batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
            Assert.ThrowsAsync<PostgresException>(async () => await batch.ExecuteNonQueryAsync());
        }

        // The server skipped the COMMIT: the transaction is open and failed until the client's ROLLBACK.
        await new NpgsqlCommand("ROLLBACK", c).ExecuteNonQueryAsync();
        Assert.That(await new NpgsqlCommand("SELECT 5", c).ExecuteScalarAsync(), Is.EqualTo(5));
        Assert.That(poold.Log, Does.Not.Contain("replayed"));
    }

    /// <summary>
    /// A transaction fails on the standby it reads on; the client's next statement, a write sent the moment the error's
    /// ReadyForQuery (<c>E</c>) arrives, must go to that standby and be refused (25P02), as PostgreSQL refuses it. Poold
    /// recorded the failure only after relaying that ReadyForQuery, so the write could be routed first, to the primary,
    /// where the transaction was open and well: it ran, and a COMMIT would have kept it. A race; many rounds.
    /// </summary>
    [Test]
    public async Task AStatementRightAfterAnErrorInATransaction_OnAStandby_IsRefusedThere_NeverRunOnThePrimary()
    {
        await using var poold = await StartAsync(Backends(0, 1, 1));
        var id = Random.Shared.Next(4_000_000, 5_000_000);

        // Four sessions at once: the two cores are busy, so the reply pump is more often stopped right after its send.
        await Task.WhenAll(Enumerable.Range(0, 4).Select(client => Task.Run(async () =>
        {
            await using var c = Connection(poold, "hardening-failed-tx");
            await c.OpenAsync();
            await using var insert = new NpgsqlCommand($"INSERT INTO {Table} VALUES ({id}, 'after an error')", c);
            await using var fail = new NpgsqlCommand("SELECT 1/0", c);
            for (var round = 0; round < 500; round++)
            {
                await using var transaction = await c.BeginTransactionAsync();
                await Assert.ThatAsync(() => fail.ExecuteNonQueryAsync(), Throws.TypeOf<PostgresException>().With.Property("SqlState").EqualTo("22012"));
                await Assert.ThatAsync(() => insert.ExecuteNonQueryAsync(), Throws.TypeOf<PostgresException>().With.Property("SqlState").EqualTo("25P02"),
                    $"client {client}, round {round}: the INSERT must be refused where the transaction failed");
                await transaction.RollbackAsync();
            }
        })));

        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
    }

    /// <summary>
    /// The whole transaction pipelined in one write, without waiting for any answer: a write, a read that fails on a
    /// standby, another write, COMMIT. PostgreSQL refuses the second write (25P02) and rolls everything back. Poold routed
    /// the second write and the COMMIT before the error came back, to the primary, where they ran and committed both writes.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task APipelinedTransaction_ThatFailsOnAStandby_CommitsNothing(bool extended)
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-failed-pipeline");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(9_000_000, 10_000_000);
        string[] statements =
        [
            "BEGIN", $"INSERT INTO {Table} VALUES ({id}, 'first')",
            FailsOnAStandby(), $"INSERT INTO {Table} VALUES ({id}, 'second')", "COMMIT",
        ];
        await raw.SendAsync(extended
            ? [.. statements.SelectMany(sql => new[] { RawClient.Parse("", sql), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync() })]
            : [.. statements.Select(RawClient.Query)]);
        var replies = new List<string>();
        for (var i = 0; i < statements.Length; i++)
        {
            var reply = await raw.ReadUntilReadyAsync(timeout);
            replies.Add(string.Join(" ", reply.Where(m => m.Code is 'E' or 'C' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text.TrimEnd('|'))));
        }

        Assert.That(replies, Is.EqualTo(new[] { "BEGIN T", "INSERT 0 1 T", "22012 E", "25P02 E", "ROLLBACK I" }));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
    }

    /// <summary>
    /// A transaction writes on the primary; then one extended-protocol batch reads (on a standby) and Flushes, and its
    /// rest commits. The rest stays on the standby, where the batch is under way; the primary must commit before the
    /// client is told COMMIT. It was left open until the session's next statement, so a client that left right after
    /// its COMMIT lost the write (the connection's reset rolled it back).
    /// </summary>
    [Test]
    public async Task ACommitInTheRestOfAFlushSplitBatch_OnAStandby_CommitsThePrimaryBeforeTheAnswer()
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush-commit");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(10_000_000, 11_000_000);
        await using (raw)
        {
            await BeginAndWriteAsync(raw, id, "committed", timeout);
            await raw.SendAsync(RawClient.Parse("", "SELECT current_setting('port')"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
            var read = await raw.ReadUntilAsync("C", timeout);
            Assert.That(read.Single(m => m.Code == 'D').FirstColumn,
                Is.Not.EqualTo(ClusterFixture.Cluster.Nodes[0].Port.ToString(CultureInfo.InvariantCulture)), "the read ran on a standby");
            await raw.SendAsync(RawClient.Parse("", "COMMIT"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
            var commit = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(commit.Single(m => m.Code == 'C').Text, Is.EqualTo("COMMIT|"));
            Assert.That(commit[^1].Text, Is.EqualTo("I"));
        }

        await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hardening-flush-commit' AND state LIKE 'idle in transaction%'"),
            CultureInfo.InvariantCulture) == 0, timeout, "the primary's connection to leave the transaction");
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(1L),
            "the write the client was told is committed");
    }

    /// <summary>
    /// The same Flush-split batch, but its read fails on the standby: the server skips the rest up to the Sync, COMMIT
    /// included, and the transaction stays open and failed until the client's ROLLBACK. A COMMIT copied to the primary
    /// before the rest went out committed the write.
    /// </summary>
    [Test]
    public async Task ACommitInTheRestOfAFlushSplitBatch_AfterItsReadFailedOnAStandby_IsSkipped_NothingCommits()
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush-failed");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(11_000_000, 12_000_000);
        await BeginAndWriteAsync(raw, id, "rolled back", timeout);
        await raw.SendAsync(RawClient.Parse("", FailsOnAStandby()), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        Assert.That((await raw.ReadUntilAsync("E", timeout))[^1].SqlState, Is.EqualTo("22012"), "the read failed on a standby");
        await raw.SendAsync(RawClient.Parse("", "COMMIT"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
        var skipped = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(skipped.Select(m => m.Code + ":" + m.Text), Is.EqualTo(new[] { "Z:E" }), "skipped up to the Sync, as the server skips after an error");
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L), "not committed");
        await raw.SendAsync(RawClient.Query("ROLLBACK"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Single(m => m.Code == 'C').Text, Is.EqualTo("ROLLBACK|"));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
    }

    /// <summary>
    /// A Flush-split batch whose first part binds a portal on the standby and whose rest executes it and then commits:
    /// the portal lives only on the standby, so the rest stays there (routed on its own, it would find no portal, 34000).
    /// </summary>
    [Test]
    public async Task TheRestOfAFlushSplitBatch_ExecutingAPortalItsFirstPartBound_StaysWithThePortal()
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush-portal");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(12_000_000, 13_000_000);
        await BeginAndWriteAsync(raw, id, "written", timeout);
        await raw.SendAsync(RawClient.Parse("", "SELECT current_setting('port')"), RawClient.Bind("", ""), RawClient.Flush());
        await raw.ReadUntilAsync("2", timeout);
        await raw.SendAsync(RawClient.Execute(""), RawClient.Parse("", "COMMIT"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
        var rest = await raw.ReadUntilReadyAsync(timeout);
        var codes = string.Join(", ", rest.Select(m => m.Code + ":" + m.Text));
        Assert.That(rest.Where(m => m.Code == 'E'), Is.Empty, codes);
        Assert.That(rest.Single(m => m.Code == 'D').FirstColumn, Is.Not.EqualTo(ClusterFixture.Cluster.Nodes[0].Port.ToString(CultureInfo.InvariantCulture)),
            "the portal ran on a standby");
        Assert.That(rest[^1].Text, Is.EqualTo("I"), codes);
    }

    /// <summary>
    /// With reads balanced after a write (<c>disable_load_balance_on_write = off</c>; <c>dml_adaptive</c> alike for
    /// other tables), a transaction writes on the primary and then fails on a standby. PostgreSQL rolls the whole
    /// transaction back at COMMIT and says ROLLBACK; Poold committed the primary's part and relayed its COMMIT.
    /// </summary>
    [TestCase("COMMIT", "ROLLBACK", "session")]
    [TestCase("COMMIT AND CHAIN", "ROLLBACK", "session")]
    [TestCase("ROLLBACK", "ROLLBACK", "session")]
    [TestCase("COMMIT", "ROLLBACK", "transaction")]
    [TestCase("COMMIT AND CHAIN", "ROLLBACK", "transaction")]
    public async Task ATransactionThatFailedOnAStandby_EndsAsOne_ThePrimarysWritesAreRolledBack(string end, string tag, string poolMode)
    {
        await using var poold = await StartBalancingAfterWritesAsync($"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-failed-end");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(5_000_000, 6_000_000);
        await WriteThenFailOnAStandbyAsync(raw, id, timeout);

        await raw.SendAsync(RawClient.Query(end));
        var ended = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(ended.Single(m => m.Code == 'C').Text, Is.EqualTo(tag + "|"), string.Join(", ", ended.Select(m => m.Code + ":" + m.Text)));
        var chained = end.EndsWith("CHAIN", StringComparison.Ordinal);
        Assert.That(ended[^1].Text, Is.EqualTo(chained ? "T" : "I"));
        if (chained)
        {
            await raw.SendAsync(RawClient.Query("ROLLBACK"));
            Assert.That((await raw.ReadUntilReadyAsync(timeout))[^1].Text, Is.EqualTo("I"));
        }

        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
        await raw.SendAsync(RawClient.Query($"INSERT INTO {Table} VALUES ({id}, 'the session goes on')"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { 'C', 'Z' }));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(1L));
    }

    /// <summary>
    /// The same transaction (a write on the primary, then an error on a standby), ended otherwise: a SAVEPOINT or RELEASE
    /// is refused (25P02) as PostgreSQL refuses it, and must not bring the primary's healthy part back as the transaction's
    /// state; a multi-statement query that ends it (<c>COMMIT; SELECT 1</c>) runs, and nothing is committed.
    /// </summary>
    [TestCase("SAVEPOINT s")]
    [TestCase("RELEASE SAVEPOINT s")]
    [TestCase("COMMIT; SELECT 1")]
    public async Task ATransactionThatFailedOnAStandby_OtherEndings_CommitNothing(string statement)
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-failed-other");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(6_000_000, 7_000_000);
        await WriteThenFailOnAStandbyAsync(raw, id, timeout);

        await raw.SendAsync(RawClient.Query(statement));
        var reply = await raw.ReadUntilReadyAsync(timeout);
        var codes = string.Join(", ", reply.Select(m => m.Code + ":" + m.Text));
        if (statement.StartsWith("COMMIT", StringComparison.Ordinal))
        {
            Assert.That(reply.Where(m => m.Code == 'E'), Is.Empty, codes);
            Assert.That(reply.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("1"), codes);
            Assert.That(reply[^1].Text, Is.EqualTo("I"), codes);
        }
        else
        {
            Assert.That(reply.Select(m => m.Code == 'E' ? m.SqlState : m.Code.ToString()), Is.EqualTo(new[] { "25P02", "Z" }), codes);
            Assert.That(reply[^1].Text, Is.EqualTo("E"), codes);
            await raw.SendAsync(RawClient.Query("COMMIT"));
            var commit = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(commit.Single(m => m.Code == 'C').Text, Is.EqualTo("ROLLBACK|"), string.Join(", ", commit.Select(m => m.Code + ":" + m.Text)));
        }

        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
        await raw.SendAsync(RawClient.Query("SELECT 2"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { 'T', 'D', 'C', 'Z' }), "the session goes on");
    }

    /// <summary>
    /// A transaction writes, sets a savepoint, then fails on a standby; the client rolls back to the savepoint and commits.
    /// PostgreSQL commits the write made before the savepoint. Sent as two pipelined queries, the COMMIT was dispatched
    /// before the ROLLBACK TO's answer came back and was taken for the end of a failed transaction: the primary rolled
    /// back while the client was told COMMIT. In one multi-statement query, only the node it ran on would recover, so
    /// Poold refuses it (0A000) and the transaction stays as it was.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task RollbackToSavepoint_ThenCommit_AfterAStandbysError_CommitsWhatCameBefore(bool oneQuery)
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-rollback-to");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(7_000_000, 8_000_000);
        await raw.SendAsync(RawClient.Query("BEGIN"), RawClient.Query($"INSERT INTO {Table} VALUES ({id}, 'kept')"), RawClient.Query("SAVEPOINT s"),
            RawClient.Query(FailsOnAStandby()));
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await raw.ReadUntilReadyAsync(timeout)).Last().Text, Is.EqualTo("T"));
        }

        var failed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(failed.Last().Text, Is.EqualTo("E"), "the read failed on a standby: " + string.Join(", ", failed.Select(m => m.Code + ":" + m.Text)));

        if (oneQuery)
        {
            await raw.SendAsync(RawClient.Query("ROLLBACK TO SAVEPOINT s; COMMIT"));
            var refused = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(refused.Select(m => m.Code == 'E' ? m.SqlState : m.Text), Is.EqualTo(new[] { "0A000", "E" }));
        }

        await raw.SendAsync(RawClient.Query("ROLLBACK TO SAVEPOINT s"), RawClient.Query("COMMIT"));
        var rolledBack = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(rolledBack.Select(m => m.Code), Is.EqualTo(new[] { 'C', 'Z' }), string.Join(", ", rolledBack.Select(m => m.Code + ":" + m.Text)));
        var committed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(committed.Single(m => m.Code == 'C').Text, Is.EqualTo("COMMIT|"), string.Join(", ", committed.Select(m => m.Code + ":" + m.Text)));
        Assert.That(committed[^1].Text, Is.EqualTo("I"));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(1L));
    }

    /// <summary>One statement (a Query, or Parse/Bind/Execute/Sync), read up to its ReadyForQuery, which must say <paramref name="status"/>.</summary>
    private static async Task<List<BackendMessage>> RunStatementAsync(RawClient raw, bool extended, string sql, string status, TimeSpan timeout)
    {
        await raw.SendAsync(extended ? [RawClient.Parse("", sql), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync()] : [RawClient.Query(sql)]);
        var reply = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(reply[^1].Text, Is.EqualTo(status), $"{sql}: {Describe(reply)}");
        return reply;
    }

    private static string Describe(List<BackendMessage> reply) =>
        string.Join(", ", reply.Select(m => m.Code + ":" + (m.Code == 'E' ? m.SqlState + " " + m.Text : m.Text)));

    /// <summary>
    /// Outside a transaction, <paramref name="setting"/> is <paramref name="expected"/> for four reads (balanced: other
    /// connections, in transaction mode) and for a write, on the primary, which joins the session later (row <paramref name="id"/>).
    /// </summary>
    private static async Task ExpectSettingEverywhereAsync(RawClient raw, string setting, string expected, int id, TimeSpan timeout)
    {
        for (var i = 0; i < 4; i++)
        {
            var read = await RunStatementAsync(raw, false, $"SELECT current_setting('{setting}')", "I", timeout);
            Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo(expected), $"read {i}: {Describe(read)}");
        }

        var written = await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, current_setting('{setting}')) RETURNING note", "I", timeout);
        Assert.That(written.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo(expected), "on the primary, which joined later");
    }

    /// <summary>A read in the open transaction that runs, and on a standby.</summary>
    private static async Task ReadInTheTransactionOnAStandbyAsync(RawClient raw, bool extended, TimeSpan timeout)
    {
        var read = await RunStatementAsync(raw, extended, "SELECT current_setting('port')", "T", timeout);
        Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.Not.EqualTo(ClusterFixture.Cluster.Nodes[0].Port.ToString(CultureInfo.InvariantCulture)),
            "the read is balanced to a standby");
    }

    /// <summary>The transaction reads on, on a standby, and its COMMIT keeps row <paramref name="id"/>.</summary>
    private static async Task ReadOnAStandbyAndCommitAsync(RawClient raw, int id, TimeSpan timeout)
    {
        await ReadInTheTransactionOnAStandbyAsync(raw, false, timeout);
        await RunStatementAsync(raw, false, "COMMIT", "I", timeout);
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(1L));
    }

    /// <summary>
    /// Transaction mode: a RELEASE that the server skips, because a statement ahead of it fails (in its batch: an Execute,
    /// or a Parse sent ahead, of another name or its own; or a query pipelined before it), leaves the savepoint. Poold
    /// must not take it for released: a standby that joins later needs it for the client's ROLLBACK TO.
    /// </summary>
    [TestCase("execute")]
    [TestCase("parse")]
    [TestCase("parse of the same name")]
    [TestCase("pipelined")]
    public async Task AReleaseTheServerSkipped_LeavesTheSavepointForAStandbyThatJoinsLater(string skippedBy)
    {
        await using var poold = await StartBalancingAfterWritesAsync("pool_mode = transaction\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-release-skipped");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(13_000_000, 14_000_000);
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, 'kept')", "T", timeout);
        await RunStatementAsync(raw, false, "SAVEPOINT s", "T", timeout);
        var failing = $"INSERT INTO {Table} VALUES (1 / 0, 'fails')";
        await raw.SendAsync(skippedBy switch
        {
            "execute" =>
            [
                RawClient.Parse("", failing), RawClient.Bind("", ""), RawClient.Execute(""),
                RawClient.Parse("", "RELEASE SAVEPOINT s"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync(),
            ],
            "parse" or "parse of the same name" =>
            [
                RawClient.Parse(skippedBy == "parse" ? "missing" : "", "SELECT * FROM no_such_table_here"),
                RawClient.Parse("", "RELEASE SAVEPOINT s"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync(),
            ],
            _ => [RawClient.Query(failing), RawClient.Query("RELEASE SAVEPOINT s")],
        });
        var failed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(failed.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text),
            Is.EqualTo(new[] { skippedBy.StartsWith("parse", StringComparison.Ordinal) ? "42P01" : "22012", "E" }), Describe(failed));
        if (skippedBy == "pipelined")
        {
            var refused = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(refused.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text),
                Is.EqualTo(new[] { "25P02", "E" }), Describe(refused));
        }

        await RunStatementAsync(raw, false, "ROLLBACK TO SAVEPOINT s", "T", timeout);
        await ReadInTheTransactionOnAStandbyAsync(raw, false, timeout);
        await RunStatementAsync(raw, false, FailsOnAStandby(), "E", timeout);
        await RunStatementAsync(raw, false, "ROLLBACK TO SAVEPOINT s", "T", timeout);
        await ReadOnAStandbyAndCommitAsync(raw, id, timeout);
    }

    /// <summary>
    /// Session mode, a transaction open on a standby (a read) and the primary (a write), with a savepoint on both. A
    /// RELEASE that the primary skips (a statement ahead of it fails there: in the first part of a batch split by a
    /// Flush, or pipelined) must not reach the standby either: the client's ROLLBACK TO then failed there (3B001), the
    /// standby stayed aborted, its next read got 25P02, and the COMMIT rolled back a write PostgreSQL keeps.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public async Task AReleaseThePrimarySkipped_IsNotCopiedToTheStandby(bool flushSplit)
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-release-copy");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(15_000_000, 16_000_000);
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await ReadInTheTransactionOnAStandbyAsync(raw, false, timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, 'kept')", "T", timeout);
        await RunStatementAsync(raw, false, "SAVEPOINT s", "T", timeout);
        var failing = $"INSERT INTO {Table} VALUES (1 / 0, 'fails')";
        if (flushSplit)
        {
            await raw.SendAsync(RawClient.Parse("", failing), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
            var error = await raw.ReadUntilAsync("E", timeout);
            Assert.That(error[^1].SqlState, Is.EqualTo("22012"), Describe(error));
            await raw.SendAsync(RawClient.Parse("", "RELEASE SAVEPOINT s"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
            var rest = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(rest[^1].Text, Is.EqualTo("E"), Describe(rest));
        }
        else
        {
            await raw.SendAsync(RawClient.Query(failing), RawClient.Query("RELEASE SAVEPOINT s"));
            Assert.That((await raw.ReadUntilReadyAsync(timeout))[^1].Text, Is.EqualTo("E"));
            var refused = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(refused.Where(m => m.Code == 'E').Select(m => m.SqlState), Is.EqualTo(new[] { "25P02" }), Describe(refused));
        }

        await RunStatementAsync(raw, false, "ROLLBACK TO SAVEPOINT s", "T", timeout);
        await ReadOnAStandbyAndCommitAsync(raw, id, timeout);
    }

    /// <summary>
    /// A transaction fails on a standby; the client rolls back to a savepoint in a batch that begins with a Close, as
    /// pgjdbc sends its next batch (the statements it dropped are closed first). The ROLLBACK TO must reach the standby:
    /// otherwise it stays aborted while Poold takes the failure as over, its next read gets 25P02, and the COMMIT rolls
    /// back what PostgreSQL commits.
    /// </summary>
    [Test]
    public async Task ARollbackToAfterAClose_BringsTheFailedStandbyBack()
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-close-rollback-to");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(16_000_000, 17_000_000);
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, 'kept')", "T", timeout);
        await RunStatementAsync(raw, false, "SAVEPOINT a", "T", timeout);
        await RunStatementAsync(raw, false, FailsOnAStandby(), "E", timeout);
        await raw.SendAsync(RawClient.Message('C', [(byte)'S'], RawClient.CString("S_dropped")),
            RawClient.Parse("", "ROLLBACK TO SAVEPOINT a"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
        var rolledBack = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(rolledBack[^1].Text, Is.EqualTo("T"), Describe(rolledBack));
        await ReadOnAStandbyAndCommitAsync(raw, id, timeout);
    }

    /// <summary>
    /// A transaction open on a standby (a read) and the primary (a write sent with a Flush): the rest of that batch sets a
    /// savepoint. It went to the primary only, so the standby refused the client's later ROLLBACK TO (3B001) and stayed
    /// aborted.
    /// </summary>
    [Test]
    public async Task ASavepointInTheRestOfAFlushSplitBatch_ReachesTheStandbyInTheTransaction()
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-flush-savepoint");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(14_000_000, 15_000_000);
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await ReadInTheTransactionOnAStandbyAsync(raw, false, timeout);
        await raw.SendAsync(RawClient.Parse("", $"INSERT INTO {Table} VALUES ({id}, 'kept')"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Flush());
        var inserted = await raw.ReadUntilAsync("C", timeout);
        Assert.That(inserted[^1].Text, Is.EqualTo("INSERT 0 1|"), Describe(inserted));
        await raw.SendAsync(RawClient.Parse("", "SAVEPOINT s"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
        var savepoint = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(savepoint[^1].Text, Is.EqualTo("T"), Describe(savepoint));

        await RunStatementAsync(raw, false, FailsOnAStandby(), "E", timeout);
        await RunStatementAsync(raw, false, "ROLLBACK TO SAVEPOINT s", "T", timeout);
        await ReadOnAStandbyAndCommitAsync(raw, id, timeout);
    }

    /// <summary>
    /// A transaction begun on a standby (the primary's weight is 0) sets its isolation level, a SET LOCAL and a SET, then
    /// writes: the write (and, in a transaction that has set something, a read) moves the transaction to the primary,
    /// which joins it late. It must run with what the transaction
    /// set: the primary was given a bare BEGIN, so the write ran at READ COMMITTED and without its statement_timeout.
    /// </summary>
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    [TestCase("session", false)]
    [TestCase("session", true)]
    public async Task SettingsOfATransactionBegunOnAStandby_FollowItToThePrimary(string poolMode, bool extended)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-tx-settings");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(20_000_000, 21_000_000);

        Task<List<BackendMessage>> RunAsync(string sql, string status) => RunStatementAsync(raw, extended, sql, status, timeout);

        await RunAsync("BEGIN", "T");
        await RunAsync("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "T");
        await RunAsync("SET LOCAL statement_timeout = '7s'", "T");
        await RunAsync("SET lock_timeout = '3s'", "T");
        var written = await RunAsync($"""
            INSERT INTO {Table} VALUES ({id}, current_setting('port') || ' ' || current_setting('transaction_isolation') || ' '
                || current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')) RETURNING note
            """, "T");
        Assert.That(written.Single(m => m.Code == 'D').FirstColumn,
            Is.EqualTo($"{ClusterFixture.Cluster.Nodes[0].Port} repeatable read 7s 3s"), Describe(written));
        await RunAsync("ROLLBACK", "I");
    }

    /// <summary>
    /// A session-level SET made in a transaction (begun on a standby: the primary's weight is 0) lasts only if the
    /// transaction commits, as on the server. Poold kept a rolled-back one and gave it to every connection that joined the
    /// session later: in transaction mode each read's, in both modes the primary's, for a write.
    /// </summary>
    [TestCase("transaction", "ROLLBACK", "2MB")]
    [TestCase("transaction", "COMMIT", "6MB")]
    [TestCase("session", "ROLLBACK", "2MB")]
    [TestCase("session", "COMMIT", "6MB")]
    public async Task ASetInATransaction_LastsOnlyIfItCommits(string poolMode, string end, string expected)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-tx-set-end");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(21_000_000, 22_000_000);

        Task<List<BackendMessage>> RunAsync(string sql, string status) => RunStatementAsync(raw, false, sql, status, timeout);

        await RunAsync("SET work_mem = '2MB'", "I");
        await RunAsync("BEGIN", "T");
        await RunAsync("SET work_mem = '6MB'", "T");
        await RunAsync(end, "I");
        await ExpectSettingEverywhereAsync(raw, "work_mem", expected, id, timeout);
    }

    /// <summary>
    /// A SET made in a transaction whose COMMIT fails (a deferred constraint) or rolls back (a failure pipelined ahead of
    /// it), and a SET sent in one extended batch with the ROLLBACK that ends its transaction, do not last: the server
    /// undid them. Poold took the first two as committed when the COMMIT was sent, and recorded the third as made outside
    /// the transaction, and gave them to every connection that joined later.
    /// </summary>
    [TestCase("transaction", "deferred")]
    [TestCase("transaction", "pipelined")]
    [TestCase("transaction", "one batch")]
    [TestCase("transaction", "failed, extended COMMIT")]
    [TestCase("session", "failed, extended COMMIT")]
    [TestCase("session", "deferred")]
    [TestCase("session", "pipelined")]
    [TestCase("session", "one batch")]
    public async Task ASetWhoseTransactionDoesNotCommit_DoesNotLast(string poolMode, string how)
    {
        await ClusterFixture.Cluster.ScalarAsync(0, """
            CREATE TABLE IF NOT EXISTS hardening_deferred (id int PRIMARY KEY,
                parent int REFERENCES hardening_deferred (id) DEFERRABLE INITIALLY DEFERRED);
            GRANT ALL ON hardening_deferred TO PUBLIC
            """);
        await ClusterFixture.Cluster.WaitForReplayAsync();
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-set-no-commit");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(22_000_000, 23_000_000);

        await RunStatementAsync(raw, false, "SET work_mem = '2MB'", "I", timeout);
        switch (how)
        {
            case "deferred":
                await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
                await RunStatementAsync(raw, false, "SET work_mem = '6MB'", "T", timeout);
                await RunStatementAsync(raw, false, $"INSERT INTO hardening_deferred VALUES ({id}, {id + 1})", "T", timeout);
                var commit = await RunStatementAsync(raw, false, "COMMIT", "I", timeout);
                Assert.That(commit.Single(m => m.Code == 'E').SqlState, Is.EqualTo("23503"), Describe(commit));
                break;
            case "pipelined":
                await raw.SendAsync(RawClient.Query("BEGIN"), RawClient.Query("SET work_mem = '6MB'"), RawClient.Query("SELECT 1 / 0"),
                    RawClient.Query("COMMIT"));
                for (var i = 0; i < 3; i++)
                {
                    await raw.ReadUntilReadyAsync(timeout);
                }

                var rolledBack = await raw.ReadUntilReadyAsync(timeout);
                Assert.That(rolledBack.Single(m => m.Code == 'C').Text, Is.EqualTo("ROLLBACK|"), Describe(rolledBack));
                break;
            case "failed, extended COMMIT":
                await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
                await RunStatementAsync(raw, false, "SET work_mem = '6MB'", "T", timeout);
                await RunStatementAsync(raw, false, "SELECT 1 / 0", "E", timeout);
                var answered = await RunStatementAsync(raw, true, "COMMIT", "I", timeout);
                Assert.That(answered.Single(m => m.Code == 'C').Text, Is.EqualTo("ROLLBACK|"), Describe(answered));
                break;
            default:
                await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
                await raw.SendAsync(RawClient.Parse("", "SET work_mem = '6MB'"), RawClient.Bind("", ""), RawClient.Execute(""),
                    RawClient.Parse("", "ROLLBACK"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
                Assert.That((await raw.ReadUntilReadyAsync(timeout))[^1].Text, Is.EqualTo("I"));
                break;
        }

        await ExpectSettingEverywhereAsync(raw, "work_mem", "2MB", id, timeout);
    }

    /// <summary>
    /// Transaction mode: a SET made in a transaction begun on a standby is replayed on the primary when a write brings it
    /// in, and commits there. That server connection then carries the SET: the next client to take it (one server
    /// connection per node, the same startup parameters) must not see it. Poold returned it to the pool described by
    /// its old state text, so the next client got no reset and ran with the first client's work_mem.
    /// </summary>
    [Test]
    public async Task ASetReplayedOnANodeThatJoinedTheTransaction_NeverReachesTheNextClientOfThatConnection()
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), "pool_mode = transaction\ndefault_pool_size = 1\n");
        await using var first = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-replayed-set");
        await using var second = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-replayed-set");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(19_000_000, 20_000_000);
        await RunStatementAsync(first, false, "BEGIN", "T", timeout);
        await RunStatementAsync(first, false, "SET work_mem = '77MB'", "T", timeout);
        var written = await RunStatementAsync(first, false, $"INSERT INTO {Table} VALUES ({id}, current_setting('work_mem')) RETURNING note", "T", timeout);
        Assert.That(written.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("77MB"), "the primary joined with the transaction's SET");
        await RunStatementAsync(first, false, "COMMIT", "I", timeout);

        var other = await RunStatementAsync(second, false, $"INSERT INTO {Table} VALUES ({id + 1}, current_setting('work_mem')) RETURNING note", "I", timeout);
        Assert.That(other.Single(m => m.Code == 'D').FirstColumn, Is.Not.EqualTo("77MB"), "the other client's statement on that primary connection");
        var own = await RunStatementAsync(first, false, $"INSERT INTO {Table} VALUES ({id + 2}, current_setting('work_mem')) RETURNING note", "I", timeout);
        Assert.That(own.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("77MB"), "the first client keeps its committed SET");
    }

    /// <summary>
    /// After a failed transaction, one extended batch ends it (ROLLBACK) and sets something: the server keeps the SET,
    /// and so must the session's history. Counting every request that follows an 'E' as failed took it back.
    /// </summary>
    [TestCase("transaction")]
    [TestCase("session")]
    public async Task ASetInTheBatchThatEndsAFailedTransaction_Lasts(string poolMode)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-set-after-failure");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(18_000_000, 19_000_000);
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, "SELECT 1 / 0", "E", timeout);
        await raw.SendAsync(RawClient.Parse("", "ROLLBACK"), RawClient.Bind("", ""), RawClient.Execute(""),
            RawClient.Parse("", "SET work_mem = '7MB'"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout))[^1].Text, Is.EqualTo("I"));
        await ExpectSettingEverywhereAsync(raw, "work_mem", "7MB", id, timeout);
    }

    /// <summary>
    /// COMMIT AND CHAIN keeps the transaction's characteristics, SET TRANSACTION's too, as PostgreSQL does: a node that
    /// joins the chained transaction late (the primary, for a write) runs at its isolation level.
    /// </summary>
    [TestCase("transaction")]
    [TestCase("session")]
    public async Task ACharacteristicSetBeforeAChain_HoldsForANodeThatJoinsTheChainedTransaction(string poolMode)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-chain-set");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(17_000_000, 18_000_000);
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "T", timeout);
        await RunStatementAsync(raw, false, "COMMIT AND CHAIN", "T", timeout);
        var written = await RunStatementAsync(raw, false,
            $"INSERT INTO {Table} VALUES ({id}, current_setting('transaction_isolation')) RETURNING note", "T", timeout);
        Assert.That(written.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("repeatable read"), Describe(written));
        await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);
    }

    /// <summary>
    /// RESET of a parameter the client's startup packet set (here application_name), or SET … TO DEFAULT, goes back to
    /// the client's startup value, as on a connection of its own. In transaction mode the server connection is shared and
    /// started with the pool's values: the server reset it to those (an empty application_name), in the statement's own
    /// transaction and in every later one.
    /// </summary>
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    [TestCase("session", false)]
    public async Task AResetOfAStartupParameter_GoesBackToTheClientsStartupValue(string poolMode, bool extended)
    {
        const string app = "hardening-reset-app";
        await using var poold = await StartAsync(Backends(1, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, app);
        var timeout = TimeSpan.FromSeconds(10);

        Task<List<BackendMessage>> RunAsync(string sql, string status) => RunStatementAsync(raw, extended, sql, status, timeout);

        async Task ExpectAsync(string status, string because)
        {
            var read = await RunAsync("SELECT current_setting('application_name')", status);
            Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo(app), $"{because}: {Describe(read)}");
        }

        await RunAsync("SET application_name = 'changed'", "I");
        await RunAsync("RESET application_name", "I");
        await ExpectAsync("I", "after RESET");
        await RunAsync("SET application_name = 'changed again'", "I");
        await RunAsync("SET application_name TO DEFAULT", "I");
        await ExpectAsync("I", "after SET TO DEFAULT");
        if (extended)
        {
            // A SET after the RESET in the same batch has the last word: the startup value is not put back after it.
            await raw.SendAsync(RawClient.Parse("", "RESET application_name"), RawClient.Bind("", ""), RawClient.Execute(""),
                RawClient.Parse("", "SET application_name = 'set after the reset'"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
            Assert.That((await raw.ReadUntilReadyAsync(timeout))[^1].Text, Is.EqualTo("I"));
            var read = await RunAsync("SELECT current_setting('application_name')", "I");
            Assert.That(read.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("set after the reset"), Describe(read));
            await RunAsync("RESET application_name", "I");
        }

        await RunAsync("BEGIN", "T");
        await RunAsync("SET application_name = 'in a transaction'", "T");
        await RunAsync("RESET application_name", "T");
        await ExpectAsync("T", "in the transaction, after RESET");
        await RunAsync("COMMIT", "I");
        for (var i = 0; i < 4; i++)
        {
            await ExpectAsync("I", $"after the transaction, read {i}");
        }
    }

    /// <summary>
    /// A SET the server refuses (a bad value), or one whose request fails after it (its implicit transaction rolls it
    /// back), leaves the setting as it was, as on the server. Poold recorded it anyway and replayed it on every connection
    /// that joined the session later: there it failed again, hidden, and the setting fell back to the server's default.
    /// </summary>
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    [TestCase("session", false)]
    [TestCase("session", true)]
    public async Task AFailedSet_LeavesTheSettingAsItWas(string poolMode, bool extended)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-failed-set");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(23_000_000, 24_000_000);

        Task<List<BackendMessage>> RunAsync(string sql, string status) => RunStatementAsync(raw, extended, sql, status, timeout);

        await RunAsync("SET TimeZone = 'Asia/Tokyo'", "I");
        var refused = await RunAsync("SET TimeZone = 'Nowhere/Bad'", "I");
        Assert.That(refused.Single(m => m.Code == 'E').SqlState, Is.EqualTo("22023"), Describe(refused));
        if (extended)
        {
            // One extended batch: the SET runs, the division fails, and the batch's implicit transaction undoes both.
            await raw.SendAsync(RawClient.Parse("", "SET TimeZone = 'Europe/Paris'"), RawClient.Bind("", ""), RawClient.Execute(""),
                RawClient.Parse("", "SELECT 1 / 0"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Sync());
            var undone = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(undone.Single(m => m.Code == 'E').SqlState, Is.EqualTo("22012"), Describe(undone));
        }

        await ExpectSettingEverywhereAsync(raw, "TimeZone", "Asia/Tokyo", id, timeout);
    }

    /// <summary>
    /// A second Parse of a statement name the client has is refused (42P05), as PostgreSQL refuses it, even when it is
    /// sent where the first one is not: the first, a read, ran on a standby; the second, a write, goes to the primary.
    /// It used to be parsed there silently, and the client's statement replaced by the write.
    /// </summary>
    [TestCase("session")]
    [TestCase("transaction")]
    public async Task ASecondParseOfTheSameName_IsRefused_AndTheFirstStatementStays(string poolMode)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-parse-twice");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(26_000_000, 27_000_000);
        await raw.SendAsync(RawClient.Parse("twice", "SELECT current_setting('port')"), RawClient.Sync());
        var parsed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(parsed.Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }), Describe(parsed));

        await raw.SendAsync(RawClient.Parse("twice", $"INSERT INTO {Table} VALUES ({id}, 'second parse') RETURNING note"), RawClient.Sync());
        var refused = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(refused.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text),
            Is.EqualTo(new[] { "42P05", "I" }), Describe(refused));

        for (var i = 0; i < 3; i++)
        {
            // The client's statement is still the read, wherever it runs (a standby in either mode).
            await raw.SendAsync(RawClient.Bind("", "twice"), RawClient.Execute(""), RawClient.Sync());
            var ran = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(ran.Single(m => m.Code == 'D').FirstColumn, Is.Not.EqualTo(ClusterFixture.Cluster.Nodes[0].Port.ToString(CultureInfo.InvariantCulture)),
                $"run {i}: {Describe(ran)}");
        }

        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L), "the refused write never ran");

        // Closed, the name is free again: parsed anew, it is the write.
        await raw.SendAsync(RawClient.Message('C', [(byte)'S'], RawClient.CString("twice")),
            RawClient.Parse("twice", $"INSERT INTO {Table} VALUES ({id}, 'after close') RETURNING note"),
            RawClient.Bind("", "twice"), RawClient.Execute(""), RawClient.Sync());
        var written = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(written.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("after close"), Describe(written));
    }

    /// <summary>
    /// A statement dropped on the server by a DEALLOCATE or DISCARD ALL the client sent in the extended protocol (as JDBC
    /// sends every statement) is gone from Poold's records too: the client parses the name again and gets the new
    /// statement, not 42P05 from Poold's copy of the old one.
    /// </summary>
    [TestCase("session", "DEALLOCATE again", true)]
    [TestCase("transaction", "DEALLOCATE again", true)]
    [TestCase("session", "DEALLOCATE ALL", false)]
    [TestCase("transaction", "DEALLOCATE ALL", false)]
    [TestCase("transaction", "DISCARD ALL", false)]
    [TestCase("transaction", "SELECT 1; DEALLOCATE again", false)]
    public async Task AStatementDeallocatedByTheClient_CanBeParsedAgainUnderItsName(string poolMode, string drop, bool inTransaction)
    {
        await using var poold = await StartAsync(Backends(1, 0, 0), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-parse-after-drop");
        var timeout = TimeSpan.FromSeconds(10);
        if (inTransaction)
        {
            await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        }

        var status = inTransaction ? "T" : "I";
        await raw.SendAsync(RawClient.Parse("again", "SELECT 'old'"), RawClient.Bind("", "again"), RawClient.Execute(""), RawClient.Sync());
        var old = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(old.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("old"), Describe(old));

        // A query string of several statements can only go as a simple query.
        await RunStatementAsync(raw, !drop.Contains(';', StringComparison.Ordinal), drop, status, timeout);
        await raw.SendAsync(RawClient.Parse("again", "SELECT 'new'"), RawClient.Bind("", "again"), RawClient.Execute(""), RawClient.Sync());
        var replaced = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(replaced.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn), Is.EqualTo(new[] { "new" }),
            Describe(replaced));
        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync(RawClient.Bind("", "again"), RawClient.Execute(""), RawClient.Sync());
            var ran = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(ran.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("new"), $"run {i}: {Describe(ran)}");
        }
    }

    /// <summary>
    /// Npgsql reuses an auto-prepare slot by closing the name and parsing it again in one batch; when an earlier
    /// statement of the batch fails, the server skips both, the old statement stays, and Npgsql binds it again. Poold
    /// must keep it too: it had dropped it (a Close sent first, then 26000).
    /// </summary>
    [TestCase("session")]
    [TestCase("transaction")]
    public async Task ACloseAndParseTheServerSkipped_LeaveTheOldStatementToBind(string poolMode)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-slot-reuse");
        var timeout = TimeSpan.FromSeconds(10);
        await raw.SendAsync(RawClient.Parse("_auto3", "SELECT 'old'"), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));

        await raw.SendAsync(RawClient.Parse("", "SELECT 1 / 0"), RawClient.Bind("", ""), RawClient.Execute(""),
            RawClient.Message('C', [(byte)'S'], RawClient.CString("_auto3")), RawClient.Parse("_auto3", "SELECT 'new'"), RawClient.Bind("", "_auto3"),
            RawClient.Execute(""), RawClient.Sync());
        var failed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(failed.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text), Is.EqualTo(new[] { "22012", "I" }),
            Describe(failed));

        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync(RawClient.Bind("", "_auto3"), RawClient.Execute(""), RawClient.Sync());
            var ran = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(ran.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn), Is.EqualTo(new[] { "old" }),
                $"run {i}: {Describe(ran)}");
        }
    }

    /// <summary>
    /// A DEALLOCATE ALL the server refuses (sent, as JDBC sends it, in the extended protocol, inside a failed
    /// transaction: 25P02) drops nothing: after the ROLLBACK the client's statement still binds. And a SQL DEALLOCATE
    /// of a statement that lives on another server connection (transaction mode, inside a transaction) lets the client
    /// parse the name again.
    /// </summary>
    [TestCase("session", false)]
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    public async Task ADeallocateThatDidNotRun_DropsNothing_AndOneElsewhere_FreesTheName(string poolMode, bool elsewhere)
    {
        await using var poold = await StartAsync(Backends(1, 0, 0), $"pool_mode = {poolMode}\ndefault_pool_size = 4\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-deallocate-refused");
        await using var other = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-deallocate-other");
        var timeout = TimeSpan.FromSeconds(10);
        await raw.SendAsync(RawClient.Parse("kept", "SELECT 'kept'"), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));
        if (elsewhere)
        {
            // Another client's open transaction holds the connection the statement was parsed on: this client's next
            // transaction runs on another one.
            await RunStatementAsync(other, false, "BEGIN", "T", timeout);
            await RunStatementAsync(other, false, "SELECT 1", "T", timeout);
            await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
            var dropped = await RunStatementAsync(raw, false, "DEALLOCATE kept", "E", timeout);
            Assert.That(dropped.Single(m => m.Code == 'E').SqlState, Is.EqualTo("26000"), Describe(dropped));
            await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);
            await RunStatementAsync(other, false, "COMMIT", "I", timeout);
            await raw.SendAsync(RawClient.Parse("kept", "SELECT 'again'"), RawClient.Bind("", "kept"), RawClient.Execute(""), RawClient.Sync());
            var again = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(again.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn), Is.EqualTo(new[] { "again" }),
                Describe(again));
            return;
        }

        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, "SELECT 1 / 0", "E", timeout);
        var refused = await RunStatementAsync(raw, true, "DEALLOCATE ALL", "E", timeout);
        Assert.That(refused.Single(m => m.Code == 'E').SqlState, Is.EqualTo("25P02"), Describe(refused));
        await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);
        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync(RawClient.Bind("", "kept"), RawClient.Execute(""), RawClient.Sync());
            var ran = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(ran.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn), Is.EqualTo(new[] { "kept" }),
                $"run {i}: {Describe(ran)}");
        }
    }

    /// <summary>
    /// A DEALLOCATE ALL and then a Parse in one extended batch: the statement parsed after it is the client's, and binds
    /// (the registry applied the DEALLOCATE once the server answered, after the Parse, and dropped it).
    /// </summary>
    [TestCase("session")]
    [TestCase("transaction")]
    public async Task AParseAfterADeallocateAllInOneBatch_Stays(string poolMode)
    {
        await using var poold = await StartAsync(Backends(1, 0, 0), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-parse-after-deallocate");
        var timeout = TimeSpan.FromSeconds(10);
        await raw.SendAsync(RawClient.Parse("before", "SELECT 'before'"), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));
        await raw.SendAsync(RawClient.Parse("", "DEALLOCATE ALL"), RawClient.Bind("", ""), RawClient.Execute(""),
            RawClient.Parse("after", "SELECT 'after'"), RawClient.Bind("", "after"), RawClient.Execute(""), RawClient.Sync());
        var batch = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(batch.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn), Is.EqualTo(new[] { "after" }),
            Describe(batch));
        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync(RawClient.Bind("", "after"), RawClient.Execute(""), RawClient.Bind("", "before"), RawClient.Execute(""), RawClient.Sync());
            var ran = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(ran.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn), Is.EqualTo(new[] { "after", "26000" }),
                $"run {i}: {Describe(ran)}");
        }
    }

    /// <summary>
    /// A statement parsed on a standby, bound in a transaction that failed on the primary: Poold parses it on the
    /// primary first, and the server refuses that Parse (25P02) with the Bind. The primary's connection must not count it
    /// as there: after the ROLLBACK, the next transaction's Bind of it got 26000. The same for a Close of it the server
    /// skips there (the statement stays the client's, on the standby only).
    /// </summary>
    [TestCase("session", false)]
    [TestCase("transaction", false)]
    [TestCase("session", true)]
    public async Task AStatementParsedAheadOfABindInAFailedTransaction_IsParsedAgainLater(string poolMode, bool closed)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-catch-up-refused");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(28_000_000, 29_000_000);
        await raw.SendAsync(RawClient.Parse("elsewhere", "SELECT 'parsed on a standby'"), RawClient.Sync());
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }));

        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES (1 / 0, 'fails')", "E", timeout);
        await raw.SendAsync(closed
            ? [RawClient.Parse("", "SELECT 1"), RawClient.Bind("", ""), RawClient.Execute(""), RawClient.Message('C', [(byte)'S'], RawClient.CString("elsewhere")),
                RawClient.Sync()]
            : [RawClient.Bind("", "elsewhere"), RawClient.Execute(""), RawClient.Sync()]);
        var refused = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(refused.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text), Is.EqualTo(new[] { "25P02", "E" }),
            Describe(refused));
        await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);

        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, 'on the primary')", "T", timeout);
        await raw.SendAsync(RawClient.Bind("", "elsewhere"), RawClient.Execute(""), RawClient.Sync());
        var ran = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(ran.Where(m => m.Code is 'E' or 'D').Select(m => m.Code == 'E' ? m.SqlState : m.FirstColumn),
            Is.EqualTo(new[] { "parsed on a standby" }), Describe(ran));
        await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);
    }

    /// <summary>
    /// A Parse the server refuses makes no statement: a later Bind of its name gets 26000 (prepared statement does not
    /// exist) wherever it runs, and the name can be parsed again. The Bind, in a transaction after a write, runs on the
    /// primary while the Parse, a read, ran on a standby: Poold used to parse the refused statement again there, and the
    /// client got the Parse's error (42P01) a second time. A failed Parse of a name, then a good one pipelined after it,
    /// leaves the good one.
    /// </summary>
    [TestCase("session", false)]
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    public async Task AStatementWhoseParseFailed_DoesNotExist_AndItsNameCanBeParsedAgain(string poolMode, bool pipelined)
    {
        await using var poold = await StartAsync(Backends(0, 1, 1), $"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-parse-failed");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(27_000_000, 28_000_000);
        await raw.SendAsync(RawClient.Parse("refused", "SELECT * FROM no_such_table_here"), RawClient.Sync());
        var failed = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(failed.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text), Is.EqualTo(new[] { "42P01", "I" }),
            Describe(failed));

        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, 'before the bind')", "T", timeout);
        await raw.SendAsync(RawClient.Bind("", "refused"), RawClient.Execute(""), RawClient.Sync());
        var missing = await raw.ReadUntilReadyAsync(timeout);
        Assert.That(missing.Where(m => m.Code is 'E' or 'Z').Select(m => m.Code == 'E' ? m.SqlState : m.Text), Is.EqualTo(new[] { "26000", "E" }),
            Describe(missing));
        await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);

        if (pipelined)
        {
            // Both sent before either is answered: the first fails, the second makes the statement.
            await raw.SendAsync(RawClient.Parse("again", "SELECT * FROM no_such_table_here"), RawClient.Sync(),
                RawClient.Parse("again", "SELECT 'made'"), RawClient.Sync());
            Assert.That((await raw.ReadUntilReadyAsync(timeout)).Any(m => m is { Code: 'E', SqlState: "42P01" }));
            var made = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(made.Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }), Describe(made));
        }
        else
        {
            await raw.SendAsync(RawClient.Parse("refused", "SELECT 'made'"), RawClient.Sync());
            var made = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(made.Select(m => m.Code), Is.EqualTo(new[] { '1', 'Z' }), Describe(made));
        }

        var name = pipelined ? "again" : "refused";
        await RunStatementAsync(raw, false, "BEGIN", "T", timeout);
        await RunStatementAsync(raw, false, $"INSERT INTO {Table} VALUES ({id}, 'before the second bind')", "T", timeout);
        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync(RawClient.Bind("", name), RawClient.Execute(""), RawClient.Sync());
            var ran = await raw.ReadUntilReadyAsync(timeout);
            Assert.That(ran.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("made"), $"run {i}: {Describe(ran)}");
        }

        await RunStatementAsync(raw, false, "ROLLBACK", "I", timeout);
    }

    /// <summary>
    /// A transaction writes on the primary and sets a savepoint; a read balanced to a standby then brings the standby in,
    /// after the savepoint, and fails there. The client rolls back to the savepoint, reads on, releases it and commits.
    /// Every node in the transaction must know the savepoint: the standby refused the copied ROLLBACK TO (3B001) and
    /// stayed aborted, so the next read balanced there got 25P02.
    /// </summary>
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    [TestCase("session", false)]
    public async Task ASavepointSetBeforeAStandbyJoined_IsThereForRollbackTo_AndTheStandbyReadsOn(string poolMode, bool extended)
    {
        await using var poold = await StartBalancingAfterWritesAsync($"pool_mode = {poolMode}\n");
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-savepoint-join");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(24_000_000, 25_000_000);

        Task<List<BackendMessage>> RunAsync(string sql, string status) => RunStatementAsync(raw, extended, sql, status, timeout);
        Task ReadOnAStandbyAsync() => ReadInTheTransactionOnAStandbyAsync(raw, extended, timeout);

        await RunAsync("BEGIN", "T");
        await RunAsync($"INSERT INTO {Table} VALUES ({id}, 'kept')", "T");
        await RunAsync("SAVEPOINT s", "T");
        await RunAsync(FailsOnAStandby(), "E");
        await RunAsync("ROLLBACK TO SAVEPOINT s", "T");
        await ReadOnAStandbyAsync();
        await RunAsync("RELEASE SAVEPOINT s", "T");
        await ReadOnAStandbyAsync();
        var committed = await RunAsync("COMMIT", "I");
        Assert.That(committed.Single(m => m.Code == 'C').Text, Is.EqualTo("COMMIT|"));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(1L));
    }

    /// <summary>
    /// The transaction failed on a standby whose backend is then terminated while the session is idle. The client's
    /// COMMIT goes to that node and gets the server's words (57P01) and Poold's (08006), never a COMMIT; the primary's
    /// part was rolled back before, so nothing of the transaction is committed, and the session goes on.
    /// </summary>
    [Test]
    public async Task CommitOfATransactionThatFailedOnATerminatedStandby_FailsAndCommitsNothing()
    {
        await using var poold = await StartBalancingAfterWritesAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-failed-gone");
        var timeout = TimeSpan.FromSeconds(10);
        var id = Random.Shared.Next(8_000_000, 9_000_000);
        await WriteThenFailOnAStandbyAsync(raw, id, timeout);

        for (var node = 1; node < 3; node++)
        {
            await ClusterFixture.Cluster.ScalarAsync(node,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'hardening-failed-gone'");
        }

        await raw.SendAsync(RawClient.Query("COMMIT"));
        var reply = await raw.ReadUntilReadyAsync(timeout);
        var codes = string.Join(", ", reply.Select(m => m.Code + ":" + m.Text));
        Assert.That(reply.Where(m => m.Code == 'C'), Is.Empty, codes);
        Assert.That(reply.Where(m => m.Code == 'E').Select(m => m.SqlState), Is.SubsetOf(new[] { "57P01", "08006" }).And.Not.Empty, codes);
        Assert.That(reply[^1].Text, Is.EqualTo("I"), codes);
        await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hardening-failed-gone' AND state LIKE 'idle in transaction%'"),
            CultureInfo.InvariantCulture) == 0, timeout, "the primary's connection to leave the transaction");
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM {Table} WHERE id = {id}"), Is.EqualTo(0L));
        await raw.SendAsync(RawClient.Query($"INSERT INTO {Table} VALUES ({id}, 'the session goes on')"));
        Assert.That((await raw.ReadUntilReadyAsync(timeout)).Select(m => m.Code), Is.EqualTo(new[] { 'C', 'Z' }));
    }

    /// <summary>
    /// A message of a type PostgreSQL does not know after login, or a second startup packet, gets PostgreSQL's FATAL 08P01
    /// at once. Poold queued the first for the next Sync and waited for the second's body, so the client heard nothing.
    /// </summary>
    [TestCase(new byte[] { (byte)'z', 0, 0, 0, 7, (byte)'a', (byte)'b', (byte)'c' }, 122)]
    [TestCase(new byte[] { 0, 0, 0, 8, 4, 210, 22, 47 }, 0)]
    public async Task AMessageOfAnUnknownType_GetsFatal08P01AtOnce_AndOtherSessionsGoOn(byte[] message, int type)
    {
        await using var poold = await StartAsync(Backends(1));
        await using var bystander = Connection(poold, "hardening-type-bystander");
        await bystander.OpenAsync();
        await using var raw = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "hardening-type");
        await raw.SendAsync(message);
        var reply = await raw.ReadUntilAsync("E", TimeSpan.FromSeconds(10));
        Assert.That(reply[^1].SqlState, Is.EqualTo("08P01"), Describe(reply));
        Assert.That(reply[^1].Text, Does.Contain($"invalid frontend message type {type}"));
        Assert.ThrowsAsync<EndOfStreamException>(async () => await raw.ReadUntilReadyAsync(TimeSpan.FromSeconds(10)), "the session ends");
        Assert.That(await new NpgsqlCommand("SELECT 4", bystander).ExecuteScalarAsync(), Is.EqualTo(4));
    }

    [Test]
    public async Task MessageOverMaxPacketSize_Gets54000_AndOtherSessionsGoOn()
    {
        await using var poold = await StartAsync(Backends(1), "max_packet_size = 65536\n");
        await using var bystander = Connection(poold, "hardening-big-bystander");
        await bystander.OpenAsync();
        await using var c = Connection(poold, "hardening-big");
        await c.OpenAsync();
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
            await new NpgsqlCommand($"SELECT '{new string('x', 100_000)}'", c).ExecuteScalarAsync());
        Assert.That(e!.SqlState, Is.EqualTo("54000"), e.Message);
        Assert.That(e.MessageText, Does.Contain("max_packet_size"));
        Assert.That(await new NpgsqlCommand("SELECT 3", bystander).ExecuteScalarAsync(), Is.EqualTo(3));
    }
}
