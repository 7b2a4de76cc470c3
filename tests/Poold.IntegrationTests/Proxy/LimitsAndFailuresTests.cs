using System.Net.Sockets;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Proxy;

/// <summary>Limits from pgpool.conf, and what clients see when a backend is missing.</summary>
public class LimitsAndFailuresTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static string ScramPassword => TestRoles.Password(TestRoles.ScramUser);

    [Test]
    public async Task BackendDown_ClientGets08006_AndPooldStaysUp()
    {
        var deadPort = FreePort.Get();
        await using var poold = await PooldInstance.StartAsync($"backend_hostname0 = '127.0.0.1'\nbackend_port0 = {deadPort}\nbackend_weight0 = 1\n");
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.ScramUser, ScramPassword));
            Assert.That(e!.SqlState, Is.EqualTo("08006"));
            Assert.That(e.MessageText, Does.StartWith($"could not connect to backend node 0 (127.0.0.1:{deadPort})"));
        }

        Assert.That(poold.Host.Completion.IsCompleted, Is.False, "Poold is still running");
        // A refused session lingers briefly after its FATAL so the client reads it; it then ends on its own.
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(10), "the refused sessions to end");
    }

    [Test]
    public async Task BackendTls_IsUsedWhenSslIsOn()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, ssl: true, onlyNode: 0);
        await using var connection = await poold.OpenAsync(TestRoles.SslUser, TestRoles.Password(TestRoles.SslUser));
        Assert.That(await new NpgsqlCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", connection).ExecuteScalarAsync(),
            Is.True, "the hostssl-only role got in, over TLS from Poold to the backend");
    }

    [Test]
    public async Task ManyConcurrentClients_AllQueriesSucceed()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "num_init_children = 100\nmax_pool = 2\n", ssl: false, onlyNode: 0);
        var builder = poold.ConnectionString(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User), sslMode: SslMode.Disable);
        builder.Timeout = 60;
        var errors = 0;
        long sum = 0;
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await Parallel.ForEachAsync(Enumerable.Range(0, 500), new ParallelOptions { MaxDegreeOfParallelism = 500, CancellationToken = deadline.Token },
            async (client, ct) =>
            {
                try
                {
                    await using var connection = new NpgsqlConnection(builder.ConnectionString);
                    await connection.OpenAsync(ct);
                    for (var q = 0; q < 20; q++)
                    {
                        await using var command = new NpgsqlCommand("SELECT $1::int", connection) { Parameters = { new() { Value = client } } };
                        Interlocked.Add(ref sum, (int)(await command.ExecuteScalarAsync(ct))!);
                    }
                }
                catch (Exception e) when (e is NpgsqlException or IOException or SocketException)
                {
                    Interlocked.Increment(ref errors);
                    TestContext.Out.WriteLine($"client {client}: {e.Message}");
                }
            });
        Assert.That(errors, Is.Zero);
        Assert.That(sum, Is.EqualTo(20L * (499 * 500 / 2)));
        Assert.That(poold.Host.Pool.OpenCount(0), Is.LessThanOrEqualTo(100 * 2), "no more backend connections than num_init_children × max_pool");
    }

    [Test]
    public async Task ReservedConnections_OverflowGets53300()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "num_init_children = 2\nreserved_connections = 1\n", ssl: false, onlyNode: 0);
        await using var first = await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable));
        Assert.That((e!.SqlState, e.MessageText), Is.EqualTo(("53300", "sorry, too many clients already")));
        await first.CloseAsync();
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(10), "the first session to end");
        await using var again = await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        Assert.That(await new NpgsqlCommand("SELECT 1", again).ExecuteScalarAsync(), Is.EqualTo(1));
    }

    [Test]
    public async Task NumInitChildren_ExtraClientsWaitInsteadOfFailing()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "num_init_children = 1\n", ssl: false, onlyNode: 0);
        var first = await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        var second = poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 1), TimeSpan.FromSeconds(5), "one session to run");
        Assert.That(second.IsCompleted, Is.False, "the second client waits in the listen queue");
        await first.DisposeAsync();
        await using var connection = await second;
        Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
    }

    [Test]
    public async Task ClientIdleLimit_DisconnectsAnIdleClient()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "client_idle_limit = 1\n", ssl: false, onlyNode: 0);
        await using var connection = await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(15), "the idle session to be cut off");
        await poold.WaitForLogAsync("client_idle_limit");
        Assert.That(async () => await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Throws.InstanceOf<NpgsqlException>());
    }

    [Test]
    public async Task AuthenticationTimeout_ClosesASilentClient()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "authentication_timeout = 1\n", ssl: false, onlyNode: 0);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", poold.Port);
        var buffer = new byte[1024];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var received = new List<byte>();
        int n;
        while ((n = await socket.ReceiveAsync(buffer, deadline.Token)) > 0)
        {
            received.AddRange(buffer[..n]);
        }

        Assert.That(System.Text.Encoding.UTF8.GetString([.. received]), Does.Contain("canceling authentication due to timeout"));
    }

    [Test]
    public async Task ConnectionLifeTime_ClosesIdlePooledConnections()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "connection_life_time = 1\n", ssl: false, onlyNode: 0);
        await using (var connection = await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable))
        {
            await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync();
        }

        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.IdleCount == 1), TimeSpan.FromSeconds(5), "the connection to be pooled");
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pool.IdleCount == 0 && poold.Host.Pool.OpenCount(0) == 0),
            TimeSpan.FromSeconds(10), "connection_life_time to close it");
    }
}
