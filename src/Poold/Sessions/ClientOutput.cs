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

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken stop)
    {
        try
        {
            await Stream.WriteAsync(data, stop);
            _bytes += data.Length;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new ClientGoneException(e);
        }
    }

    public async ValueTask WriteAsync(ReadOnlySequence<byte> data, CancellationToken stop)
    {
        foreach (var segment in data)
        {
            await WriteAsync(segment, stop);
        }
    }

    public async ValueTask FlushAsync(CancellationToken stop)
    {
        try
        {
            await Stream.FlushAsync(stop);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new ClientGoneException(e);
        }
    }
}
