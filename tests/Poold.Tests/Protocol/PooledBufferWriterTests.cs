using Poold.Protocol;

namespace Poold.Tests.Protocol;

public class PooledBufferWriterTests
{
    [Test]
    public void WhatIsWritten_IsKeptAcrossGrowth()
    {
        var writer = new PooledBufferWriter();
        var expected = new List<byte>();
        for (var i = 0; i < 5000; i++)
        {
            var chunk = Enumerable.Range(0, i % 97 + 1).Select(b => (byte)(b + i)).ToArray();
            chunk.CopyTo(writer.GetSpan(chunk.Length));
            writer.Advance(chunk.Length);
            expected.AddRange(chunk);
        }

        Assert.That(writer.WrittenCount, Is.EqualTo(expected.Count));
        Assert.That(writer.WrittenSpan.ToArray(), Is.EqualTo(expected.ToArray()));
        Assert.That(writer.WrittenMemory.ToArray(), Is.EqualTo(expected.ToArray()));
    }

    [Test]
    public void Clear_LeavesNothingWritten_AndTheWriterUsableAgain()
    {
        var writer = new PooledBufferWriter();
        writer.GetSpan(10)[..3].Fill(1);
        writer.Advance(3);
        writer.Clear();
        Assert.That(writer.WrittenCount, Is.Zero);
        Assert.That(writer.WrittenMemory.IsEmpty, Is.True);
        Assert.That(writer.WrittenSpan.IsEmpty, Is.True);
        writer.GetSpan(2)[..2].Fill(9);
        writer.Advance(2);
        Assert.That(writer.WrittenSpan.ToArray(), Is.EqualTo(new byte[] { 9, 9 }));
    }

    [Test]
    public void AdvancingPastWhatWasAskedFor_IsRefused()
    {
        var writer = new PooledBufferWriter();
        Assert.Throws<InvalidOperationException>(() => writer.Advance(1), "nothing rented yet");
        var length = writer.GetSpan(1).Length;
        Assert.Throws<InvalidOperationException>(() => writer.Advance(length + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(-1));
    }

    [Test]
    public void AMessageLargerThanThePoolKeeps_IsWrittenWhole()
    {
        var writer = new PooledBufferWriter();
        var big = new byte[3 << 20];
        Random.Shared.NextBytes(big);
        big.CopyTo(writer.GetSpan(big.Length));
        writer.Advance(big.Length);
        Assert.That(writer.WrittenSpan.SequenceEqual(big), Is.True);
        writer.Clear();
        Assert.That(writer.WrittenCount, Is.Zero);
    }
}
