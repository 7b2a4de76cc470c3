using System.Buffers;
using Poold.Protocol;

namespace Poold.Fuzz.Targets;

/// <summary>
/// Typed frames read through <see cref="ContiguousPipeReader"/> from a stream that hands out the bytes in small,
/// varying pieces (the first input byte seeds the piece sizes), as the relay loop reads a client: each whole frame is
/// taken off, a partial one is examined and waited for. Checks that the frames taken are exactly the input's, in
/// order, and that what is left at the end is an unfinished frame. A bad length throws <see cref="PgProtocolException"/>.
/// </summary>
internal static class FrameReaderTarget
{
    private const int MaxFrame = 8192;

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        var seed = input[0];
        var bytes = input[1..].ToArray();
        using var stream = new PieceStream(bytes, seed);
        using var reader = new ContiguousPipeReader(stream, bufferSize: 16, minimumReadSize: 8);
        var taken = 0;
        try
        {
            while (true)
            {
                var result = reader.ReadAsync().AsTask().GetAwaiter().GetResult();
                var buffer = result.Buffer;
                while (FrameReader.TryReadFrame(ref buffer, MaxFrame, out var code, out var frame, out var body))
                {
                    Check(bytes, taken, code, frame, body);
                    taken += (int)frame.Length;
                }

                if (result.IsCompleted)
                {
                    if (buffer.Length != bytes.Length - taken || (buffer.Length >= FrameReader.HeaderLength
                            && FrameReader.TryReadHeader(buffer, MaxFrame, out _, out var length) && buffer.Length >= 1 + length))
                    {
                        throw new FuzzInvariantException($"the stream ended with {buffer.Length} bytes left but {bytes.Length - taken} unread");
                    }

                    return;
                }

                reader.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        catch (PgProtocolException)
        {
        }
    }

    private static void Check(byte[] bytes, int taken, byte code, ReadOnlySequence<byte> frame, ReadOnlySequence<byte> body)
    {
        var expectedLength = 1 + ((bytes[taken + 1] << 24) | (bytes[taken + 2] << 16) | (bytes[taken + 3] << 8) | bytes[taken + 4]);
        if (code != bytes[taken] || frame.Length != expectedLength || body.Length != frame.Length - FrameReader.HeaderLength
            || !frame.ToArray().AsSpan().SequenceEqual(bytes.AsSpan(taken, expectedLength)))
        {
            throw new FuzzInvariantException($"frame at offset {taken} differs from the input");
        }
    }

    /// <summary>A read-only stream that returns 1 to 40 bytes per read, in a pattern seeded by the input.</summary>
    private sealed class PieceStream(byte[] bytes, byte seed) : Stream
    {
        private int _position;
        private uint _state = seed | 0x100u;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (buffer.IsEmpty)
            {
                return 0; // the reader's zero-byte wait for data
            }

            _state = (_state * 1103515245) + 12345;
            var piece = Math.Min(Math.Min(buffer.Length, bytes.Length - _position), 1 + (int)((_state >> 16) % 40));
            bytes.AsSpan(_position, piece).CopyTo(buffer);
            _position += piece;
            return piece;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
