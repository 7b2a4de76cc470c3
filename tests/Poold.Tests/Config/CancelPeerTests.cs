using Poold.Config;
using Poold.Sessions;

namespace Poold.Tests.Config;

public class CancelPeerTests
{
    [TestCase("2:10.0.0.12:9999", 2, "10.0.0.12", 9999)]
    [TestCase("255:db-proxy.example:5432", 255, "db-proxy.example", 5432)]
    [TestCase("3:[::1]:9999", 3, "::1", 9999)]
    public void TryParse_ReadsIdHostAndPort(string text, int id, string host, int port) =>
        Assert.That(CancelPeer.TryParse(text), Is.EqualTo(new CancelPeer(id, host, port)));

    [TestCase("10.0.0.12:9999")]
    [TestCase("0:h:9999")]
    [TestCase("256:h:9999")]
    [TestCase("2::9999")]
    [TestCase("2:h:0")]
    [TestCase("2:h:port")]
    public void TryParse_RefusesWhatIsNotIdHostPort(string text) => Assert.That(CancelPeer.TryParse(text), Is.Null);

    [Test]
    public void Secrets_CarryThePeerId_AndStayRandomBelowIt()
    {
        var secrets = Enumerable.Range(0, 200).Select(_ => PeerCancels.NewSecret(200)).ToList();
        Assert.That(secrets.Select(PeerCancels.PeerOf).Distinct(), Is.EqualTo(new[] { 200 }));
        Assert.That(secrets.Select(s => s & 0xFFFFFF).Distinct().Count(), Is.GreaterThan(190), "24 random bits");
    }

    [Test]
    public void ForwardTarget_OnlyForAnotherListedPeer_AndOnceForTheSameKey()
    {
        var settings = TestSettings.Parse("peer_id = 1\npeers = '2:127.0.0.1:6432,3:127.0.0.1:6433'");
        var peers = new PeerCancels(TimeProvider.System);
        var ofPeer2 = (2 << 24) | 77;
        Assert.That(peers.ForwardTarget(settings, 1234, ofPeer2), Is.EqualTo(new CancelPeer(2, "127.0.0.1", 6432)));
        Assert.That(peers.ForwardTarget(settings, 1234, ofPeer2), Is.Null, "the same key again within seconds is not forwarded");
        Assert.That(peers.ForwardTarget(settings, 1234, (1 << 24) | 77), Is.Null, "our own key is never forwarded");
        Assert.That(peers.ForwardTarget(settings, 1234, (9 << 24) | 77), Is.Null, "an unlisted peer");
        Assert.That(peers.ForwardTarget(TestSettings.Parse(""), 1234, ofPeer2), Is.Null, "peering off");
    }
}
