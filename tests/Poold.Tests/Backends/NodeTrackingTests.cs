using Poold.Backends;
using Poold.Config;

namespace Poold.Tests.Backends;

public class NodeTrackingTests
{
    private static PooldSettings Settings(string text) => TestSettings.Parse(text);

    private static NodeRegistry Registry() => new(Settings("""
        backend_hostname0 = 'db0'
        backend_port0 = 5432
        backend_data_directory0 = '/data/0'
        backend_hostname1 = 'db1'
        backend_port1 = 5433
        backend_data_directory1 = '/data/1'
        backend_hostname2 = 'db2'
        backend_port2 = 5434
        backend_flag2 = 'DISALLOW_TO_FAILOVER'
        """), TimeProvider.System);

    [Test]
    public void StatusFile_RoundTripsPgpoolsFormat_AndIgnoresAFileWithoutUp()
    {
        var dir = Directory.CreateTempSubdirectory("poold-status-").FullName;
        try
        {
            var path = Path.Combine(dir, NodeStatusFile.FileName);
            var registry = Registry();
            registry.Detach(1);
            NodeStatusFile.Write(path, registry.Current);
            Assert.That(File.ReadAllText(path), Is.EqualTo("up\ndown\nup\n"));
            Assert.That(NodeStatusFile.Read(path), Is.EqualTo(new[] { NodeStatus.Up, NodeStatus.Down, NodeStatus.Up }));

            File.WriteAllText(path, "DOWN\ndown\n");
            Assert.That(NodeStatusFile.Read(path), Is.Null, "no node up: bogus, as pgpool-II treats it");
            Assert.That(NodeStatusFile.Read(Path.Combine(dir, "absent")), Is.Null);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void Restore_KeepsDownNodesDown_AndMovesThePrimaryOffADownNode()
    {
        var registry = Registry();
        registry.Restore([NodeStatus.Down, NodeStatus.Up, NodeStatus.Up]);
        Assert.That(registry.Current.Nodes[0].Status, Is.EqualTo(NodeStatus.Down));
        Assert.That(registry.Current.PrimaryNodeId, Is.EqualTo(1));
    }

    [Test]
    public void Registry_RaisesChangedForStatusAndPrimaryChanges()
    {
        var registry = Registry();
        var changes = 0;
        registry.Changed += _ => changes++;
        registry.Detach(1);
        registry.Detach(1);
        registry.Attach(1);
        registry.SetPrimary(2);
        Assert.That(changes, Is.EqualTo(3), "detaching a down node changes nothing");
        Assert.That(registry.Current.Nodes[0].Role, Is.EqualTo(NodeRole.Standby));
        Assert.That(registry.Detach(9), Does.StartWith("invalid node ID"));
    }

    [Test]
    public void TryDetach_FromManyThreadsAtOnce_SucceedsForExactlyOne()
    {
        for (var round = 0; round < 50; round++)
        {
            var registry = Registry();
            using var start = new Barrier(4);
            var winners = 0;
            var threads = Enumerable.Range(0, 4).Select(_ => new Thread(() =>
            {
                start.SignalAndWait();
                if (registry.TryDetach(1))
                {
                    Interlocked.Increment(ref winners);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.That(winners, Is.EqualTo(1), $"round {round}: one failover per failure");
            Assert.That(registry.Current.Nodes[1].Status, Is.EqualTo(NodeStatus.Down));
        }
    }

    [Test]
    public void FailoverCommand_PlaceholdersAsPgpool()
    {
        var nodes = Registry().Current.Nodes;
        var command = NodeMonitor.Placeholders("f %d %h %p %D %m %H %M %P %r %R %N %S %% %x", nodes[1], nodes[0], nodes[0], nodes[0]);
        Assert.That(command, Is.EqualTo("f 1 db1 5433 /data/1 0 db0 0 0 5432 /data/0 db0 5432 % %x"));
        Assert.That(NodeMonitor.Placeholders("%m %H %r", nodes[1], null, null, null), Is.EqualTo("-1  "));
    }

    [TestCase("0/3000148", 0x3000148UL)]
    [TestCase("1/0", 0x100000000UL)]
    [TestCase("A/FF", 0xA000000FFUL)]
    [TestCase("", 0UL)]
    [TestCase(null, 0UL)]
    public void Lsn_IsParsedExactly(string? text, ulong expected) => Assert.That(NodeMonitor.ParseLsn(text), Is.EqualTo(expected));

    [Test]
    public void LaggingReplicas_GetNoBalancedReads()
    {
        var settings = Settings("""
            backend_hostname0 = 'db0'
            backend_port0 = 5432
            backend_weight0 = 0
            backend_hostname1 = 'db1'
            backend_port1 = 5433
            backend_weight1 = 1
            backend_hostname2 = 'db2'
            backend_port2 = 5434
            backend_weight2 = 1
            """);
        var registry = new NodeRegistry(settings, TimeProvider.System);
        registry.UpdateReplication(1, new NodeReplication("standby", 1_000_000, "streaming", "async", Lagging: true));
        var balancer = new Poold.Routing.LoadBalancer(settings);
        var random = new Random(7);
        for (var i = 0; i < 50; i++)
        {
            Assert.That(balancer.Choose(registry.Current, "db", null, random).NodeId, Is.EqualTo(2));
        }
    }
}
