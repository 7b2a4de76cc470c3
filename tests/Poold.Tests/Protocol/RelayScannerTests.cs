using System.Buffers;
using FsCheck;
using FsCheck.Fluent;
using Poold.Protocol;

namespace Poold.Tests.Protocol;

public class RelayScannerTests
{
    /// <summary>Records what the scanner reports, as a test observer.</summary>
    private struct Recorder : IFrameObserver
    {
        public List<string> Seen;

        public readonly FrameAction Classify(byte code) => code switch
        {
            (byte)'Z' or (byte)'S' => FrameAction.Inspect,
            (byte)'X' => FrameAction.Stop,
            _ => FrameAction.Stream,
        };

        public readonly void OnFrame(byte code, int length, in ReadOnlySequence<byte> body) =>
            Seen.Add($"{(char)code}{length}:{Convert.ToHexString(body.ToArray())}");
    }

    private static byte[] Frame(char code, byte[] body)
    {
        var frame = new byte[5 + body.Length];
        frame[0] = (byte)code;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), body.Length + 4);
        body.CopyTo(frame, 5);
        return frame;
    }

    private static readonly byte[] Stream = [
        .. Frame('T', new byte[30]), .. Frame('D', Enumerable.Range(0, 300).Select(i => (byte)i).ToArray()), .. Frame('S', "a\0b\0"u8.ToArray()),
        .. Frame('C', "SELECT 1\0"u8.ToArray()), .. Frame('Z', "I"u8.ToArray()),
    ];

    /// <summary>Feeds <paramref name="data"/> in pieces, as a PipeReader would: unconsumed bytes are offered again with the next piece.</summary>
    private static (List<string> Seen, long Forwarded, bool Stopped) Feed(byte[] data, IEnumerable<int> cuts)
    {
        var scanner = new RelayScanner();
        var recorder = new Recorder { Seen = [] };
        long forwarded = 0;
        var pending = new List<byte>();
        var position = 0;
        foreach (var cut in cuts.Append(data.Length))
        {
            pending.AddRange(data[position..cut]);
            position = cut;
            var buffer = new ReadOnlySequence<byte>(pending.ToArray());
            var end = scanner.Scan(buffer, ref recorder, 1000, out var stopped);
            var consumed = buffer.Slice(0, end).Length;
            forwarded += consumed;
            pending.RemoveRange(0, (int)consumed);
            if (stopped)
            {
                return (recorder.Seen, forwarded, true);
            }
        }

        return (recorder.Seen, forwarded, false);
    }

    [Test]
    public void Scan_WholeStream_ReportsEveryFrameOnceAndForwardsAll()
    {
        var (seen, forwarded, stopped) = Feed(Stream, []);
        Assert.Multiple(() =>
        {
            Assert.That(seen, Is.EqualTo(new[] { "T34:", "D304:", "S8:61006200", "C13:", "Z5:49" }));
            Assert.That(forwarded, Is.EqualTo(Stream.Length));
            Assert.That(stopped, Is.False);
        });
    }

    [Test]
    public void Scan_AnyChunking_GivesTheSameResult() =>
        Prop.ForAll(Gen.ListOf(Gen.Choose(0, Stream.Length)).ToArbitrary(), cuts =>
        {
            var ordered = cuts.Distinct().Order().ToList();
            var (seen, forwarded, _) = Feed(Stream, ordered);
            return seen.SequenceEqual(new[] { "T34:", "D304:", "S8:61006200", "C13:", "Z5:49" }) && forwarded == Stream.Length;
        }).QuickCheckThrowOnFailure();

    [Test]
    public void Scan_EverySingleSplitPoint_GivesTheSameResult()
    {
        for (var cut = 0; cut <= Stream.Length; cut++)
        {
            var (seen, forwarded, _) = Feed(Stream, [cut]);
            Assert.That(seen, Has.Count.EqualTo(5), $"split at {cut}");
            Assert.That(forwarded, Is.EqualTo(Stream.Length), $"split at {cut}");
        }
    }

    [Test]
    public void Scan_LargeStreamedFrame_IsForwardedBeforeItIsWhole()
    {
        var big = Frame('D', new byte[100_000]);
        var scanner = new RelayScanner();
        var recorder = new Recorder { Seen = [] };
        var first = new ReadOnlySequence<byte>(big.AsMemory(0, 4096));
        var end = scanner.Scan(first, ref recorder, 1000, out _);
        Assert.That(first.Slice(0, end).Length, Is.EqualTo(4096), "a streamed frame is forwarded as it arrives");
        Assert.That(scanner.Remaining, Is.EqualTo(100_000 + 5 - 4096));
    }

    [Test]
    public void Scan_StopFrame_StopsBeforeIt()
    {
        byte[] data = [.. Frame('Q', "SELECT 1\0"u8.ToArray()), .. Frame('X', []), .. Frame('Q', "x\0"u8.ToArray())];
        var (seen, forwarded, stopped) = Feed(data, [3]);
        Assert.That((seen.Count, forwarded, stopped), Is.EqualTo((1, 14L, true)));
    }

    [Test]
    public void Scan_InspectedFrameOverLimit_Throws()
    {
        var scanner = new RelayScanner();
        var recorder = new Recorder { Seen = [] };
        var buffer = new ReadOnlySequence<byte>(Frame('S', new byte[2000]));
        Assert.That(() => scanner.Scan(buffer, ref recorder, 1000, out _), Throws.InstanceOf<PgProtocolException>());
    }
}
