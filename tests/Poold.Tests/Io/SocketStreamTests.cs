using System.Net;
using System.Net.Sockets;
using Poold.Io;

namespace Poold.Tests.Io;

/// <summary>
/// Poold's own socket stream over real loopback connections: the stream on one end, a plain blocking socket (the
/// peer) on the other. Every wait has a deadline; a wake-up that is lost shows as a timeout, not a hang.
/// </summary>
[FixtureLifeCycle(LifeCycle.InstancePerTestCase)]
public sealed class SocketStreamTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private readonly Socket _peer;
    private readonly SocketStream _stream;

    public SocketStreamTests()
    {
        (_stream, _peer) = Pair();
    }

    public void Dispose()
    {
        _stream.Dispose();
        _peer.Dispose();
    }

    private static (SocketStream Stream, Socket Peer) Pair(int bufferSize = 0)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        if (bufferSize > 0)
        {
            client.SendBufferSize = bufferSize;
            client.ReceiveBufferSize = bufferSize;
        }

        client.Connect(listener.LocalEndPoint!);
        var peer = listener.Accept();
        if (bufferSize > 0)
        {
            peer.ReceiveBufferSize = bufferSize;
        }

        return (new SocketStream(client), peer);
    }

    private static byte[] Bytes(int count, int seed) => [.. Enumerable.Range(0, count).Select(i => (byte)((i * 7) + seed))];

    private static async Task<T> Within<T>(ValueTask<T> pending) => await pending.AsTask().WaitAsync(Deadline);

    [Test]
    public async Task TheDescriptorIsMadeNonBlocking_BehindTheSocketsBack_AndCanBeMadeBlockingAgain()
    {
        var socket = _stream.Socket;
        Assert.That(SocketNative.IsNonBlocking(socket.SafeHandle), Is.True);
        Assert.That(socket.Blocking, Is.True, "Socket.Blocking was not used: .NET built no asynchronous context for the socket");

        // A read with nothing to read parks (no EAGAIN surfaces), and completes when the peer writes.
        var buffer = new byte[16];
        var read = _stream.ReadAsync(buffer);
        Assert.That(read.IsCompleted, Is.False);
        _peer.Send(Bytes(3, 1));
        Assert.That(await Within(read), Is.EqualTo(3));

        // What the fallback to .NET's engine does when epoll refuses a socket.
        Assert.That(SocketNative.SetNonBlocking(socket.SafeHandle, nonBlocking: false), Is.Zero);
        Assert.That(SocketNative.IsNonBlocking(socket.SafeHandle), Is.False);
    }

    [TestCase(16)]
    [TestCase(256 * 1024)]
    public void SendAndReceive_NeverBlock_EvenOnABlockingDescriptor(int size)
    {
        // The calls without a GC transition (up to 64 KiB) rely on MSG_DONTWAIT: a collection would wait for a blocked call.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using var server = listener.Accept();
        Assert.That(SocketNative.IsNonBlocking(server.SafeHandle), Is.False, "a blocking descriptor");

        var buffer = new byte[size];
        Assert.That(SocketNative.Receive(server.SafeHandle, buffer, out var received), Is.EqualTo(SocketError.WouldBlock), "nothing queued: EAGAIN, not a wait");
        Assert.That(received, Is.Zero);

        Assert.That(SocketNative.Send(client.SafeHandle, Bytes(5, 7), out var sent), Is.EqualTo(SocketError.Success));
        Assert.That(sent, Is.EqualTo(5));
        var deadline = DateTime.UtcNow.AddSeconds(5);
        SocketError result;
        while ((result = SocketNative.Receive(server.SafeHandle, buffer, out received)) == SocketError.WouldBlock && DateTime.UtcNow < deadline)
        {
            Thread.Yield();
        }

        Assert.That(result, Is.EqualTo(SocketError.Success));
        Assert.That(buffer[..received], Is.EqualTo(Bytes(5, 7)));
    }

    [Test]
    public async Task ShortReads_ReturnWhatArrived_AndFullReadsLeaveTheRestReadable()
    {
        _peer.Send(Bytes(10, 1));
        var buffer = new byte[100];
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(10));
        Assert.That(buffer[..10], Is.EqualTo(Bytes(10, 1)));

        // 300 bytes queued at once, read 100 at a time: after a full read no new edge comes, the flag must carry it.
        _peer.Send(Bytes(300, 2));
        await Poll.UntilAsync(() => _stream.Socket.Available == 300, "the 300 bytes are queued");
        var received = new List<byte>();
        while (received.Count < 300)
        {
            var n = await Within(_stream.ReadAsync(buffer));
            Assert.That(n, Is.GreaterThan(0));
            received.AddRange(buffer[..n]);
        }

        Assert.That(received, Is.EqualTo(Bytes(300, 2)));
    }

    [Test]
    public async Task AZeroByteRead_CompletesOnlyWhenDataArrives_AndConsumesNothing()
    {
        var buffer = new byte[16];
        _peer.Send(Bytes(4, 1));
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(4), "drains the socket");

        var waiting = _stream.ReadAsync(Memory<byte>.Empty).AsTask();
        Assert.That(waiting.IsCompleted, Is.False, "nothing to read yet");
        _peer.Send(Bytes(5, 3));
        Assert.That(await waiting.WaitAsync(Deadline), Is.Zero);

        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(5));
        Assert.That(buffer[..5], Is.EqualTo(Bytes(5, 3)));
    }

    [Test]
    public async Task AZeroByteRead_AfterAReadThatFilledItsBufferExactly_WaitsForMoreData()
    {
        // A full read leaves the stream marked readable on a guess (more may be queued); the login's exact-sized reads
        // (a 5-byte header, then the body) end that way. An idle session's zero-byte wait must not be woken by that
        // guess: it would then take a buffer and park its real read holding it.
        var header = new byte[5];
        _peer.Send(Bytes(5, 2));
        Assert.That(await Within(_stream.ReadAsync(header)), Is.EqualTo(5));
        Assert.That(_stream.MayHaveInput, Is.True, "a read that filled its buffer cannot know it drained the socket");

        var waiting = _stream.ReadAsync(Memory<byte>.Empty).AsTask();
        Assert.That(waiting.IsCompleted, Is.False, "the socket is drained: the wait goes on");
        _peer.Send(Bytes(3, 4));
        Assert.That(await waiting.WaitAsync(Deadline), Is.Zero);
        var buffer = new byte[16];
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(3));
        Assert.That(buffer[..3], Is.EqualTo(Bytes(3, 4)));
    }

    [Test]
    public async Task ThePeerClosing_EndsTheStream_AfterTheDataThatCameWithTheClose()
    {
        var buffer = new byte[64];
        _peer.Send(Bytes(5, 1));
        _peer.Shutdown(SocketShutdown.Send);

        // Data and FIN usually come in one edge; the short read that takes the data must not forget the end.
        Assert.That(await Within(_stream.ReadAsync(Memory<byte>.Empty)), Is.Zero);
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(5));
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.Zero, "end of stream");
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.Zero, "and it stays ended");
    }

    [Test]
    public async Task ThePeerClosing_CompletesAParkedRead_WithZero()
    {
        var waiting = _stream.ReadAsync(new byte[8]).AsTask();
        Assert.That(waiting.IsCompleted, Is.False);
        _peer.Shutdown(SocketShutdown.Send);
        Assert.That(await waiting.WaitAsync(Deadline), Is.Zero);
    }

    [Test]
    public async Task CancellingAParkedRead_EndsIt_AndTheStreamGoesOn()
    {
        using var cts = new CancellationTokenSource();
        var waiting = _stream.ReadAsync(new byte[8], cts.Token).AsTask();
        Assert.That(waiting.IsCompleted, Is.False);
        await cts.CancelAsync();
        Assert.That(async () => await waiting.WaitAsync(Deadline), Throws.InstanceOf<OperationCanceledException>());

        _peer.Send(Bytes(3, 1));
        var buffer = new byte[8];
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(3), "the next read gets the data");
        Assert.That(buffer[..3], Is.EqualTo(Bytes(3, 1)));
    }

    [Test]
    public async Task ATokenCancelledAfterTheReadCompleted_DoesNotCancelTheNextRead()
    {
        using var cts = new CancellationTokenSource();
        var buffer = new byte[8];
        var first = _stream.ReadAsync(buffer, cts.Token).AsTask();
        _peer.Send(Bytes(2, 1));
        Assert.That(await first.WaitAsync(Deadline), Is.EqualTo(2));

        var second = _stream.ReadAsync(buffer).AsTask();
        await cts.CancelAsync();
        _peer.Send(Bytes(3, 1));
        Assert.That(await second.WaitAsync(Deadline), Is.EqualTo(3));
    }

    [Test]
    public async Task AWriteLargerThanTheSocketBuffers_ParksUntilThePeerReads()
    {
        _stream.Dispose();
        _peer.Dispose();
        var (stream, peer) = Pair(bufferSize: 64 * 1024);
        using var _ = stream;
        using var __ = peer;

        var data = Bytes(8 << 20, 5);
        var writing = stream.WriteAsync(data).AsTask();
        Assert.That(writing.IsCompleted, Is.False, "8 MB do not fit in the socket buffers");

        var received = await Task.Run(() =>
        {
            var all = new byte[data.Length];
            var at = 0;
            while (at < all.Length)
            {
                var n = peer.Receive(all.AsSpan(at));
                if (n == 0)
                {
                    break;
                }

                at += n;
            }

            return all.AsSpan(0, at).ToArray();
        }).WaitAsync(Deadline);

        await writing.WaitAsync(Deadline);
        Assert.That(received, Is.EqualTo(data));
    }

    [Test]
    public async Task DisposingTheStream_EndsAParkedReadAndAParkedWrite_AsNetworkStreamDoes()
    {
        _stream.Dispose();
        _peer.Dispose();
        var (stream, peer) = Pair(bufferSize: 64 * 1024);
        using var _ = peer;
        var reading = stream.ReadAsync(new byte[8]).AsTask();
        var writing = stream.WriteAsync(Bytes(8 << 20, 1)).AsTask();
        Assert.That((reading.IsCompleted, writing.IsCompleted), Is.EqualTo((false, false)));

        stream.Dispose();
        // As NetworkStream: an operation under way ends with an IOException (what the sessions catch for a gone peer).
        foreach (var pending in new Task[] { reading, writing })
        {
            var error = Assert.CatchAsync(async () => await pending.WaitAsync(Deadline));
            Assert.That(error, Is.InstanceOf<IOException>());
            Assert.That((error!.InnerException as SocketException)?.SocketErrorCode, Is.EqualTo(SocketError.OperationAborted));
        }

        Assert.That(() => stream.ReadAsync(new byte[8]).AsTask(), Throws.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public async Task MayHaveInput_IsFalseAfterADrainingRead_AndTrueOnceThePeerWritesOrCloses()
    {
        var buffer = new byte[64];
        _peer.Send(Bytes(4, 1));
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(4));
        Assert.That(_stream.MayHaveInput, Is.False, "drained, no edge since");

        _peer.Send(Bytes(1, 1));
        await Poll.UntilAsync(() => _stream.MayHaveInput, "the peer's byte is seen");
        Assert.That(await Within(_stream.ReadAsync(buffer)), Is.EqualTo(1));
        Assert.That(_stream.MayHaveInput, Is.False);

        _peer.Shutdown(SocketShutdown.Send);
        await Poll.UntilAsync(() => _stream.MayHaveInput, "the peer's close is seen");
        Assert.That(_stream.Socket.Poll(0, SelectMode.SelectRead), Is.True);
    }

    [Test]
    public void AnErrorFromTheSocket_IsAnIOExceptionOverASocketException()
    {
        _peer.LingerState = new LingerOption(true, 0);
        _peer.Close();
        var error = Assert.CatchAsync(async () =>
        {
            // A reset peer: the first write may still be accepted, a later one fails.
            for (var i = 0; i < 100; i++)
            {
                await _stream.WriteAsync(Bytes(1024, 1)).AsTask().WaitAsync(Deadline);
                await Task.Yield();
            }
        });
        Assert.That(error, Is.InstanceOf<IOException>());
        Assert.That((error!.InnerException as SocketException)?.SocketErrorCode, Is.AnyOf(SocketError.ConnectionReset, SocketError.Shutdown),
            "ECONNRESET, or EPIPE once the reset has been taken in");
    }

    [Test]
    public void AReadFromAResetPeer_FailsWithConnectionReset_AsANetworkStreamRead()
    {
        // The stream calls recv(2) itself: the errno must come out as .NET's own read would report it.
        _peer.LingerState = new LingerOption(true, 0);
        _peer.Close();
        var error = Assert.CatchAsync<IOException>(async () => await Within(_stream.ReadAsync(new byte[16])));
        Assert.That((error!.InnerException as SocketException)?.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset));
    }

    [Test]
    public async Task AThousandStreams_LeaveNoDescriptorAndNoSlotBehind()
    {
        static int Descriptors() => Directory.GetFiles("/proc/self/fd").Length;
        var registered = EpollEngine.Shared.Registered;
        var before = Descriptors();
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        for (var i = 0; i < 1000; i++)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            client.Connect(listener.LocalEndPoint!);
            var stream = new SocketStream(listener.Accept());
            if (i % 10 == 0)
            {
                // Some with a read parked when they go.
                _ = stream.ReadAsync(new byte[4]).AsTask();
            }

            await stream.DisposeAsync();
        }

        Assert.That(EpollEngine.Shared.Registered, Is.EqualTo(registered));
        Assert.That(Descriptors() - before, Is.LessThan(10), "descriptors left open");
    }

    /// <summary>Streams made until one is (or is not) served by <see cref="_stream"/>'s event thread; the others are disposed.</summary>
    private (SocketStream Stream, Socket Peer) PairOnThread(bool shared)
    {
        for (var i = 0; i < 16; i++)
        {
            var (stream, peer) = Pair();
            if (stream.SharesEventThreadWith(_stream) == shared)
            {
                return (stream, peer);
            }

            stream.Dispose();
            peer.Dispose();
        }

        throw new AssertionException("sixteen streams in a row all went to the same event thread: they are given out round-robin");
    }

    [Test]
    public async Task JoiningAnotherStreamsEventThread_MovesTheSocket_AndLosesNoWakeUp_EvenAsDataArrives()
    {
        Assume.That(EpollEngine.Shared.ThreadCount, Is.GreaterThanOrEqualTo(2), "one event thread: there is nowhere to move");
        var (away, awayPeer) = PairOnThread(shared: false);
        var (home, homePeer) = PairOnThread(shared: true);
        using (awayPeer)
        using (homePeer)
        using (away)
        using (home)
        {
            var lost = EpollEngine.Shared.LostWakeups;
            var buffer = new byte[4];
            for (var i = 0; i < 200; i++)
            {
                // A read parked, the socket moved (to the other thread, then back) while the peer writes: the read ends
                // well before the watchdog could rescue a lost edge (two sweeps, 2 s apart).
                var read = _stream.ReadAsync(buffer);
                var target = i % 2 == 0 ? away : home;
                var move = Task.Run(() => _stream.JoinEventThreadOf(target));
                _peer.Send([(byte)i]);
                Assert.That(await read.AsTask().WaitAsync(TimeSpan.FromSeconds(1.5)), Is.EqualTo(1), $"round {i}");
                Assert.That(buffer[0], Is.EqualTo((byte)i));
                await move.WaitAsync(Deadline);
                Assert.That(_stream.SharesEventThreadWith(target), Is.True, $"round {i}: moved");
                Assert.That(_stream.SharesEventThreadWith(i % 2 == 0 ? home : away), Is.False);
                var watchers = WatchersOf(_stream.Descriptor);
                Assert.That(watchers, Has.Count.EqualTo(1), $"round {i}: watched by one epoll instance, not by none or two");
                Assert.That(watchers, Is.EqualTo(WatchersOf(target.Descriptor)), $"round {i}: the one that watches the stream it joined");
            }

            // Moved for good: edges keep coming on the new thread (writes parked for room included).
            _stream.JoinEventThreadOf(away);
            var big = Bytes(4 << 20, 3);
            var write = _stream.WriteAsync(big).AsTask();
            var received = new byte[big.Length];
            var total = 0;
            while (total < big.Length)
            {
                total += await _peer.ReceiveAsync(received.AsMemory(total)).AsTask().WaitAsync(Deadline);
            }

            await write.WaitAsync(Deadline);
            Assert.That(received, Is.EqualTo(big));
            Assert.That(EpollEngine.Shared.LostWakeups, Is.EqualTo(lost), "the watchdog found no lost wake-up");
        }
    }

    /// <summary>The engine's epoll instances that watch <paramref name="fd"/>: each watched descriptor is a "tfd:" line of the instance's fdinfo.</summary>
    private static List<int> WatchersOf(int fd) =>
    [
        .. EpollEngine.Shared.EpollDescriptors.Where(epfd => File.ReadLines($"/proc/self/fdinfo/{epfd}").Any(line =>
            line.StartsWith("tfd:", StringComparison.Ordinal)
            && int.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) == fd)),
    ];

    [Test]
    public async Task AStreamDisposedWhileItMoves_LeavesNoDescriptorAndNoSlotBehind()
    {
        Assume.That(EpollEngine.Shared.ThreadCount, Is.GreaterThanOrEqualTo(2), "one event thread: there is nowhere to move");
        static int Descriptors() => Directory.GetFiles("/proc/self/fd").Length;
        var registered = EpollEngine.Shared.Registered;
        var before = Descriptors();
        using var start = new Barrier(2);
        for (var i = 0; i < 300; i++)
        {
            var (stream, peer) = PairOnThread(shared: false);
            using (peer)
            {
                var read = stream.ReadAsync(new byte[4]).AsTask();

                // The move and the dispose start together, on two threads.
                var move = Task.Factory.StartNew(() =>
                {
                    start.SignalAndWait(Deadline);
                    stream.JoinEventThreadOf(_stream);
                }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                start.SignalAndWait(Deadline);
                await stream.DisposeAsync();
                await move.WaitAsync(Deadline);
                Assert.CatchAsync<IOException>(async () => await read.WaitAsync(Deadline), "the parked read ends with the stream");
            }
        }

        Assert.That(EpollEngine.Shared.Registered, Is.EqualTo(registered));
        Assert.That(Descriptors() - before, Is.LessThan(10), "descriptors left open");

        // The engine still serves the stream every one of them tried to join, from one epoll instance.
        Assert.That(WatchersOf(_stream.Descriptor), Has.Count.EqualTo(1));
        var ping = _stream.ReadAsync(new byte[1]);
        _peer.Send([7]);
        Assert.That(await Within(ping), Is.EqualTo(1));
    }

    [Test]
    public async Task Connect_ThroughTheEngine_GivesAWorkingStream_AndARefusedPortIsASocketException()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await using var stream = await SocketStreams.ConnectAsync(socket, listener.LocalEndPoint!, useEpoll: true, CancellationToken.None).AsTask().WaitAsync(Deadline);
        Assert.That(stream, Is.InstanceOf<SocketStream>());
        using var peer = listener.Accept();
        await stream.WriteAsync(Bytes(3, 1));
        var buffer = new byte[3];
        Assert.That(peer.Receive(buffer), Is.EqualTo(3));
        peer.Send(Bytes(2, 2));
        Assert.That(await Within(stream.ReadAsync(buffer)), Is.EqualTo(2));

        var closedPort = ((IPEndPoint)listener.LocalEndPoint!).Port;
        listener.Close();
        var refused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var error = Assert.CatchAsync<SocketException>(async () =>
            await SocketStreams.ConnectAsync(refused, new IPEndPoint(IPAddress.Loopback, closedPort), useEpoll: true, CancellationToken.None).AsTask().WaitAsync(Deadline));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
        Assert.That(() => refused.Available, Throws.InstanceOf<ObjectDisposedException>(), "the failed socket is closed");
    }

    [Test]
    public async Task Connect_ToAUnixSocket_GivesAWorkingStream()
    {
        var path = Path.Combine(Path.GetTempPath(), $"poold-io-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        try
        {
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await using var stream = await SocketStreams.ConnectAsync(socket, new UnixDomainSocketEndPoint(path), useEpoll: true, CancellationToken.None)
                .AsTask().WaitAsync(Deadline);
            using var peer = listener.Accept();
            peer.Send(Bytes(6, 1));
            var buffer = new byte[16];
            Assert.That(await Within(stream.ReadAsync(buffer)), Is.EqualTo(6));
            await stream.WriteAsync(Bytes(2, 9));
            Assert.That(peer.Receive(buffer), Is.EqualTo(2));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public async Task CancellationRacingData_EndsEachReadOnce_AndLosesNoByte()
    {
        var buffer = new byte[8];
        var received = 0;
        for (var i = 0; i < 1000; i++)
        {
            using var cts = new CancellationTokenSource();
            var reading = _stream.ReadAsync(buffer, cts.Token).AsTask();
            var send = Task.Run(() => _peer.Send(Bytes(1, i)));
            await cts.CancelAsync();
            await send;
            try
            {
                received += await reading.WaitAsync(Deadline);
            }
            catch (OperationCanceledException)
            {
                // The byte is still in the socket: the next read takes it.
                received += await Within(_stream.ReadAsync(buffer));
            }

            Assert.That(received, Is.EqualTo(i + 1), $"round {i}");
        }
    }

    [Test]
    public async Task CancelPendingRead_EndsTheParkedRead_OrElseTheNextOne_Once()
    {
        var buffer = new byte[8];
        var parked = _stream.ReadAsync(buffer).AsTask();
        Assert.That(parked.IsCompleted, Is.False);
        _stream.CancelPendingRead();
        Assert.That(async () => await parked.WaitAsync(Deadline), Throws.InstanceOf<OperationCanceledException>());

        // Nothing parked: kept for the next read (a zero-byte wait too), which ends canceled at once; the one after waits.
        _stream.CancelPendingRead();
        Assert.That(async () => await _stream.ReadAsync(Memory<byte>.Empty), Throws.InstanceOf<OperationCanceledException>());
        var next = _stream.ReadAsync(buffer).AsTask();
        Assert.That(next.IsCompleted, Is.False, "the request was used up");
        _peer.Send(Bytes(3, 2));
        Assert.That(await next.WaitAsync(Deadline), Is.EqualTo(3));
        Assert.That(buffer[..3], Is.EqualTo(Bytes(3, 2)));
    }

    /// <summary>A request racing the read's parking, with nothing to read: each read ends canceled (a lost request would park it for good).</summary>
    [Test]
    public async Task CancelPendingRead_RacingTheParking_IsNeverLost()
    {
        var buffer = new byte[8];
        for (var i = 0; i < 5000; i++)
        {
            var cancel = Task.Run(_stream.CancelPendingRead);
            var reading = _stream.ReadAsync(i % 2 == 0 ? buffer : Memory<byte>.Empty).AsTask();
            await cancel;
            Assert.That(async () => await reading.WaitAsync(Deadline), Throws.InstanceOf<OperationCanceledException>(), $"round {i}");
        }
    }

    [Test]
    public async Task CancelPendingRead_RacingData_EndsEachReadOnce_AndLosesNoByte()
    {
        var buffer = new byte[8];
        var received = 0;
        for (var i = 0; i < 1000; i++)
        {
            var reading = _stream.ReadAsync(buffer).AsTask();
            var send = Task.Run(() => _peer.Send(Bytes(1, i)));
            var cancel = Task.Run(_stream.CancelPendingRead);
            await Task.WhenAll(send, cancel);
            while (true)
            {
                try
                {
                    var count = await reading.WaitAsync(Deadline);
                    received += count;
                    if (count > 0)
                    {
                        break;
                    }
                }
                catch (OperationCanceledException)
                {
                    // The byte is still in the socket: a later read takes it (the first may end canceled, the request
                    // having come after the data).
                }

                reading = _stream.ReadAsync(buffer).AsTask();
            }

            Assert.That(received, Is.EqualTo(i + 1), $"round {i}");
        }
    }

    [Test]
    public async Task ManyStreamsAtOnce_EchoEveryByteInOrder()
    {
        var pairs = Enumerable.Range(0, 16).Select(_ => Pair()).ToArray();
        try
        {
            await Task.WhenAll(pairs.Select((pair, n) => Task.Run(async () =>
            {
                var (stream, peer) = pair;
                var echo = Task.Run(() =>
                {
                    // The peer echoes with blocking calls on a thread of its own.
                    var chunk = new byte[4096];
                    int got;
                    while ((got = peer.Receive(chunk)) > 0)
                    {
                        peer.Send(chunk.AsSpan(0, got));
                    }
                });
                var random = new Random(n);
                var outgoing = new byte[3000];
                var incoming = new byte[3000];
                for (var round = 0; round < 200; round++)
                {
                    var size = random.Next(1, outgoing.Length);
                    random.NextBytes(outgoing.AsSpan(0, size));
                    await stream.WriteAsync(outgoing.AsMemory(0, size));
                    var at = 0;
                    while (at < size)
                    {
                        var got = await stream.ReadAsync(incoming.AsMemory(at, random.Next(1, size - at + 1)));
                        Assert.That(got, Is.GreaterThan(0));
                        at += got;
                    }

                    Assert.That(incoming.AsSpan(0, size).SequenceEqual(outgoing.AsSpan(0, size)), Is.True, $"pair {n} round {round}");
                }

                peer.Shutdown(SocketShutdown.Send);
                await stream.DisposeAsync();
                await echo;
            }))).WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            foreach (var (stream, peer) in pairs)
            {
                stream.Dispose();
                peer.Dispose();
            }
        }
    }

    [Test]
    public void ASlotReused_HasANewToken()
    {
        var (first, _) = EpollEngine.Shared.Reserve();
        EpollEngine.Shared.Release(first);
        var (second, _) = EpollEngine.Shared.Reserve();
        EpollEngine.Shared.Release(second);
        Assert.That((uint)second, Is.EqualTo((uint)first), "the freed slot is taken again");
        Assert.That(second, Is.Not.EqualTo(first), "with another generation: its old events are dropped");
    }

    [Test]
    public async Task PingPong_AllocatesNothingPerRoundTrip()
    {
        var request = Bytes(40, 1);
        var buffer = new byte[64];
        var peerBuffer = new byte[64];
        async Task RoundTripsAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                await _stream.WriteAsync(request);
                var got = 0;
                while (got < request.Length)
                {
                    got += _peer.Receive(peerBuffer.AsSpan(got, request.Length - got));
                }

                var read = _stream.ReadAsync(buffer);
                _peer.Send(peerBuffer.AsSpan(0, request.Length));
                var n = await read;
                while (n < request.Length)
                {
                    n += await _stream.ReadAsync(buffer.AsMemory(n));
                }
            }
        }

        // Counted over every thread, the test host's included: the least of three runs, so that the host reporting
        // another test's result meanwhile is not taken for the stream's allocations (which would be in all three).
        await Task.Run(() => RoundTripsAsync(200));
        var perTrip = double.MaxValue;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            await Task.Run(() => RoundTripsAsync(2000));
            perTrip = Math.Min(perTrip, (GC.GetTotalAllocatedBytes(precise: true) - before) / 2000.0);
        }

        Assert.That(perTrip, Is.LessThan(16), $"{perTrip:0.0} bytes per round trip");
    }
}
