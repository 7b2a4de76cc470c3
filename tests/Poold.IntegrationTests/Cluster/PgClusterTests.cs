using Npgsql;

namespace Poold.IntegrationTests.Cluster;

/// <summary>The fixture itself: one primary and two replicas that really stream, and roles that really authenticate.</summary>
public class PgClusterTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    [Test]
    public async Task Replication_TwoReplicasStreamFromThePrimary()
    {
        await using var connection = new NpgsqlConnection(Cluster.ConnectionString(0).ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT application_name, state FROM pg_stat_replication ORDER BY application_name", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(string, string)>();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetString(0), reader.GetString(1)));
        }

        Assert.That(rows, Is.EqualTo(new[] { ("replica1", "streaming"), ("replica2", "streaming") }));
    }

    [Test]
    public async Task Replication_RowsWrittenOnThePrimary_AppearOnBothReplicas()
    {
        var table = "repl_" + Guid.NewGuid().ToString("N")[..8];
        await Cluster.ScalarAsync(0, $"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 1000) g");
        await Cluster.WaitForReplayAsync();
        foreach (var replica in new[] { 1, 2 })
        {
            Assert.That(await Cluster.ScalarAsync(replica, $"SELECT sum(id) FROM {table}"), Is.EqualTo(500500L), $"replica {replica}");
        }

        await Cluster.ScalarAsync(0, $"DROP TABLE {table}");
    }

    [TestCase(0, false)]
    [TestCase(1, true)]
    [TestCase(2, true)]
    public async Task Nodes_ReportTheirRole(int node, bool inRecovery) =>
        Assert.That(await Cluster.ScalarAsync(node, "SELECT pg_is_in_recovery()"), Is.EqualTo(inRecovery));

    [Test]
    public void Replica_RejectsWrites()
    {
        var e = Assert.ThrowsAsync<PostgresException>(async () => await Cluster.ScalarAsync(1, "CREATE TABLE nope (id int)"));
        Assert.That(e!.SqlState, Is.EqualTo("25006"), "read_only_sql_transaction");
    }

    [TestCase(TestRoles.ScramUser, "SCRAM-SHA-256$")]
    [TestCase(TestRoles.Md5User, "md5")]
    [TestCase(TestRoles.ClearUser, "SCRAM-SHA-256$")]
    public async Task Roles_HaveTheStoredPasswordKind(string role, string prefix) =>
        Assert.That((string)(await Cluster.ScalarAsync(0, $"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"))!, Does.StartWith(prefix));

    [TestCase(TestRoles.ScramUser)]
    [TestCase(TestRoles.Md5User)]
    [TestCase(TestRoles.ClearUser)]
    [TestCase(TestRoles.TrustUser)]
    public async Task Roles_AuthenticateWithTheirMethod(string role)
    {
        foreach (var node in new[] { 0, 1 })
        {
            await using var connection = new NpgsqlConnection(Cluster.ConnectionString(node, role).ConnectionString);
            await connection.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync(), Is.EqualTo(role));
        }
    }

    [TestCase(TestRoles.ScramUser)]
    [TestCase(TestRoles.Md5User)]
    [TestCase(TestRoles.ClearUser)]
    public void Roles_WrongPassword_Is28P01(string role)
    {
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await using var connection = new NpgsqlConnection(Cluster.ConnectionString(0, role, "wrong").ConnectionString);
            await connection.OpenAsync();
        });
        Assert.That(e!.SqlState, Is.EqualTo("28P01"));
    }

    [Test]
    public void RejectRole_Is28000()
    {
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await using var connection = new NpgsqlConnection(Cluster.ConnectionString(0, TestRoles.RejectUser).ConnectionString);
            await connection.OpenAsync();
        });
        Assert.That(e!.SqlState, Is.EqualTo("28000"));
    }

    [Test]
    public async Task SslRole_NeedsTls()
    {
        var tls = Cluster.ConnectionString(0, TestRoles.SslUser);
        tls.SslMode = SslMode.Require;
        await using (var connection = new NpgsqlConnection(tls.ConnectionString))
        {
            await connection.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", connection).ExecuteScalarAsync(), Is.True);
        }

        var e = Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await using var plain = new NpgsqlConnection(Cluster.ConnectionString(0, TestRoles.SslUser).ConnectionString);
            await plain.OpenAsync();
        });
        Assert.That(e!.SqlState, Is.EqualTo("28000"));
    }
}
