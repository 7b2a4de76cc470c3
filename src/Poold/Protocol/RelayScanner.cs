using System.Buffers;

namespace Poold.Protocol;

/// <summary>What the relay does with a frame, decided from its type byte alone.</summary>
internal enum FrameAction
{
    /// <summary>Forward it as it streams past; its body need never be whole in memory (DataRow, CopyData).</summary>
    Stream,

    /// <summary>Wait until the frame is whole and hand its body to the observer, then forward it (ReadyForQuery).</summary>
    Inspect,

    /// <summary>Stop before this frame: the caller takes it off the buffer and handles it (Terminate).</summary>
    Stop,
}

/// <summary>Told about each frame the scanner passes, exactly once.</summary>
internal interface IFrameObserver
{
    public FrameAction Classify(byte code);

    /// <summary>A frame was passed; <paramref name="body"/> is empty unless <see cref="Classify"/> said Inspect.</summary>
    public void OnFrame(byte code, int length, in ReadOnlySequence<byte> body);
}

/// <summary>
/// Walks a stream of typed frames across reads, header by header, and says how far the bytes can be forwarded.
/// Only frame headers are parsed; a frame being streamed is remembered as "bytes left", so a frame larger than
/// any buffer passes through in pieces. State is per direction of one connection.
/// </summary>
internal struct RelayScanner
{
    private long _remaining;

    /// <summary>Body bytes of the frame being streamed that have not been seen yet.</summary>
    public readonly long Remaining => _remaining;

    /// <summary>
    /// Scans <paramref name="buffer"/>. Returns the position up to which every byte belongs to a passed frame (or to
    /// the streamed part of the current one); <paramref name="stopped"/> is set when a Stop frame starts there.
    /// </summary>
    public SequencePosition Scan<TObserver>(in ReadOnlySequence<byte> buffer, ref TObserver observer, int maxInspectLength, out bool stopped)
        where TObserver : IFrameObserver
    {
        stopped = false;
        var rest = buffer;
        if (_remaining > 0)
        {
            var take = Math.Min(_remaining, rest.Length);
            rest = rest.Slice(take);
            _remaining -= take;
            if (_remaining > 0)
            {
                return rest.Start;
            }
        }

        while (FrameReader.TryReadHeader(rest, int.MaxValue, out var code, out var length))
        {
            var action = observer.Classify(code);
            if (action == FrameAction.Stop)
            {
                stopped = true;
                break;
            }

            if (action == FrameAction.Inspect)
            {
                if (length > maxInspectLength)
                {
                    throw new PgProtocolException(SqlState.ProtocolViolation,
                        $"message type '{(char)code}' of {length} bytes exceeds the limit of {maxInspectLength}");
                }

                if (rest.Length < 1 + length)
                {
                    break;
                }

                observer.OnFrame(code, length, rest.Slice(FrameReader.HeaderLength, length - 4));
                rest = rest.Slice(1 + length);
                continue;
            }

            observer.OnFrame(code, length, ReadOnlySequence<byte>.Empty);
            var body = Math.Min(length - 4, rest.Length - FrameReader.HeaderLength);
            rest = rest.Slice(FrameReader.HeaderLength + body);
            _remaining = length - 4 - body;
            if (_remaining > 0)
            {
                break;
            }
        }

        return rest.Start;
    }
}
