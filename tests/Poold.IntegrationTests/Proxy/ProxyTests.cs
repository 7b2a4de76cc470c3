using System.Diagnostics;
using System.Text;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Proxy;

/// <summary>Real clients through an in-process Poold in front of the shared cluster (TLS, pass-through authentication).</summary>
[TestFixture]
public class ProxyTests
{
    private PooldInstance _poold = null!;

    private static PgCluster Cluster => ClusterFixture.Cluster;

    [OneTimeSetUp]
    public async Task StartPoold() => _poold = await PooldInstance.StartAsync(Cluster);

    [TearDown]
    public async Task ShowLogOnFailure()
    {
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
        {
            await TestContext.Out.WriteLineAsync("---- Poold log ----\n" + _poold.Log);
        }
    }

    [OneTimeTearDown]
    public async Task StopPoold() => await _poold.DisposeAsync();

    private Task<NpgsqlConnection> OpenScramAsync() => _poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser));

    [Test]
    public async Task Query_SimpleAndExtended_ReturnRowsFromThePrimary()
    {
        await using var connection = await OpenScramAsync();
        await using (var simple = new NpgsqlCommand("SELECT 41 + 1; SELECT pg_is_in_recovery()", connection))
        await using (var reader = await simple.ExecuteReaderAsync())
        {
            Assert.That(await reader.ReadAsync(), Is.True);
            Assert.That(reader.GetInt32(0), Is.EqualTo(42));
            Assert.That(await reader.NextResultAsync() && await reader.ReadAsync(), Is.True);
            Assert.That(reader.GetBoolean(0), Is.False, "every statement goes to the primary");
        }

        await using var extended = new NpgsqlCommand("SELECT $1::int * 2, $2::text || '!'", connection)
        {
            Parameters = { new() { Value = 21 }, new() { Value = "hi" } },
        };
        await extended.PrepareAsync();
        for (var i = 0; i < 3; i++)
        {
            await using var reader = await extended.ExecuteReaderAsync();
            Assert.That(await reader.ReadAsync(), Is.True);
            Assert.That((reader.GetInt32(0), reader.GetString(1)), Is.EqualTo((42, "hi!")));
        }
    }

    [Test]
    public async Task Session_ErrorInsideTransaction_IsReportedAndTheSessionRecovers()
    {
        await using var connection = await OpenScramAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var e = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("SELECT 1/0", connection, tx).ExecuteScalarAsync());
        Assert.That(e!.SqlState, Is.EqualTo("22012"));
        var aborted = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("SELECT 1", connection, tx).ExecuteScalarAsync());
        Assert.That(aborted!.SqlState, Is.EqualTo("25P02"));
        await tx.RollbackAsync();
        Assert.That(await new NpgsqlCommand("SELECT 7", connection).ExecuteScalarAsync(), Is.EqualTo(7));
    }

    [Test]
    public async Task Copy_InAndOut100kRows_ChecksumsMatch()
    {
        await using var connection = await OpenScramAsync();
        var table = "copy_" + Guid.NewGuid().ToString("N")[..8];
        await new NpgsqlCommand($"CREATE TABLE {table} (id int, payload text)", connection).ExecuteNonQueryAsync();
        try
        {
            var expected = new StringBuilder();
            await using (var writer = await connection.BeginTextImportAsync($"COPY {table} FROM STDIN"))
            {
                for (var i = 0; i < 100_000; i++)
                {
                    var line = $"{i}\tpayload-{i * 7919 % 100_003}";
                    expected.Append(line).Append('\n');
                    await writer.WriteAsync(line + "\n");
                }
            }

            // Reads are load-balanced: let the replicas catch up with the import first.
            await ClusterFixture.Cluster.WaitForReplayAsync();
            var count = await new NpgsqlCommand($"SELECT count(*), sum(id) FROM {table}", connection).ExecuteReaderAsync();
            await using (count)
            {
                await count.ReadAsync();
                Assert.That((count.GetInt64(0), count.GetInt64(1)), Is.EqualTo((100_000L, 4_999_950_000L)));
            }

            var actual = new StringBuilder();
            using (var reader = await connection.BeginTextExportAsync($"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT"))
            {
                actual.Append(await reader.ReadToEndAsync());
            }

            Assert.That(Sha(actual.ToString()), Is.EqualTo(Sha(expected.ToString())));
        }
        finally
        {
            await new NpgsqlCommand($"DROP TABLE {table}", connection).ExecuteNonQueryAsync();
        }
    }

    private static string Sha(string s) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(s)));

    [Test]
    public async Task Cancel_LongQuery_StopsItPromptly()
    {
        await using var connection = await OpenScramAsync();
        await using var command = new NpgsqlCommand("SELECT pg_sleep(30)", connection);
        var watch = Stopwatch.StartNew();
        var running = command.ExecuteNonQueryAsync();
        await Poll.UntilAsync(async () =>
        {
            await using var admin = await OpenScramAsync();
            var n = await new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'", admin)
                .ExecuteScalarAsync();
            return (long)n! > 0;
        }, TimeSpan.FromSeconds(10), "the query to be running");
        command.Cancel();
        var e = Assert.ThrowsAsync<OperationCanceledException>(async () => await running);
        Assert.That(e!.InnerException, Is.InstanceOf<PostgresException>().With.Property("SqlState").EqualTo("57014"), "query_canceled");
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "cancelled, not run to the end");
        Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1), "the session is still usable");
    }

    [Test]
    public async Task ListenNotify_IsDelivered()
    {
        await using var listener = await OpenScramAsync();
        await using var notifier = await OpenScramAsync();
        var received = new TaskCompletionSource<string>();
        listener.Notification += (_, e) => received.TrySetResult(e.Channel + ":" + e.Payload);
        await new NpgsqlCommand("LISTEN poold_channel", listener).ExecuteNonQueryAsync();
        await new NpgsqlCommand("NOTIFY poold_channel, 'hello'", notifier).ExecuteNonQueryAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!received.Task.IsCompleted)
        {
            await listener.WaitAsync(timeout.Token);
        }

        Assert.That(await received.Task, Is.EqualTo("poold_channel:hello"));
    }

    [Test]
    public async Task Notice_AndParameterStatus_ReachTheClient()
    {
        await using var connection = await OpenScramAsync();
        var notices = new List<string>();
        connection.Notice += (_, e) => notices.Add(e.Notice.MessageText);
        await new NpgsqlCommand("DO $$ BEGIN RAISE NOTICE 'from the server'; END $$", connection).ExecuteNonQueryAsync();
        await new NpgsqlCommand("SET application_name = 'changed-by-test'", connection).ExecuteNonQueryAsync();
        Assert.That(notices, Is.EqualTo(new[] { "from the server" }));
        Assert.That(connection.PostgresParameters["application_name"], Is.EqualTo("changed-by-test"));
    }

    [Test]
    public async Task EmptyQuery_GetsEmptyQueryResponse()
    {
        await using var connection = await OpenScramAsync();
        Assert.That(await new NpgsqlCommand(";", connection).ExecuteNonQueryAsync(), Is.EqualTo(-1));
    }

    [Test]
    public async Task WrongPassword_Gets28P01FromPostgres()
    {
        var e = Assert.ThrowsAsync<PostgresException>(async () => await _poold.OpenAsync(TestRoles.ScramUser, "wrong"));
        Assert.That(e!.SqlState, Is.EqualTo("28P01"));
        Assert.That(e.MessageText, Is.EqualTo($"password authentication failed for user \"{TestRoles.ScramUser}\""));
        Assert.That(_poold.Log, Does.Not.Contain("wrong"), "the password never reaches the log");
    }

    [Test]
    public async Task WrongPassword_OnACachedConnection_IsRejectedToo()
    {
        int pid;
        await using (var first = await OpenScramAsync())
        {
            pid = first.ProcessID;
        }

        await Poll.UntilAsync(() => Task.FromResult(_poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(10),
            "the session to end and its connection to be pooled");
        var e = Assert.ThrowsAsync<PostgresException>(async () => await _poold.OpenAsync(TestRoles.ScramUser, "not-the-password"));
        Assert.That(e!.SqlState, Is.EqualTo("28P01"));
        Assert.That(pid, Is.Not.Zero);
    }

    [Test]
    public async Task SecondClient_ReusesTheFirstClientsBackendConnection()
    {
        await using var probe = await _poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User));
        var first = await new NpgsqlCommand("/*NO LOAD BALANCE*/ SELECT pg_backend_pid()", probe).ExecuteScalarAsync();
        await new NpgsqlCommand("SET work_mem = '7MB'", probe).ExecuteNonQueryAsync();
        await probe.CloseAsync();

        await Poll.UntilAsync(() => Task.FromResult(_poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(10),
            "the session to end and its connection to be pooled");
        await using var second = await _poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User));
        Assert.That(await new NpgsqlCommand("/*NO LOAD BALANCE*/ SELECT pg_backend_pid()", second).ExecuteScalarAsync(), Is.EqualTo(first),
            "the primary connection is reused");
        Assert.That(await new NpgsqlCommand("SHOW work_mem", second).ExecuteScalarAsync(), Is.EqualTo("4MB"), "DISCARD ALL reset the session");
    }

    [Test]
    public async Task TrustAndCleartextBackends_Work()
    {
        await using (var trust = await _poold.OpenAsync(TestRoles.TrustUser, "anything"))
        {
            Assert.That(await new NpgsqlCommand("SELECT current_user", trust).ExecuteScalarAsync(), Is.EqualTo(TestRoles.TrustUser));
        }

        await using var clear = await _poold.OpenAsync(TestRoles.ClearUser, TestRoles.Password(TestRoles.ClearUser));
        Assert.That(await new NpgsqlCommand("SELECT current_user", clear).ExecuteScalarAsync(), Is.EqualTo(TestRoles.ClearUser));
    }

    [Test]
    public async Task Psql_WithSslRequire_ReportsTls()
    {
        var (code, output) = await Run("psql",
            $"\"host=127.0.0.1 port={_poold.Port} user={TestRoles.ScramUser} dbname={PgCluster.TestDatabase} sslmode=require\" -c \\conninfo",
            ("PGPASSWORD", TestRoles.Password(TestRoles.ScramUser)));
        Assert.That(code, Is.Zero, output);
        Assert.That(output, Does.Contain("SSL connection (protocol: TLSv1."));
    }

    [Test]
    public async Task Pgbench_SelectOnlyExtended_HasNoFailedTransactions()
    {
        var password = ("PGPASSWORD", TestRoles.Password(TestRoles.ScramUser));
        var target = $"-h 127.0.0.1 -p {_poold.Port} -U {TestRoles.ScramUser} {PgCluster.TestDatabase}";
        var (init, initOutput) = await Run("pgbench", $"-i -q -s 1 {target}", password);
        Assert.That(init, Is.Zero, initOutput);
        var (code, output) = await Run("pgbench", $"-S -M extended -c 16 -j 2 -T 10 {target}", password);
        Assert.That(code, Is.Zero, output);
        Assert.That(output, Does.Match(@"number of failed transactions: 0 \("));
        Assert.That(output, Does.Match(@"number of transactions actually processed: [1-9]"));
    }

    internal static async Task<(int Code, string Output)> Run(string file, string arguments, params (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        start.Environment["PGSSLMODE"] = "require";
        var (code, stdout, stderr) = await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(120));
        return (code, stdout + stderr);
    }
}
