using System.Diagnostics;
using Npgsql;
using Poold.Backends;
using Poold.IntegrationTests.Support;

namespace Poold.ContainerTests;

/// <summary>
/// A replica lost without a word: cut off its network (<c>docker network disconnect</c>: no RST, no FIN, packets
/// vanish) or frozen (<c>docker pause</c>: its kernel still answers TCP, PostgreSQL never does). Poold must notice
/// through its health check's timeouts, detach the node within the health-check bound, and every session that was
/// reading on the replica must either fail over or end with an error; none may hang.
/// </summary>
[NonParallelizable]
[Category("Containers")]
public class ReplicaLossTests
{
    private const int HealthCheckPeriod = 1;
    private const int HealthCheckTimeout = 3;

    /// <summary>One period to the next check, its timeout, and slack for the failover itself on a loaded machine.</summary>
    private static readonly TimeSpan DetachBound = TimeSpan.FromSeconds(HealthCheckPeriod + HealthCheckTimeout + 4);

    /// <summary>How long a statement on a session of the lost replica may take to succeed elsewhere or fail.</summary>
    private static readonly TimeSpan SessionBound = TimeSpan.FromSeconds(15);

    [SetUp]
    public void RequireDocker()
    {
        if (DockerEnvironment.Unavailable is { } reason)
        {
            Assert.Ignore(reason);
        }
    }

    [Test]
    public Task ReplicaCutOffByNetworkDisconnect_IsDetachedWithinTheHealthCheckBound_AndNoSessionHangs() =>
        LoseReplicaAsync(t => DockerEnvironment.DockerOrFailAsync("network", "disconnect", t.Network.Name, t.Replica.Id));

    [Test]
    public Task ReplicaFrozenByDockerPause_IsDetachedWithinTheHealthCheckBound_AndNoSessionHangs() =>
        LoseReplicaAsync(t => DockerEnvironment.DockerOrFailAsync("pause", t.Replica.Id));

    private static async Task LoseReplicaAsync(Func<ContainerTopology, Task> lose)
    {
        var setUp = Stopwatch.StartNew();
        await using var topology = await ContainerTopology.StartAsync();
        await TestContext.Out.WriteLineAsync($"containers ready in {setUp.Elapsed.TotalSeconds:0.0} s");
        await using var poold = await PooldInstance.StartAsync(topology.PooldConfig(HealthCheckPeriod, HealthCheckTimeout), ssl: false);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[1].Role == NodeRole.Standby
            && poold.Host.Nodes.Current.Nodes[0].Role == NodeRole.Primary), TimeSpan.FromSeconds(30), "Poold to find the primary and the standby");

        // Each node answers inet_server_addr() with its own address on the test's network.
        var primary = await AddressOfAsync(topology.Primary.GetConnectionString());
        var replica = await AddressOfAsync(topology.Replica.GetConnectionString());
        Assert.That(replica, Is.Not.EqualTo(primary));

        // Sessions reading on the replica: idle ones, and one with a statement in flight when the replica goes.
        var idle = new List<NpgsqlConnection>();
        for (var i = 0; i < 3; i++)
        {
            var connection = await OpenAsync(poold);
            Assert.That(await AddressAsync(connection), Is.EqualTo(replica), "reads go to the replica");
            idle.Add(connection);
        }

        var busy = await OpenAsync(poold);
        Assert.That(await AddressAsync(busy), Is.EqualTo(replica));
        var inFlight = AddressAsync(busy, "SELECT host(inet_server_addr()) FROM pg_sleep(3)");

        var lost = Stopwatch.StartNew();
        await lose(topology);
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.Nodes.Current.Nodes[1].Status == NodeStatus.Down), DetachBound + TimeSpan.FromSeconds(30),
            "the health check to detach the replica");
        var detachedAfter = lost.Elapsed;
        await TestContext.Out.WriteLineAsync($"replica detached {detachedAfter.TotalSeconds:0.0} s after it was lost (bound {DetachBound.TotalSeconds:0} s)");
        Assert.That(detachedAfter, Is.LessThanOrEqualTo(DetachBound), "detached within the health-check bound");

        // Every session of the replica: a statement now either runs elsewhere or fails, within the bound.
        var outcomes = new List<string> { await OutcomeAsync(inFlight, primary) };
        foreach (var connection in idle)
        {
            outcomes.Add(await OutcomeAsync(AddressAsync(connection), primary));
        }

        await TestContext.Out.WriteLineAsync("sessions of the replica: " + string.Join(", ", outcomes));
        Assert.That(outcomes, Has.None.EqualTo("hung"), "no session hangs");
        Assert.That(outcomes, Has.None.EqualTo("still on the replica"));

        // New sessions read on the primary at once.
        await using (var fresh = await OpenAsync(poold))
        {
            Assert.That(await AddressAsync(fresh).WaitAsync(SessionBound), Is.EqualTo(primary), "a new session reads on the primary");
        }

        foreach (var connection in idle.Append(busy))
        {
            await connection.DisposeAsync().AsTask().WaitAsync(SessionBound);
        }
    }

    /// <summary>"failed over", "ended: ..." or "hung", for a statement on a session of the lost replica.</summary>
    private static async Task<string> OutcomeAsync(Task<string> statement, string primary)
    {
        try
        {
            return await statement.WaitAsync(SessionBound) == primary ? "failed over" : "still on the replica";
        }
        catch (TimeoutException)
        {
            return "hung";
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            return $"ended: {(e as PostgresException)?.SqlState ?? e.GetType().Name}";
        }
    }

    private static async Task<NpgsqlConnection> OpenAsync(PooldInstance poold)
    {
        var builder = poold.ConnectionString(ContainerTopology.User, ContainerTopology.Password, ContainerTopology.Database, SslMode.Disable);
        builder.CommandTimeout = 120; // longer than any bound here: a statement that waits this long has hung
        builder.KeepAlive = 0;
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<string> AddressAsync(NpgsqlConnection connection, string sql = "SELECT host(inet_server_addr())") =>
        (string)(await new NpgsqlCommand(sql, connection).ExecuteScalarAsync())!;

    private static async Task<string> AddressOfAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        return await AddressAsync(connection);
    }
}
