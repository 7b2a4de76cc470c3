using Poold.IntegrationTests.Cluster;

namespace Poold.IntegrationTests;

/// <summary>Starts the run-wide cluster (primary + 2 replicas) once for all integration tests, and always stops it.</summary>
[SetUpFixture]
public sealed class ClusterFixture
{
    private static PgCluster? _cluster;

    internal static PgCluster Cluster => _cluster ?? throw new InvalidOperationException("the cluster fixture did not start");

    [OneTimeSetUp]
    public async Task StartCluster()
    {
        Console.CancelKeyPress += (_, _) => PgCluster.StopAllImmediately();
        _cluster = await PgCluster.StartAsync(replicas: 2);
    }

    [OneTimeTearDown]
    public async Task StopCluster()
    {
        if (Poold.Io.SocketStreams.UseEpoll)
        {
            // The I/O layer's watchdog: wake-ups it had to give over the whole run (each is also a warning in that host's log).
            await TestContext.Progress.WriteLineAsync($"I/O layer watchdog: {Poold.Io.EpollEngine.Shared.LostWakeups} lost wake-up(s) in this run");
        }

        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
