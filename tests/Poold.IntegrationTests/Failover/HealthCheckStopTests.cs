using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Poold.Backends;
using Poold.Hosting;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Failover;

/// <summary>
/// A health check under way when Poold stops: the stop cuts it short (it closes the check's socket), and that must not
/// read as a failed check. It did: with health_check_max_retries = 0 the node was failed over while a smart stop was
/// still draining its sessions, and the sessions on the primary ended with 57P01 ("primary node changed").
/// </summary>
public class HealthCheckStopTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    [Test]
    public async Task AHealthCheckCutShortByTheStop_IsNotAFailure_AndDetachesNothing()
    {
        // Node 1 accepts connections and never answers, as a frozen server does: its health check waits for the timeout.
        using var hung = new TcpListener(IPAddress.Loopback, 0);
        hung.Start();
        var accepted = new ConcurrentQueue<Socket>();
        using var stopAccepting = new CancellationTokenSource();
        var acceptLoop = Task.Run(async () =>
        {
            while (!stopAccepting.IsCancellationRequested)
            {
                accepted.Enqueue(await hung.AcceptSocketAsync(stopAccepting.Token));
            }
        });
        var hungPort = ((IPEndPoint)hung.LocalEndpoint).Port;
        try
        {
            var poold = await PooldInstance.StartAsync(
                PooldInstance.BackendLines(Cluster, onlyNode: 0)
                + string.Create(CultureInfo.InvariantCulture, $"backend_hostname1 = '127.0.0.1'\nbackend_port1 = {hungPort}\nbackend_weight1 = 1\n")
                + "health_check_period = 1\nhealth_check_timeout = 60\nhealth_check_max_retries = 0\nhealth_check_user = '" + TestRoles.TrustUser
                + "'\nsr_check_period = 0\nload_balance_mode = off\n", ssl: false);
            await using (poold)
            {
                await Poll.UntilAsync(() => Task.FromResult(!accepted.IsEmpty), TimeSpan.FromSeconds(30), "a health check of the hung node to start");
                Assert.That(poold.Host.Nodes.Current.Nodes[1].Status, Is.Not.EqualTo(NodeStatus.Down), "the check is still waiting");

                // The stop disposes the node monitor, which waits for its checks: any failover the cut-short check caused
                // has happened when this returns.
                await poold.Host.StopAsync(StopMode.Fast).WaitAsync(TimeSpan.FromSeconds(30));
                Assert.That(poold.Host.Nodes.Current.Nodes[1].Status, Is.Not.EqualTo(NodeStatus.Down), poold.Log);
                Assert.That(poold.Log, Does.Not.Contain("health check failed"));
                Assert.That(poold.Log, Does.Not.Contain("failover: detaching node"));
            }
        }
        finally
        {
            await stopAccepting.CancelAsync();
            hung.Stop();
            await Task.WhenAny(acceptLoop);
            foreach (var socket in accepted)
            {
                socket.Dispose();
            }
        }
    }
}
