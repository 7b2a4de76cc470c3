using System.Globalization;
using System.Net;
using Npgsql;
using Poold.Io;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Proxy;

/// <summary>
/// The sessions' sockets are served by Poold's own engine (<see cref="EpollEngine"/>), TLS included: a session's client
/// socket and its new backend connection are registered with it while the session runs, and released when it ends.
/// Poold runs in this process, so the engine's count is Poold's.
/// </summary>
public class IoEngineTests
{
    [Test]
    public async Task ATlsSession_RunsOnPooldsEngine_ClientAndBackendSockets()
    {
        if (!SocketStreams.UseEpoll)
        {
            // Ignored rather than inconclusive, so the run's summary counts it as skipped.
            Assert.Ignore("Poold's I/O layer is off (POOLD_IO_ENGINE=dotnet, or not Linux)");
        }
        await using var poold = await PooldInstance.StartAsync(ClusterFixture.Cluster, onlyNode: 0);
        int backendPort;
        await using (var connection = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)))
        {
            Assert.That(await new NpgsqlCommand("SELECT repeat('x', 100000)", connection).ExecuteScalarAsync(), Has.Length.EqualTo(100000));

            // The server's view of the session's backend connection gives that connection's local port on Poold's side.
            backendPort = Convert.ToInt32(await new NpgsqlCommand("SELECT inet_client_port()", connection).ExecuteScalarAsync(),
                CultureInfo.InvariantCulture);
            Assert.That(ClientSockets(poold.Port), Is.EqualTo(1), "the client's socket is on the engine");
            Assert.That(SocketsFrom(backendPort), Is.EqualTo(1), "the backend connection's socket is on the engine");
        }

        // The backend connection stays in the cache; the client's socket goes with the session.
        await Poll.UntilAsync(() => Task.FromResult(ClientSockets(poold.Port) == 0), TimeSpan.FromSeconds(10),
            "the client's socket to leave the engine");
        Assert.That(SocketsFrom(backendPort), Is.EqualTo(1), "the cached backend connection stays on the engine");
    }

    [TestCase("session", false)]
    [TestCase("session", true)]
    [TestCase("transaction", false)]
    [TestCase("transaction", true)]
    public async Task AServerConnection_IsServedByItsClientsEventThread_AndMovesWithTheNextClientThatTakesIt(string poolMode, bool tls)
    {
        if (!SocketStreams.UseEpoll)
        {
            Assert.Ignore("Poold's I/O layer is off (POOLD_IO_ENGINE=dotnet, or not Linux)");
        }

        Assume.That(EpollEngine.Shared.ThreadCount, Is.GreaterThanOrEqualTo(2), "one event thread: every socket shares it");

        // One server connection: each client in turn runs a transaction block on it (in session mode, once the one before
        // has gone).
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, 0)
            + $"health_check_period = 0\nsr_check_period = 0\npool_mode = {poolMode}\ndefault_pool_size = 1\nmax_pool = 1\n", ssl: tls);
        SocketStream? first = null;
        var sawBothThreads = false;
        var backendPorts = new HashSet<int>();
        for (var i = 0; i < 12 && !(sawBothThreads && i >= 4); i++)
        {
            await using (var connection = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser),
                             sslMode: tls ? SslMode.Require : SslMode.Disable))
            {
                // Transaction mode moves a connection when a transaction block sends a second request on it (Npgsql sends
                // BEGIN ahead of the block's first statement).
                await using var transaction = await connection.BeginTransactionAsync();
                Assert.That(await new NpgsqlCommand("SELECT 1", connection, transaction).ExecuteScalarAsync(), Is.EqualTo(1));
                var backendPort = Convert.ToInt32(await new NpgsqlCommand("SELECT inet_client_port()", connection, transaction).ExecuteScalarAsync(),
                    CultureInfo.InvariantCulture);
                backendPorts.Add(backendPort);

                // One client at a time: the one socket Poold accepted on its port is this client's.
                var clientStream = Single(s => LocalPort(s) == poold.Port);
                var backendStream = Single(s => LocalPort(s) == backendPort);
                Assert.That(backendStream.SharesEventThreadWith(clientStream), Is.True, $"client {i}: its server connection is on its event thread");
                first ??= clientStream;
                sawBothThreads |= !clientStream.SharesEventThreadWith(first);
                await transaction.CommitAsync();
            }

            await Poll.UntilAsync(() => Task.FromResult(poold.Host.Sessions.Count == 0 && ClientSockets(poold.Port) == 0), TimeSpan.FromSeconds(10),
                "the session to end and give its server connection back");
        }

        Assert.That(backendPorts, Has.Count.EqualTo(1), "every client ran on the one server connection");
        Assert.That(sawBothThreads, Is.True, "clients came on both event threads, so the connection moved");
    }

    [Test]
    public async Task TransactionMode_AOneStatementTransactionLeavesTheServerConnectionWhereItIs_ABlockBringsItOver()
    {
        if (!SocketStreams.UseEpoll)
        {
            Assert.Ignore("Poold's I/O layer is off (POOLD_IO_ENGINE=dotnet, or not Linux)");
        }

        Assume.That(EpollEngine.Shared.ThreadCount, Is.GreaterThanOrEqualTo(2), "one event thread: every socket shares it");
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(ClusterFixture.Cluster, 0)
            + "health_check_period = 0\nsr_check_period = 0\npool_mode = transaction\ndefault_pool_size = 1\n", ssl: false);
        var clients = new List<NpgsqlConnection>();
        try
        {
            async Task<(NpgsqlConnection Client, SocketStream Stream)> OpenAsync(HashSet<SocketStream> known)
            {
                var client = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
                clients.Add(client);
                var stream = Single(s => LocalPort(s) == poold.Port && !known.Contains(s));
                known.Add(stream);
                return (client, stream);
            }

            static async Task<int> BlockAsync(NpgsqlConnection client)
            {
                await using var transaction = await client.BeginTransactionAsync();
                Assert.That(await new NpgsqlCommand("SELECT 1", client, transaction).ExecuteScalarAsync(), Is.EqualTo(1));
                var port = Convert.ToInt32(await new NpgsqlCommand("SELECT inet_client_port()", client, transaction).ExecuteScalarAsync(),
                    CultureInfo.InvariantCulture);
                await transaction.CommitAsync();
                return port;
            }

            var known = new HashSet<SocketStream>();
            var (first, firstStream) = await OpenAsync(known);
            var port = await BlockAsync(first);
            var backend = Single(s => LocalPort(s) == port);
            Assert.That(backend.SharesEventThreadWith(firstStream), Is.True, "the first client's block brought the connection to its thread");

            // Clients are kept open until one is on the other event thread.
            (NpgsqlConnection Client, SocketStream Stream)? other = null;
            for (var i = 0; i < 8 && other is null; i++)
            {
                var opened = await OpenAsync(known);
                if (!opened.Stream.SharesEventThreadWith(firstStream))
                {
                    other = opened;
                }
            }

            Assert.That(other, Is.Not.Null, "a client on the other event thread");
            var single = Convert.ToInt32(await new NpgsqlCommand("SELECT inet_client_port()", other!.Value.Client).ExecuteScalarAsync(),
                CultureInfo.InvariantCulture);
            Assert.That(single, Is.EqualTo(port), "the pool's one server connection");
            Assert.That(backend.SharesEventThreadWith(firstStream), Is.True, "a one-statement transaction left the connection where it was");

            Assert.That(await BlockAsync(other.Value.Client), Is.EqualTo(port));
            Assert.That(backend.SharesEventThreadWith(other.Value.Stream), Is.True, "the other client's block brought it over");
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static SocketStream Single(Func<SocketStream, bool> match)
    {
        var found = new List<SocketStream>();
        EpollEngine.Shared.Count(s =>
        {
            if (match(s))
            {
                found.Add(s);
            }

            return false;
        });
        Assert.That(found, Has.Count.EqualTo(1));
        return found[0];
    }

    /// <summary>Sockets Poold accepted on <paramref name="listenPort"/>.</summary>
    private static int ClientSockets(int listenPort) => EpollEngine.Shared.Count(s => LocalPort(s) == listenPort);

    private static int SocketsFrom(int localPort) => EpollEngine.Shared.Count(s => LocalPort(s) == localPort);

    private static int? LocalPort(SocketStream stream)
    {
        try
        {
            return (stream.Socket.LocalEndPoint as IPEndPoint)?.Port;
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
    }
}
