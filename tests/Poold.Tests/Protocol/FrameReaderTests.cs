using System.Buffers;
using Poold.Protocol;

namespace Poold.Tests.Protocol;

public class FrameReaderTests
{
    [Test]
    public void TryReadFrame_WholeFrames_AreTakenOneByOne()
    {
        var buffer = new ReadOnlySequence<byte>(Convert.FromHexString("5a0000000549" + "430000000b53454c45435400"));
        Assert.That(FrameReader.TryReadFrame(ref buffer, 100, out var code, out var frame, out var body), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That((char)code, Is.EqualTo('Z'));
            Assert.That(frame.Length, Is.EqualTo(6));
            Assert.That(body.ToArray(), Is.EqualTo("I"u8.ToArray()));
        });
        Assert.That(FrameReader.TryReadFrame(ref buffer, 100, out code, out _, out body), Is.True);
        Assert.That(((char)code, body.Length), Is.EqualTo(('C', 7)));
        Assert.That(buffer.IsEmpty, Is.True);
    }

    [TestCase("", TestName = "TryReadFrame_Empty_NeedsMore")]
    [TestCase("5a000000", TestName = "TryReadFrame_PartialHeader_NeedsMore")]
    [TestCase("5a00000005", TestName = "TryReadFrame_PartialBody_NeedsMore")]
    public void TryReadFrame_Incomplete_ReturnsFalseAndConsumesNothing(string hex)
    {
        var buffer = new ReadOnlySequence<byte>(Convert.FromHexString(hex));
        Assert.That(FrameReader.TryReadFrame(ref buffer, 100, out _, out _, out _), Is.False);
        Assert.That(buffer.Length, Is.EqualTo(hex.Length / 2));
    }

    [TestCase("5a00000003", TestName = "TryReadHeader_LengthBelowFour_Throws")]
    [TestCase("5a7fffffff", TestName = "TryReadHeader_LengthAboveLimit_ThrowsBeforeBuffering")]
    [TestCase("5affffffff", TestName = "TryReadHeader_NegativeLength_Throws")]
    public void TryReadHeader_BadLength_Throws(string hex)
    {
        var buffer = new ReadOnlySequence<byte>(Convert.FromHexString(hex));
        Assert.That(() => FrameReader.TryReadHeader(buffer, 1000, out _, out _),
            Throws.InstanceOf<PgProtocolException>().With.Property("SqlState").EqualTo("08P01"));
    }
}
