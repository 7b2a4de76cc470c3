using System.Globalization;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Hardening;

/// <summary>
/// What a client sees through Poold that it would see on a direct connection: the backend's real pid, administrators'
/// terminate and cancel by that pid, database DDL not blocked by Poold's cache, and cancels that reach only their
/// own statement.
/// </summary>
public class ClientViewTests
{
    private PooldInstance _poold = null!;

    [OneTimeSetUp]
    public async Task StartPoold() => _poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, onlyNode: 0)
        + "load_balance_mode = off\nhealth_check_period = 0\n", ssl: false);

    [OneTimeTearDown]
    public async Task StopPoold() => await _poold.DisposeAsync();

    private NpgsqlConnection Connection(string applicationName, string user = TestRoles.TrustUser, string database = PgCluster.TestDatabase)
    {
        var builder = _poold.ConnectionString(user, user == TestRoles.TrustUser ? "" : TestRoles.Password(user), database, SslMode.Disable);
        builder.ApplicationName = applicationName;
        return new NpgsqlConnection(builder.ConnectionString);
    }

    [Test]
    public async Task TheDriversProcessId_IsTheBackendsPid()
    {
        await using var c = Connection("view-pid");
        await c.OpenAsync();
        var pid = Convert.ToInt32(await new NpgsqlCommand("SELECT pg_backend_pid()", c).ExecuteScalarAsync(), CultureInfo.InvariantCulture);
        Assert.That(c.ProcessID, Is.EqualTo(pid));
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT application_name FROM pg_stat_activity WHERE pid = {c.ProcessID}"),
            Is.EqualTo("view-pid"), "pg_stat_activity knows the pid the driver reports");
    }

    [Test]
    public async Task TerminatingThatPid_EndsTheSessionWithTheServers57P01()
    {
        await using var c = Connection("view-terminate");
        await c.OpenAsync();
        await new NpgsqlCommand("LISTEN view_channel", c).ExecuteNonQueryAsync();
        Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT pg_terminate_backend({c.ProcessID})"), Is.EqualTo(true));

        // A client waiting for notifications learns at once that its connection is gone, instead of waiting forever.
        var wait = c.WaitAsync(TimeSpan.FromSeconds(30));
        var e = Assert.CatchAsync(async () => await wait);
        Assert.That(e, Is.InstanceOf<PostgresException>().Or.InstanceOf<NpgsqlException>(), e!.ToString());
        if (e is PostgresException pg)
        {
            Assert.That(pg.SqlState, Is.EqualTo("57P01"));
        }

        await Poll.UntilAsync(() => Task.FromResult(_poold.Host.Sessions.All(s => s.BackendProcessId != c.ProcessID)), TimeSpan.FromSeconds(10),
            "the session to end");
    }

    [Test]
    public async Task CancelThroughPoold_CancelsTheStatement()
    {
        await using var c = Connection("view-cancel");
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT pg_sleep(30)", c);
        var running = cmd.ExecuteNonQueryAsync();
        await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                $"SELECT count(*) FROM pg_stat_activity WHERE pid = {c.ProcessID} AND state = 'active'"), CultureInfo.InvariantCulture) == 1,
            TimeSpan.FromSeconds(10), "the statement to run");
        cmd.Cancel();
        var e = Assert.CatchAsync(async () => await running);
        Assert.That((e as PostgresException ?? e?.InnerException as PostgresException)?.SqlState, Is.EqualTo("57014"), e?.ToString());
        Assert.That(await new NpgsqlCommand("SELECT 1", c).ExecuteScalarAsync(), Is.EqualTo(1));
    }

    [Test]
    public async Task DatabaseDdl_IsNotBlockedByCachedConnections()
    {
        var name = $"view_db_{Guid.NewGuid():N}"[..20];
        await ClusterFixture.Cluster.ScalarAsync(0, $"CREATE DATABASE {name}");
        try
        {
            await UseAndLeaveAsync(name);

            // CREATE DATABASE … TEMPLATE needs the template free of sessions.
            await using (var admin = Connection("view-ddl", TestRoles.Admin, "postgres"))
            {
                await admin.OpenAsync();
                await new NpgsqlCommand($"CREATE DATABASE {name}_copy TEMPLATE {name}", admin).ExecuteNonQueryAsync();
                await new NpgsqlCommand($"DROP DATABASE {name}_copy", admin).ExecuteNonQueryAsync();
            }

            await UseAndLeaveAsync(name);
            await using (var admin = Connection("view-ddl", TestRoles.Admin, "postgres"))
            {
                await admin.OpenAsync();
                await new NpgsqlCommand($"ALTER DATABASE {name} RENAME TO {name}_r", admin).ExecuteNonQueryAsync();
                await new NpgsqlCommand($"ALTER DATABASE {name}_r RENAME TO {name}", admin).ExecuteNonQueryAsync();
            }

            await UseAndLeaveAsync(name);
            await using (var admin = Connection("view-ddl", TestRoles.Admin, "postgres"))
            {
                await admin.OpenAsync();

                // Simple protocol, as psql sends it.
                await using var batch = new NpgsqlBatch(admin) { BatchCommands = { new NpgsqlBatchCommand($"DROP DATABASE {name}") } };
                await batch.ExecuteNonQueryAsync();
            }

            Assert.That(await ClusterFixture.Cluster.ScalarAsync(0, $"SELECT count(*) FROM pg_database WHERE datname = '{name}'"), Is.EqualTo(0L));
        }
        finally
        {
            await ClusterFixture.Cluster.ScalarAsync(0, $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        }
    }

    [Test]
    public async Task AConnectionOutWithAClientWhileItsDatabaseIsPurged_IsClosedWhenItComesBack()
    {
        var name = $"view_db_{Guid.NewGuid():N}"[..20];
        await ClusterFixture.Cluster.ScalarAsync(0, $"CREATE DATABASE {name}");
        try
        {
            await using (var user = Connection("view-ddl-out", database: name))
            {
                await user.OpenAsync();
                Assert.That(await new NpgsqlCommand("SELECT 1", user).ExecuteScalarAsync(), Is.EqualTo(1));

                // The DDL purges the database's idle connections first; this one is in use, so PostgreSQL refuses
                // (after waiting 5 s for it), as it would without Poold.
                await using var admin = Connection("view-ddl", TestRoles.Admin, "postgres");
                await admin.OpenAsync();
                var refused = Assert.ThrowsAsync<PostgresException>(async () =>
                    await new NpgsqlCommand($"ALTER DATABASE {name} RENAME TO {name}_r", admin).ExecuteNonQueryAsync());
                Assert.That(refused!.SqlState, Is.EqualTo("55006"));
            }

            // The client left after the purge: its connection is closed, not cached, so nothing holds the database for
            // the DDL's next try. (Cached, it would stay idle in pg_stat_activity until server_lifetime.)
            await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                    $"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"), CultureInfo.InvariantCulture) == 0,
                TimeSpan.FromSeconds(10), "the connection that was out during the purge to be closed");
        }
        finally
        {
            await ClusterFixture.Cluster.ScalarAsync(0, $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        }
    }

    private async Task UseAndLeaveAsync(string database)
    {
        await using (var c = Connection("view-ddl", database: database))
        {
            await c.OpenAsync();
            await new NpgsqlCommand("SELECT 1", c).ExecuteScalarAsync();
        }

        await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                $"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND state = 'idle'"), CultureInfo.InvariantCulture) == 1,
            TimeSpan.FromSeconds(10), "the connection to sit in Poold's cache");
    }

    [Test]
    public async Task ClientsCancellingAndLeaving_NeverCancelAnotherClientsStatement()
    {
        // Same user, database and application name: every backend connection passes from client to client.
        const string app = "view-cancel-race";
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(8));
        var canceled = 0;
        var foreignCancels = new List<string>();

        // A canceller's statement is short (its cancel often comes after the statement ended: the race) or, every other
        // time, long enough that its cancel lands (the sanity check: under load a cancel can take longer than 20 ms).
        async Task CancellerAsync()
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                await using var c = Connection(app);
                await c.OpenAsync();
                await using var cmd = new NpgsqlCommand(i % 2 == 0 ? "SELECT pg_sleep(0.02)" : "SELECT pg_sleep(1)", c);
                var run = cmd.ExecuteNonQueryAsync();
                cmd.Cancel();
                try
                {
                    await run;
                }
                catch (Exception e) when ((e as PostgresException ?? e.InnerException as PostgresException)?.SqlState == "57014")
                {
                    Interlocked.Increment(ref canceled);
                }
            }
        }

        async Task WorkerAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                await using var c = Connection(app);
                await c.OpenAsync();
                for (var i = 0; i < 5; i++)
                {
                    try
                    {
                        await new NpgsqlCommand("SELECT count(*) FROM generate_series(1, 20000)", c).ExecuteScalarAsync();
                    }
                    catch (Exception e) when ((e as PostgresException ?? e.InnerException as PostgresException)?.SqlState == "57014")
                    {
                        lock (foreignCancels)
                        {
                            foreignCancels.Add(e.Message);
                        }
                    }
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => CancellerAsync()).Concat(Enumerable.Range(0, 4).Select(_ => WorkerAsync())));
        Assert.That(canceled, Is.GreaterThan(0), "the cancellers' own statements were cancelled");
        Assert.That(foreignCancels, Is.Empty, "a statement whose client sent no cancel was cancelled");
    }
}
