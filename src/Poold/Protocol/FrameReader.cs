using System.Buffers;
using System.Buffers.Binary;

namespace Poold.Protocol;

/// <summary>
/// Reads typed frames (<c>byte code, int32 length</c> counting itself but not the code, then the body) from a
/// buffered sequence. <c>false</c> means "need more bytes"; a malformed header throws.
/// </summary>
internal static class FrameReader
{
    public const int HeaderLength = 5;

    /// <summary>Reads the header at the start of <paramref name="buffer"/>; validates the length against the limit first.</summary>
    public static bool TryReadHeader(in ReadOnlySequence<byte> buffer, int maxLength, out byte code, out int length)
    {
        // The common case, a header within the first segment (Poold's readers hand out one contiguous segment): read in place.
        var first = buffer.FirstSpan;
        if (first.Length >= HeaderLength)
        {
            code = first[0];
            length = BinaryPrimitives.ReadInt32BigEndian(first[1..]);
        }
        else if (buffer.Length >= HeaderLength)
        {
            Span<byte> header = stackalloc byte[HeaderLength];
            buffer.Slice(0, HeaderLength).CopyTo(header);
            code = header[0];
            length = BinaryPrimitives.ReadInt32BigEndian(header[1..]);
        }
        else
        {
            code = 0;
            length = 0;
            return false;
        }

        if (length < 4 || length > maxLength)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, $"invalid message length {length} for message type '{(char)code}'");
        }

        return true;
    }

    /// <summary>
    /// Takes one whole frame off the front of <paramref name="buffer"/>: <paramref name="frame"/> is the frame with its
    /// header, <paramref name="body"/> the body alone.
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxLength, out byte code, out ReadOnlySequence<byte> frame,
        out ReadOnlySequence<byte> body)
    {
        frame = body = default;
        if (!TryReadHeader(buffer, maxLength, out code, out var length) || buffer.Length < 1 + length)
        {
            return false;
        }

        frame = buffer.Slice(0, 1 + length);
        body = frame.Slice(HeaderLength);
        buffer = buffer.Slice(frame.End);
        return true;
    }
}
