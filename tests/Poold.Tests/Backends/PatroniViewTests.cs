using Poold.Backends;

namespace Poold.Tests.Backends;

public class PatroniViewTests
{
    // As Patroni 3.0.2 answers GET /cluster (taken from a running cluster), during a failover: the old leader stopped.
    private const string DuringFailover = """
        {"members": [{"name": "n0", "role": "replica", "state": "stopped", "api_url": "http://127.0.0.1:18008/patroni", "host": "127.0.0.1",
        "port": 16432, "lag": "unknown"}, {"name": "n1", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:18009/patroni",
        "host": "127.0.0.1", "port": 16433, "timeline": 1, "lag": 0}, {"name": "n2", "role": "leader", "state": "running",
        "api_url": "http://127.0.0.1:18010/patroni", "host": "127.0.0.1", "port": 16434, "timeline": 1, "tags": {"noloadbalance": true}}]}
        """;

    [Test]
    public void ParseCluster_ReadsRolesStatesAddressesAndTags()
    {
        var members = PatroniMember.ParseCluster(DuringFailover);
        Assert.That(members.Select(m => (m.Name, m.IsLeader, m.IsRunning, m.Port, m.NoLoadBalance)), Is.EqualTo(new[]
        {
            ("n0", false, false, 16432, false),
            ("n1", false, true, 16433, false),
            ("n2", true, true, 16434, true),
        }));
    }

    [TestCase("streaming", true)]
    [TestCase("running", true)]
    [TestCase("starting", false)]
    [TestCase("crashed", false)]
    public void IsRunning_FollowsTheStateWord(string state, bool running) =>
        Assert.That(new PatroniMember("m", "replica", state, "h", 1, false, false).IsRunning, Is.EqualTo(running));

    [Test]
    public void ALeaderThatIsNotRunning_IsNoLeader() =>
        Assert.That(new PatroniMember("m", "leader", "stopped", "h", 1, false, false).IsLeader, Is.False);

    [TestCase("""{"members": [{"name": "a", "host": "h", "port": 1, "tags": {"noloadbalance": "true", "nofailover": "on"}}]}""", true)]
    [TestCase("""{"members": [{"name": "a", "host": "h", "port": 1, "tags": {"noloadbalance": false}}]}""", false)]
    public void Tags_MayBeBooleansOrWords(string json, bool tagged)
    {
        var member = PatroniMember.ParseCluster(json).Single();
        Assert.That((member.NoLoadBalance, member.NoFailover), Is.EqualTo((tagged, tagged)));
    }

    [Test]
    public void Is_MatchesTheConfiguredNodeByHostAndPort()
    {
        var member = new PatroniMember("m", "replica", "running", "127.0.0.1", 5432, false, false);
        Assert.That((member.Is("127.0.0.1", 5432), member.Is("127.000.000.001", 5432), member.Is("127.0.0.1", 5433), member.Is("db1", 5432)),
            Is.EqualTo((true, true, false, false)));
    }

    [TestCase("not json", "not JSON")]
    [TestCase("""{"nodes": []}""", "no \"members\" array")]
    [TestCase("""{"members": [{"host": "h", "port": 1}]}""", "a member without a name")]
    [TestCase("""{"members": [{"name": "a", "port": 1}]}""", "member \"a\" has no host")]
    [TestCase("""{"members": [{"name": "a", "host": "h", "port": "x"}]}""", "member \"a\" has no port")]
    public void ParseCluster_SaysWhatIsWrong(string json, string message) =>
        Assert.That(() => PatroniMember.ParseCluster(json), Throws.InstanceOf<FormatException>().With.Message.StartsWith(message));
}
