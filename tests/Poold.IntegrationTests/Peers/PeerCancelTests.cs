using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Peers;

/// <summary>
/// Several Poolds behind one TCP load balancer (operations issue 21, item 2): a CancelRequest that lands on another
/// instance than the one holding the session is forwarded to it, once.
/// </summary>
public class PeerCancelTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    [Test]
    public async Task CancelSentToTheOtherPoold_CancelsTheStatement_AndIsForwardedOnce()
    {
        var portB = FreePort.Get();
        await using var a = await PooldInstance.StartAsync(Cluster, $"peer_id = 1\npeers = '2:127.0.0.1:{portB}'\n", ssl: false, onlyNode: 0);
        await using var b = await PooldInstance.StartAsync(Cluster, $"peer_id = 2\npeers = '1:127.0.0.1:{a.Port}'\nport = {portB}\n", ssl: false,
            onlyNode: 0);
        await using var client = await RawClient.ConnectAsync(a.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "peer-cancel");
        Assert.That((uint)client.BackendKey.Secret >> 24, Is.EqualTo(1u), "instance 1's id is in the secret's top byte");

        await client.SendAsync(RawClient.Query("SELECT pg_sleep(30)"));
        await Poll.UntilAsync(async () => await Cluster.ScalarAsync(0,
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'") is > 0L,
            TimeSpan.FromSeconds(10), "the statement to run");
        await client.CancelThroughAsync(portB);

        var replies = await client.ReadUntilReadyAsync(TimeSpan.FromSeconds(20));
        Assert.That(replies.Single(m => m.Code == 'E').SqlState, Is.EqualTo("57014"), "canceled through the peer");
        Assert.That(b.Log, Does.Contain("forwarded to 127.0.0.1:" + a.Port));

        // The same key again at once: forwarded no more (a second hop could only bounce back).
        await client.CancelThroughAsync(portB);
        await client.SendAsync(RawClient.Query("SELECT 1"));
        Assert.That((await client.ReadUntilReadyAsync(TimeSpan.FromSeconds(10))).Any(m => m.Code == 'E'), Is.False);
        Assert.That(b.Log.Split('\n').Count(l => l.Contains("forwarded to", StringComparison.Ordinal)), Is.EqualTo(1));
    }
}
