using System.Text;
using Poold.Auth;
using Poold.Backends;
using Poold.Config;
using Poold.Pcp;

namespace Poold.Tests.Pcp;

/// <summary>PCP framing and records against the byte sequences captured between pgpool-II 4.3.5 and its tools (compat Appendix C).</summary>
public class PcpPacketTests
{
    private static byte[] Bytes(params object[] parts)
    {
        var bytes = new List<byte>();
        foreach (var part in parts)
        {
            switch (part)
            {
                case string s:
                    bytes.AddRange(Encoding.ASCII.GetBytes(s));
                    break;
                case int b:
                    bytes.Add((byte)b);
                    break;
            }
        }

        return [.. bytes];
    }

    [Test]
    public void Md5Exchange_MatchesTheCapturedLogin()
    {
        var stored = Md5Password.PcpHash("pcppass");
        Assert.That(stored, Is.EqualTo("0d0e5266f9ff6a4235a45222acf90cbb"));
        Assert.That(Md5Password.Hash(stored, "pcpadmin")[3..], Is.EqualTo("1b8b3b27f78c40852d861a577971e03c"));
        Assert.That(Md5Password.SaltedResponse(Md5Password.Hash(stored, "pcpadmin"), [0xd1, 0xb1, 0xfc, 0xea])[3..],
            Is.EqualTo("6c8b67a166bf8aa0e594e339d0c2b0b1"));
        Assert.That(Md5Password.SaltedResponse(Md5Password.Hash(stored, "pcpadmin"), [0x54, 0xe4, 0x12, 0x3e])[3..],
            Is.EqualTo("08af05fd69b8066a8069fe0bbcc0e621"));
    }

    [Test]
    public void Packets_AreFramedAsPgpoolFramesThem()
    {
        Assert.That(PcpPacket.Strings((byte)'R', "pcpadmin", "6c8b67a166bf8aa0e594e339d0c2b0b1"),
            Is.EqualTo(Bytes(0x52, 0, 0, 0, 0x2e, "pcpadmin", 0, "6c8b67a166bf8aa0e594e339d0c2b0b1", 0)));
        Assert.That(PcpPacket.Strings((byte)'r', "AuthenticationOK"), Is.EqualTo(Bytes(0x72, 0, 0, 0, 0x15, "AuthenticationOK", 0)));
        Assert.That(PcpPacket.Strings((byte)'l', "CommandComplete", "2"), Is.EqualTo(Bytes(0x6c, 0, 0, 0, 0x16, "CommandComplete", 0, "2", 0)));
        Assert.That(PcpPacket.Strings((byte)'i', "ArraySize", "1"), Is.EqualTo(Bytes(0x69, 0, 0, 0, 0x10, "ArraySize", 0, "1", 0)));
        Assert.That(PcpPacket.BinaryArraySize((byte)'b', 152), Is.EqualTo(Bytes(0x62, 0, 0, 0, 0x12, "ArraySize", 0, 0, 0, 0, 0x98)));
        Assert.That(PcpPacket.Frame((byte)'X', []), Is.EqualTo(Bytes(0x58, 0, 0, 0, 4)));
    }

    [Test]
    public void ErrorPackets_CarryPostgresStyleFields()
    {
        var packet = PcpPacket.Error("ERROR", "informing node info failed", "invalid node ID : 5");
        Assert.That((char)packet[0], Is.EqualTo('E'));
        var fields = PcpPacket.ErrorFields(packet.AsSpan(5));
        Assert.That((fields['S'], fields['C'], fields['M'], fields['D']), Is.EqualTo(("ERROR", "XX000", "informing node info failed", "invalid node ID : 5")));
        Assert.That(packet[^1], Is.Zero);
    }

    [Test]
    public async Task Reader_RejectsOutOfBoundLengths_AsPgpoolDoes()
    {
        using var tooLong = new MemoryStream(Bytes(0x49, 0, 0, 1, 0x30));
        var e = Assert.ThrowsAsync<PcpProtocolException>(async () => await PcpPacket.ReadAsync(tooLong, PcpPacket.MaxRequestLength, CancellationToken.None));
        Assert.That(e!.Length, Is.EqualTo(304));
        using var good = new MemoryStream(Bytes(0x49, 0, 0, 0, 6, "1", 0));
        var packet = await PcpPacket.ReadAsync(good, PcpPacket.MaxRequestLength, CancellationToken.None);
        Assert.That(packet!.Value.Tag, Is.EqualTo((byte)'I'));
        Assert.That(PcpPacket.SplitStrings(packet.Value.Body), Is.EqualTo(new[] { "1" }));
        using var empty = new MemoryStream();
        Assert.That(await PcpPacket.ReadAsync(empty, PcpPacket.MaxRequestLength, CancellationToken.None), Is.Null);
    }

    private static NodeSnapshot TwoNodes()
    {
        var settings = TestSettings.Parse("""
            backend_hostname0 = '127.0.0.1'
            backend_port0 = 35432
            backend_weight0 = 1
            backend_hostname1 = '127.0.0.1'
            backend_port1 = 35433
            backend_weight1 = 1
            """);
        return new NodeRegistry(settings, TimeProvider.System).Current;
    }

    [Test]
    public void NodeInfo_HasThe43AndThe44Layouts()
    {
        var nodes = TwoNodes();
        var v43 = NodeReport.NodeInfoFields(nodes.Nodes[1], nodes, reachable: true, v44: false);
        Assert.That(v43, Has.Count.EqualTo(12));
        Assert.That(v43.Take(8), Is.EqualTo(new[] { "127.0.0.1", "35433", "2", "0", "up", "1073741823.500000", "3", "unknown" }));
        var v44 = NodeReport.NodeInfoFields(nodes.Nodes[1], nodes, reachable: false, v44: true);
        Assert.That(v44, Has.Count.EqualTo(13));
        Assert.That((v44[4], v44[8], v44[9]), Is.EqualTo(("down", "0", "0")), "standby_delay_by_time inserted before the delay");
        Assert.That(NodeReport.NodeInfoFields(nodes.Nodes[0], nodes, true, false)[6], Is.EqualTo("2"), "the primary's role is 2");
    }

    [Test]
    public void PoolStatus_ListsEveryParameterWithPgpoolsForms()
    {
        var nodes = TwoNodes();
        var rows = NodeReport.PoolStatus(PooldSettings.Defaults, nodes);
        Assert.That(rows.Select(r => r.Name), Does.Contain("listen_addresses").And.Contain("backend_weight1").And.Contain("backend_status0"));
        Assert.That(rows.Single(r => r.Name == "load_balance_mode").Value, Is.EqualTo("1"), "booleans as 1/0");
        Assert.That(rows.Single(r => r.Name == "sr_check_password").Value, Is.EqualTo("*****"));
        Assert.That(rows.Single(r => r.Name == "backend_weight1").Value, Is.EqualTo("0.500000"), "normalised weight");
        Assert.That(rows.All(r => r.Description.Length <= 80));
    }
}
