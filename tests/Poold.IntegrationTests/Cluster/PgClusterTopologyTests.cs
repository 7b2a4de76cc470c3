using Npgsql;

namespace Poold.IntegrationTests.Cluster;

/// <summary>Kill, restart and promote, on a cluster of its own so the shared one is never disturbed.</summary>
[NonParallelizable]
public class PgClusterTopologyTests
{
    [Test]
    public async Task KillPrimary_PromoteReplica_ReplicaAcceptsWritesAndNodesRestart()
    {
        await using var cluster = await PgCluster.StartAsync(replicas: 1);
        await cluster.KillNodeAsync(0);
        Assert.That(cluster.Nodes[0].Running, Is.False);
        var down = Assert.ThrowsAsync<NpgsqlException>(async () => await cluster.ScalarAsync(0, "SELECT 1"));
        Assert.That(down, Is.Not.Null);

        await cluster.PromoteAsync(1);
        Assert.That(await cluster.ScalarAsync(1, "SELECT pg_is_in_recovery()"), Is.False);
        await cluster.ScalarAsync(1, "CREATE TABLE after_failover (id int)");
        Assert.That(await cluster.ScalarAsync(1, "SELECT count(*) FROM after_failover"), Is.EqualTo(0L));

        await cluster.StopNodeAsync(1);
        await cluster.StartNodeAsync(1);
        Assert.That(await cluster.ScalarAsync(1, "SELECT to_regclass('after_failover') IS NOT NULL"), Is.True, "the write survived a restart");
    }
}
