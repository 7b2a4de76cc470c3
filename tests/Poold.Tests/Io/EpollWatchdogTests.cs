using System.Net;
using System.Net.Sockets;
using Poold.Io;

namespace Poold.Tests.Io;

/// <summary>
/// The I/O layer's watchdog, on an engine without event threads: no epoll event is ever delivered there, so every
/// wake-up is "lost", and only the watchdog's sweeps (run by hand) can give it. A parked operation on a socket that
/// is ready at two sweeps in a row is woken; one that has nothing to wait for is left parked.
/// </summary>
[FixtureLifeCycle(LifeCycle.InstancePerTestCase)]
public sealed class EpollWatchdogTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private readonly EpollEngine _engine = new(1, start: false);
    private readonly SocketStream _stream;
    private readonly Socket _peer;

    public EpollWatchdogTests()
    {
        (_stream, _peer) = Pair(_engine);
    }

    public void Dispose()
    {
        _stream.Dispose();
        _peer.Dispose();
        _engine.Close();
    }

    private static (SocketStream Stream, Socket Peer) Pair(EpollEngine engine)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        return (new SocketStream(client, engine), listener.Accept());
    }

    [Test]
    public async Task AReadParkedOnAReadySocket_IsWokenAtTheSecondSweep_AndCounted()
    {
        var buffer = new byte[16];
        var read = _stream.ReadAsync(buffer);
        Assert.That(read.IsCompleted, Is.False, "nothing to read yet: the read parks");
        Assert.That(_engine.Sweep(), Is.Zero, "a parked read on a socket with nothing to read is left alone");

        _peer.Send("hello"u8.ToArray());
        await Poll.UntilAsync(() => _stream.Socket.Available == 5, "5 bytes are queued");
        Assert.That(_engine.Sweep(), Is.Zero, "ready once: a suspect, not yet a lost wake-up (the event may be on its way)");
        Assert.That(read.IsCompleted, Is.False);

        Assert.That(_engine.Sweep(), Is.EqualTo(1), "ready at two sweeps in a row, still parked: woken");
        Assert.That(await read.AsTask().WaitAsync(Deadline), Is.EqualTo(5));
        Assert.That(buffer[..5], Is.EqualTo("hello"u8.ToArray()));
        Assert.That(_engine.LostWakeups, Is.EqualTo(1));
    }

    [Test]
    public async Task AReadWokenInTime_IsNotCountedAsLost()
    {
        var first = _stream.ReadAsync(new byte[16]);
        _peer.Send("a"u8.ToArray());
        await Poll.UntilAsync(() => _stream.Socket.Available == 1, "the byte is queued");
        Assert.That(_engine.Sweep(), Is.Zero, "a suspect");

        // The edge arrives (as an event thread would deliver it) before the next sweep: the read completes, and the
        // next read parks anew, with nothing to read.
        _stream.OnEvents(EpollNative.EpollIn);
        Assert.That(await first.AsTask().WaitAsync(Deadline), Is.EqualTo(1));
        var second = _stream.ReadAsync(new byte[16]);
        Assert.That(_engine.Sweep(), Is.Zero);
        Assert.That(second.IsCompleted, Is.False);
        Assert.That(_engine.LostWakeups, Is.Zero);
    }

    [Test]
    public async Task AWriteParkedOnAFullSocket_IsWokenOnceThereIsRoom()
    {
        // Fill the send path until a write parks (the peer does not read).
        var chunk = new byte[64 * 1024];
        ValueTask write;
        var sent = 0;
        while ((write = _stream.WriteAsync(chunk)).IsCompleted)
        {
            sent += chunk.Length;
            Assert.That(sent, Is.LessThan(256 << 20), "a write parks once the socket buffers are full");
        }

        Assert.That(_engine.Sweep(), Is.Zero, "no room: the write stays parked");
        Assert.That(_engine.Sweep(), Is.Zero);

        // The peer drains everything: the socket has room again, and no event will say so on this _engine.
        var drain = new byte[256 * 1024];
        var total = 0L;
        var expected = sent + chunk.Length;
        await Poll.UntilAsync(() =>
        {
            while (_peer.Available > 0)
            {
                total += _peer.Receive(drain);
            }

            _engine.Sweep();
            return write.IsCompleted;
        }, "a sweep wakes the parked write");
        Assert.DoesNotThrowAsync(async () => await write.AsTask().WaitAsync(Deadline));
        Assert.That(_engine.LostWakeups, Is.GreaterThanOrEqualTo(1));
        await Poll.UntilAsync(() =>
        {
            while (_peer.Available > 0)
            {
                total += _peer.Receive(drain);
            }

            return total == expected;
        }, "the peer has every byte");
    }
}
