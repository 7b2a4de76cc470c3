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
        Assume.That(SocketStreams.UseEpoll, Is.True, "POOLD_IO_ENGINE=dotnet");
        await using var poold = await PooldInstance.StartAsync(ClusterFixture.Cluster, onlyNode: 0);
        var before = EpollEngine.Shared.Registered;
        await using (var connection = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)))
        {
            Assert.That(await new NpgsqlCommand("SELECT repeat('x', 100000)", connection).ExecuteScalarAsync(), Has.Length.EqualTo(100000));
            Assert.That(EpollEngine.Shared.Registered - before, Is.GreaterThanOrEqualTo(2), "the client's socket and a new backend connection");
        }

        // The backend connection stays in the cache; the client's socket goes with the session.
        await Poll.UntilAsync(() => Task.FromResult(EpollEngine.Shared.Registered - before <= 1), TimeSpan.FromSeconds(10),
            "the client's socket to leave the engine");
    }
}
