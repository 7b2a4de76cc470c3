using System.Buffers.Binary;
using System.Text;
using Poold.Protocol;

namespace Poold.Tests.Protocol;

public class StartupPacketTests
{
    private static byte[] Body(int code, params string[] pairs)
    {
        var bytes = new List<byte>();
        var codeBytes = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(codeBytes, code);
        bytes.AddRange(codeBytes);
        foreach (var s in pairs)
        {
            bytes.AddRange(Encoding.UTF8.GetBytes(s));
            bytes.Add(0);
        }

        bytes.Add(0);
        return [.. bytes];
    }

    [Test]
    public void Parse_StartupMessage_ReadsParametersInOrder()
    {
        var packet = StartupPacket.Parse(Body(196608, "user", "alice", "database", "shop", "application_name", "psql"));
        Assert.Multiple(() =>
        {
            Assert.That(packet.Kind.ToString(), Is.EqualTo("Startup"));
            Assert.That((packet.MajorVersion, packet.MinorVersion), Is.EqualTo((3, 0)));
            Assert.That(packet["user"], Is.EqualTo("alice"));
            Assert.That(packet["database"], Is.EqualTo("shop"));
            Assert.That(packet.Parameters.Select(p => p.Key), Is.EqualTo(new[] { "user", "database", "application_name" }));
            Assert.That(packet["nope"], Is.Null);
        });
    }

    [Test]
    public void Parse_DuplicateParameter_LastOneWins() =>
        Assert.That(StartupPacket.Parse(Body(196608, "user", "a", "user", "b"))["user"], Is.EqualTo("b"));

    [Test]
    public void Parse_Protocol32_IsAcceptedForNegotiation() =>
        Assert.That(StartupPacket.Parse(Body((3 << 16) | 2, "user", "a")).MinorVersion, Is.EqualTo(2));

    [TestCase("04d2162f", "SslRequest")]
    [TestCase("04d21630", "GssEncRequest")]
    public void Parse_EncryptionRequests(string hex, string kind) =>
        Assert.That(StartupPacket.Parse(Convert.FromHexString(hex)).Kind.ToString(), Is.EqualTo(kind));

    [Test]
    public void Parse_CancelRequest_ReadsPidAndKey()
    {
        var packet = StartupPacket.Parse(Convert.FromHexString("04d2162e000004d2deadbeef"));
        Assert.That((packet.Kind.ToString(), packet.CancelProcessId, packet.CancelSecretKey),
            Is.EqualTo(("CancelRequest", 1234, unchecked((int)0xdeadbeef))));
    }

    [TestCase("04d2162f00", "invalid length of SslRequest packet: 9", TestName = "Parse_SslRequestWithExtraByte_IsRejected")]
    [TestCase("04d2162e000004d2", "invalid length of CancelRequest packet: 12", TestName = "Parse_ShortCancelRequest_IsRejected")]
    [TestCase("00020000", "unsupported frontend protocol 2.0: server supports 3.0 to 3.0", TestName = "Parse_Protocol2_IsRejected")]
    [TestCase("0003000075736572", "invalid startup packet layout: expected terminator as last byte", TestName = "Parse_UnterminatedName_IsRejected")]
    [TestCase("000300007573657200616c696365", "invalid startup packet layout: no value for \"user\"", TestName = "Parse_UnterminatedValue_IsRejected")]
    [TestCase("00030000000000", "invalid startup packet layout: expected terminator as last byte", TestName = "Parse_BytesAfterTerminator_AreRejected")]
    public void Parse_Malformed_Throws(string hex, string message) =>
        Assert.That(() => StartupPacket.Parse(Convert.FromHexString(hex)),
            Throws.InstanceOf<PgProtocolException>().With.Message.EqualTo(message));

    [TestCase("00000008", 8)]
    [TestCase("00002710", 10000)]
    public void CheckLength_WithinLimits(string hex, int expected) =>
        Assert.That(StartupPacket.CheckLength(Convert.FromHexString(hex)), Is.EqualTo(expected));

    [TestCase("00000007", TestName = "CheckLength_BelowEight_IsRejected")]
    [TestCase("00002711", TestName = "CheckLength_Above10000_IsRejectedBeforeReading")]
    [TestCase("7fffffff", TestName = "CheckLength_Absurd_IsRejected")]
    [TestCase("ffffffff", TestName = "CheckLength_Negative_IsRejected")]
    public void CheckLength_OutOfRange_Throws(string hex) =>
        Assert.That(() => StartupPacket.CheckLength(Convert.FromHexString(hex)),
            Throws.InstanceOf<PgProtocolException>().With.Message.StartsWith("invalid length of startup packet"));
}
