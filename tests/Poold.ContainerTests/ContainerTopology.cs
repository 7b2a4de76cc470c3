using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Images;
using DotNet.Testcontainers.Networks;
using Testcontainers.PostgreSql;

namespace Poold.ContainerTests;

/// <summary>
/// A primary and a streaming replica, each in a container of its own on a Docker network of the test's own (the
/// replica clones the primary by its network alias), published on loopback ports for Poold and the test.
/// </summary>
internal sealed class ContainerTopology : IAsyncDisposable
{
    public const string User = "postgres";
    public const string Password = "container-pw";
    public const string Database = "poold_test";

    private ContainerTopology(INetwork network, PostgreSqlContainer primary, PostgreSqlContainer replica)
    {
        ReplicaAddress = "";
        Network = network;
        Primary = primary;
        Replica = replica;
    }

    public INetwork Network { get; }

    public PostgreSqlContainer Primary { get; }

    public PostgreSqlContainer Replica { get; }

    /// <summary>
    /// The replica's address on the test's network, which the host reaches over the bridge. Poold uses it rather
    /// than the published port: Docker's port proxy closes its connections when the container leaves the network,
    /// which would make the loss loud; over the bridge, packets just stop.
    /// </summary>
    public string ReplicaAddress { get; private set; }

    public static async Task<ContainerTopology> StartAsync()
    {
        var network = new NetworkBuilder().WithName($"poold-test-{Guid.NewGuid():N}").Build();
        await network.CreateAsync();
        var primary = Node(network, "primary").Build();
        var replica = Node(network, "replica").WithEnvironment("POSTGRES_PRIMARY_HOST", "primary").Build();
        var topology = new ContainerTopology(network, primary, replica);
        try
        {
            await primary.StartAsync();
            await replica.StartAsync();
            var (exit, stdout, stderr) = await DockerEnvironment.DockerAsync("inspect", "-f",
                $"{{{{(index .NetworkSettings.Networks \"{network.Name}\").IPAddress}}}}", replica.Id);
            topology.ReplicaAddress = exit == 0 && stdout.Trim().Length > 0 ? stdout.Trim() : throw new InvalidOperationException($"docker inspect: {stderr}");
            return topology;
        }
        catch
        {
            await topology.DisposeAsync();
            throw;
        }
    }

    private static PostgreSqlBuilder Node(INetwork network, string alias) => new PostgreSqlBuilder()
        .WithImage(DockerEnvironment.Image)
        .WithImagePullPolicy(PullPolicy.Never)
        .WithName($"{network.Name}-{alias}")
        .WithNetwork(network)
        .WithNetworkAliases(alias)
        .WithUsername(User)
        .WithPassword(Password)
        .WithDatabase(Database);

    /// <summary>Poold's backend lines and checks: node 0 the primary (no reads), node 1 the replica (all reads, over the bridge).</summary>
    public string PooldConfig(int healthCheckPeriod, int healthCheckTimeout) => $"""
        backend_hostname0 = '127.0.0.1'
        backend_port0 = {Primary.GetMappedPublicPort(5432)}
        backend_weight0 = 0
        backend_hostname1 = '{ReplicaAddress}'
        backend_port1 = 5432
        backend_weight1 = 1
        health_check_period = {healthCheckPeriod}
        health_check_timeout = {healthCheckTimeout}
        health_check_max_retries = 0
        health_check_user = '{User}'
        health_check_password = '{Password}'
        health_check_database = '{Database}'
        sr_check_period = 1
        sr_check_user = '{User}'
        sr_check_password = '{Password}'
        sr_check_database = '{Database}'
        search_primary_node_timeout = 60
        connect_timeout = 2000

        """;

    public async ValueTask DisposeAsync()
    {
        // A paused container cannot be stopped: unpause first (harmless when it is running).
        await DockerEnvironment.DockerAsync("unpause", Replica.Name.TrimStart('/'));
        await Replica.DisposeAsync();
        await Primary.DisposeAsync();
        await Network.DeleteAsync();
    }
}
