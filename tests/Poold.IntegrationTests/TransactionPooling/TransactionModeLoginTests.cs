using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.TransactionPooling;

/// <summary>
/// Logins in transaction mode: once a client with a given startup state and credential has logged in to a pool
/// through a server, the next ones are answered from what it was told and need no server connection, so a login
/// never waits behind busy transactions; a credential the server has not accepted still goes to the server.
/// </summary>
public class TransactionModeLoginTests
{
    private static Task<PooldInstance> StartAsync(string extra) =>
        PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, 0)
                                 + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\n" + extra, ssl: false);

    [Test]
    public async Task Login_WhileEveryServerConnectionIsBusy_IsAnsweredFromThePool_AsTheFirstWas()
    {
        // One server connection, and a wait shorter than the test's timeouts: a login that needed it would fail.
        await using var poold = await StartAsync("default_pool_size = 1\nquery_wait_timeout = 2\n");
        await using var first = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txlogin-app");

        var builder = poold.ConnectionString(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        builder.Pooling = false;
        builder.ApplicationName = "txlogin-holder";
        await using var holder = new NpgsqlConnection(builder.ConnectionString);
        await holder.OpenAsync();
        await using var tx = await holder.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", holder, tx).ExecuteScalarAsync();

        // The only server connection is inside the holder's transaction; this login must not need it.
        await using var second = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txlogin-app");
        Assert.That(second.LoginParameters, Is.EquivalentTo(first.LoginParameters));
        Assert.That(second.LoginParameters["application_name"], Is.EqualTo("txlogin-app"));
        Assert.That(second.LoginParameters, Does.ContainKey("server_version"));

        // Its first statement waits for the connection like any transaction, and runs with the client's own state.
        await second.SendAsync(RawClient.Query("SELECT current_setting('application_name')"));
        await tx.CommitAsync();
        var reply = await second.ReadUntilReadyAsync(TimeSpan.FromSeconds(10));
        Assert.That(reply.Any(m => m.Code == 'E'), Is.False, string.Join(" ", reply));
        Assert.That(reply.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("txlogin-app"));
    }

    [Test]
    public async Task Login_WithAnotherStartupState_IsToldItsOwnParameters()
    {
        await using var poold = await StartAsync("default_pool_size = 1\n");
        await using var first = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txlogin-one");
        await using var second = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txlogin-two");
        await using var third = await RawClient.ConnectAsync(poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "txlogin-one");

        Assert.That(first.LoginParameters["application_name"], Is.EqualTo("txlogin-one"));
        Assert.That(second.LoginParameters["application_name"], Is.EqualTo("txlogin-two"));
        Assert.That(third.LoginParameters["application_name"], Is.EqualTo("txlogin-one"));
    }

    [Test]
    public async Task PassThroughLogin_WithAWrongPassword_IsRefusedByTheServer_EvenAfterARightOne()
    {
        // No pool_passwd: the client's password goes to the server (pass-through). A right one has logged in, so the
        // pool knows what a login is told; a wrong one must still be refused, by the server.
        await using var poold = await StartAsync("default_pool_size = 2\n");
        var builder = poold.ConnectionString(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        builder.Pooling = false;
        await using (var right = new NpgsqlConnection(builder.ConnectionString))
        {
            await right.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT 5", right).ExecuteScalarAsync(), Is.EqualTo(5));
        }

        await using (var again = new NpgsqlConnection(builder.ConnectionString))
        {
            await again.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT 6", again).ExecuteScalarAsync(), Is.EqualTo(6));
        }

        // No type loading: the open is the login alone, with no first query that would take a server connection.
        builder.Password = "not-" + TestRoles.Password(TestRoles.ScramUser);
        var sources = new NpgsqlDataSourceBuilder(builder.ConnectionString);
        sources.ConfigureTypeLoading(t => t.EnableTypeLoading(false));
        await using var source = sources.Build();
        var error = Assert.ThrowsAsync<PostgresException>(async () => await source.OpenConnectionAsync());
        Assert.That(error!.SqlState, Is.EqualTo("28P01"));
    }
}
