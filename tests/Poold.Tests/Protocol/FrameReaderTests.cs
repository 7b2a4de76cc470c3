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

    /// <summary>A header cut anywhere across segments reads as in one piece (the fast path takes only a whole header in the first).</summary>
    [Test]
    public void TryReadFrame_HeaderSplitAcrossSegments_ReadsAtEveryCut()
    {
        var bytes = Convert.FromHexString("430000000b53454c45435400" + "5a0000000549");
        for (var cut = 1; cut < bytes.Length; cut++)
        {
            var buffer = TwoSegments(bytes, cut);
            Assert.That(FrameReader.TryReadFrame(ref buffer, 100, out var code, out _, out var body), Is.True, $"cut at {cut}");
            Assert.That(((char)code, body.ToArray()), Is.EqualTo(('C', "SELECT\0"u8.ToArray())), $"cut at {cut}");
            Assert.That(FrameReader.TryReadFrame(ref buffer, 100, out code, out _, out body), Is.True, $"cut at {cut}");
            Assert.That(((char)code, body.ToArray(), buffer.IsEmpty), Is.EqualTo(('Z', "I"u8.ToArray(), true)), $"cut at {cut}");
        }
    }

    /// <summary>A length above the limit throws whether the header is whole in the first segment or split.</summary>
    [TestCase(5)]
    [TestCase(2)]
    public void TryReadHeader_BadLengthAcrossSegments_Throws(int cut)
    {
        var buffer = TwoSegments(Convert.FromHexString("5a7fffffff00"), cut);
        Assert.That(() => FrameReader.TryReadHeader(buffer, 1000, out _, out _),
            Throws.InstanceOf<PgProtocolException>().With.Property("SqlState").EqualTo("08P01"));
    }

    private static ReadOnlySequence<byte> TwoSegments(byte[] bytes, int cut)
    {
        var first = new Segment(bytes.AsMemory(0, cut), 0);
        var second = first.Append(bytes.AsMemory(cut));
        return new ReadOnlySequence<byte>(first, 0, second, second.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
