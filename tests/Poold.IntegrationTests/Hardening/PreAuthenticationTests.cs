using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Npgsql;
using Poold.Config;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Hardening;

/// <summary>
/// Connections that have not authenticated: they hold no session slot, have their own cap and deadline, and cannot
/// lock real clients out (hardening issue, item 8). The same for the PCP port.
/// </summary>
public class PreAuthenticationTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static string ScramPassword => TestRoles.Password(TestRoles.ScramUser);

    private static async Task<List<Socket>> ConnectSilentAsync(int port, int count)
    {
        var sockets = new List<Socket>();
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync("127.0.0.1", port);
            sockets.Add(socket);
        }

        return sockets;
    }

    private static void DisposeAll(List<Socket> sockets)
    {
        foreach (var socket in sockets)
        {
            socket.Dispose();
        }
    }

    [Test]
    public async Task SilentSockets_AsManyAsNumInitChildren_DoNotLockOutALogin()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "num_init_children = 4\nauthentication_timeout = 0\n", onlyNode: 0);
        var silent = await ConnectSilentAsync(poold.Port, 4);
        try
        {
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.UnadmittedConnections == 4), TimeSpan.FromSeconds(10),
                "Poold to have accepted the silent sockets");
            var builder = poold.ConnectionString(TestRoles.ScramUser, ScramPassword);
            builder.Timeout = 5;
            var watch = Stopwatch.StartNew();
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "the login was prompt");
            Assert.That((poold.Host.ActiveSessions, poold.Host.UnadmittedConnections), Is.EqualTo((1, 4)),
                "the login holds the only slot taken; the silent sockets hold none");
        }
        finally
        {
            DisposeAll(silent);
        }
    }

    [Test]
    public async Task Cancel_WithEverySlotTaken_StillReachesTheQuery()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "num_init_children = 1\n", ssl: false, onlyNode: 0);
        await using var connection = await poold.OpenAsync(TestRoles.ScramUser, ScramPassword, sslMode: SslMode.Disable);
        await using var command = new NpgsqlCommand("SELECT pg_sleep(30)", connection);
        var watch = Stopwatch.StartNew();
        var running = command.ExecuteNonQueryAsync();
        // As the servers' superuser: another role's query text is hidden from an unprivileged one.
        await Poll.UntilAsync(async () => await Cluster.ScalarAsync(0,
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'") is > 0L,
            TimeSpan.FromSeconds(10), "the query to be running");
        Assert.That(poold.Host.ActiveSessions, Is.EqualTo(1), "the only slot is taken");
        command.Cancel();
        var e = Assert.ThrowsAsync<OperationCanceledException>(async () => await running);
        Assert.That(e!.InnerException, Is.InstanceOf<PostgresException>().With.Property("SqlState").EqualTo("57014"), "query_canceled");
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "cancelled, not run to the end");
    }

    [Test]
    public async Task UnauthenticatedBeyondTheCap_AreRefusedWith53300_BeforeAnyTlsHandshake()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "max_unauthenticated_connections = 3\nauthentication_timeout = 0\n", onlyNode: 0);
        var silent = await ConnectSilentAsync(poold.Port, 3);
        try
        {
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.UnadmittedConnections == 3), TimeSpan.FromSeconds(10),
                "Poold to have accepted the silent sockets");
            Assert.That(await RefusedAsync(poold.Port), Is.EqualTo("E:53300"));
        }
        finally
        {
            DisposeAll(silent);
        }

        await Poll.UntilAsync(() => Task.FromResult(poold.Host.UnadmittedConnections == 0), TimeSpan.FromSeconds(10), "the silent sockets to be gone");
        await using var connection = await poold.OpenAsync(TestRoles.ScramUser, ScramPassword);
        Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
    }

    [Test]
    public async Task ReservedConnections_RefusesBeforeTheTlsHandshake()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "num_init_children = 2\nreserved_connections = 1\n", onlyNode: 0);
        await using var first = await poold.OpenAsync(TestRoles.ScramUser, ScramPassword);
        Assert.That(await RefusedAsync(poold.Port), Is.EqualTo("E:53300"));
    }

    /// <summary>SSLRequest (Poold has TLS on): a client to be refused gets 'N', then 53300 for its startup packet.</summary>
    private static async Task<string> RefusedAsync(int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync("127.0.0.1", port, deadline.Token);
        await socket.SendAsync(RawPackets.SslRequest(), deadline.Token);
        var answer = new byte[1];
        Assert.That(await RawPackets.ReadExactlyAsync(socket, answer, deadline.Token), Is.True, "an answer to SSLRequest");
        Assert.That((char)answer[0], Is.EqualTo('N'), "no TLS handshake for a client that is refused");
        await socket.SendAsync(RawPackets.Startup(TestRoles.ScramUser, PgCluster.TestDatabase), deadline.Token);
        return await RawPackets.ReadOutcomeAsync(socket, deadline.Token);
    }

    [Test]
    public async Task AuthenticationTimeoutZero_StillEndsASilentConnection()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "authentication_timeout = 0\nunauthenticated_timeout = 1\n", ssl: false,
            onlyNode: 0);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", poold.Port);
        Assert.That(await RawPackets.IsClosedByServerAsync(socket, TimeSpan.FromSeconds(15)), Is.True, "closed after unauthenticated_timeout");
        await poold.WaitForLogAsync("unauthenticated_timeout = 1s");
    }

    [Test]
    public async Task Pcp_SilentConnectionsBeyondTheCap_AreClosed_AndNodeInfoWorks()
    {
        const string user = "pcpadmin";
        const string password = "pcp-pass";
        await using var poold = await PooldInstance.StartAsync(
            PooldInstance.BackendLines(Cluster, onlyNode: 0) + "pcp_max_connections = 4\npcp_authentication_timeout = 3\n", ssl: false,
            new Dictionary<string, string> { ["pcp.conf"] = $"{user}:{Poold.Auth.Md5Password.PcpHash(password)}\n" });
        var pcpPort = poold.Host.Settings.Get(Params.PcpPort);
        var silent = await ConnectSilentAsync(pcpPort, 4);
        var extra = new List<Socket>();
        try
        {
            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Pcp!.OpenConnections == 4), TimeSpan.FromSeconds(10),
                "the PCP port to have accepted the silent sockets");
            extra = await ConnectSilentAsync(pcpPort, 20);
            foreach (var socket in extra)
            {
                Assert.That(await RawPackets.IsClosedByServerAsync(socket, TimeSpan.FromSeconds(2)), Is.True, "a connection beyond the cap is closed at once");
            }

            Assert.That(poold.Host.Pcp!.OpenConnections, Is.EqualTo(4));
            foreach (var socket in silent)
            {
                Assert.That(await RawPackets.IsClosedByServerAsync(socket, TimeSpan.FromSeconds(10)), Is.True,
                    "an unauthenticated connection is closed after pcp_authentication_timeout");
            }
        }
        finally
        {
            DisposeAll(silent);
            DisposeAll(extra);
        }

        var passFile = Path.Combine(poold.Directory, "pcppass");
        await File.WriteAllTextAsync(passFile, $"*:*:{user}:{password}\n");
        File.SetUnixFileMode(passFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "pcp.dll"), "node-info", "-h", "127.0.0.1",
                     "-p", pcpPort.ToString(CultureInfo.InvariantCulture), "-U", user, "-w", "-n", "0"])
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["PCPPASSFILE"] = passFile;
        var (code, stdout, stderr) = await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(60));
        Assert.That((code, stderr), Is.EqualTo((0, "")));
        Assert.That(stdout, Does.StartWith($"127.0.0.1 {Cluster.Nodes[0].Port} "));
    }
}
