using System.Buffers;

namespace Poold.Sessions;

/// <summary>
/// The client's stream as the session's relays write to it once the login is over: the backend side's replies, the
/// replication relay. A failure to write is the client's, never a backend's (<see cref="ClientGoneException"/>). Written
/// by one pump at a time; <see cref="Bytes"/> and <see cref="MidFrame"/> are read by other threads and by the client
/// side after the pumps stopped.
/// </summary>
internal sealed class ClientOutput
{
    private long _bytes;
    private volatile bool _midFrame;

    /// <summary>The client's stream (TLS or plain), set when the relay starts.</summary>
    public Stream Stream { get; set; } = Stream.Null;

    /// <summary>Bytes written to the client after login.</summary>
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Part of a frame has reached the client: nothing more may be written to it (no error can be framed).</summary>
    public bool MidFrame
    {
        get => _midFrame;
        set => _midFrame = value;
    }

    /// <summary>
    /// Writes <paramref name="data"/>. A write the stream finished at once (Poold's socket stream sends on the caller's
    /// thread) costs no state machine here; one that waits, or failed, goes the awaited way.
    /// </summary>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken stop)
    {
        ValueTask write;
        try
        {
            write = Stream.WriteAsync(data, stop);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            return ValueTask.FromException(new ClientGoneException(e));
        }

        if (write.IsCompletedSuccessfully)
        {
            // Consumed, as every ValueTask must be once (a pooled source behind it is given back here).
            write.GetAwaiter().GetResult();
            _bytes += data.Length;
            return default;
        }

        return AwaitWriteAsync(write, data.Length);
    }

    private async ValueTask AwaitWriteAsync(ValueTask write, int length)
    {
        try
        {
            await write;
            _bytes += length;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new ClientGoneException(e);
        }
    }

    public ValueTask WriteAsync(ReadOnlySequence<byte> data, CancellationToken stop) =>
        data.IsSingleSegment ? WriteAsync(data.First, stop) : WriteSegmentsAsync(data, stop);

    private async ValueTask WriteSegmentsAsync(ReadOnlySequence<byte> data, CancellationToken stop)
    {
        foreach (var segment in data)
        {
            await WriteAsync(segment, stop);
        }
    }

    public ValueTask FlushAsync(CancellationToken stop)
    {
        Task flush;
        try
        {
            flush = Stream.FlushAsync(stop);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            return ValueTask.FromException(new ClientGoneException(e));
        }

        return flush.IsCompletedSuccessfully ? default : AwaitFlushAsync(flush);
    }

    private static async ValueTask AwaitFlushAsync(Task flush)
    {
        try
        {
            await flush;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new ClientGoneException(e);
        }
    }
}
