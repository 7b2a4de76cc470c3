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
