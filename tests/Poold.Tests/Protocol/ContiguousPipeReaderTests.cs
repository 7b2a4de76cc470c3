using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Poold.Io;
using Poold.Protocol;

namespace Poold.Tests.Protocol;

/// <summary>
/// The relay's reader over a real loopback connection: the PipeReader contract the sessions rely on, over .NET's
/// stream and over Poold's own (<see cref="SocketStream"/>).
/// </summary>
[FixtureLifeCycle(LifeCycle.InstancePerTestCase)]
[TestFixture(false)]
[TestFixture(true)]
public sealed class ContiguousPipeReaderTests : IDisposable
{
    private readonly Socket _peer;
    private readonly Stream _stream;
    private readonly ContiguousPipeReader _reader;

    public ContiguousPipeReaderTests(bool ownEngine)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        _peer = listener.Accept();
        _stream = ownEngine ? new SocketStream(client) : new NetworkStream(client, ownsSocket: true);
        _reader = new ContiguousPipeReader(_stream, bufferSize: 64, minimumReadSize: 16);
    }

    public void Dispose()
    {
        _reader.Dispose();
        _stream.Dispose();
        _peer.Dispose();
    }

    private static byte[] Bytes(int count, int seed) => [.. Enumerable.Range(0, count).Select(i => (byte)(i * 7 + seed))];

    private Task<byte[]> ReadExactlyAsync(int count) => PipeReaderChecks.ReadExactlyAsync(_reader, count);

    [Test]
    public async Task BytesArriveInOrder_AcrossReads_AndAFrameLargerThanTheBufferGrowsIt()
    {
        var sent = Bytes(10_000, 3);
        var send = Task.Run(async () =>
        {
            for (var offset = 0; offset < sent.Length; offset += 777)
            {
                await _peer.SendAsync(sent.AsMemory(offset, Math.Min(777, sent.Length - offset)));
                await Task.Yield();
            }
        });

        // Waits for all 10 000 bytes in one contiguous buffer (64 bytes at first), as for a frame that must be whole.
        var received = await ReadExactlyAsync(sent.Length);
        await send;
        Assert.That(received, Is.EqualTo(sent));
    }

    [Test]
    public async Task EveryReadResult_IsOneSegment()
    {
        await _peer.SendAsync(Bytes(50, 1));
        var first = await _reader.ReadAsync();
        Assert.That(first.Buffer.IsSingleSegment, Is.True);
        _reader.AdvanceTo(first.Buffer.GetPosition(10), first.Buffer.End);
        await _peer.SendAsync(Bytes(500, 2));
        var second = await _reader.ReadAsync();
        Assert.That(second.Buffer.IsSingleSegment, Is.True);
        Assert.That(second.Buffer.Slice(0, 40).ToArray(), Is.EqualTo(Bytes(50, 1)[10..]), "unconsumed bytes are kept, in order");
    }

    [Test]
    public async Task UnexaminedBytes_AreReturnedAtOnce_ExaminedOnes_WaitForMore()
    {
        await _peer.SendAsync(Bytes(20, 5));
        var result = await _reader.ReadAsync();
        Assert.That(result.Buffer.Length, Is.EqualTo(20));
        _reader.AdvanceTo(result.Buffer.GetPosition(5));
        var again = await _reader.ReadAsync();
        Assert.That(again.Buffer.Length, Is.EqualTo(15), "consumed 5, examined nothing more: returned without waiting");

        _reader.AdvanceTo(again.Buffer.Start, again.Buffer.End);
        var waiting = _reader.ReadAsync().AsTask();
        Assert.That(waiting.IsCompleted, Is.False, "everything examined: waits for new bytes");
        await _peer.SendAsync(Bytes(3, 9));
        var more = await waiting;
        Assert.That(more.Buffer.Length, Is.EqualTo(18));
    }

    [Test]
    public async Task CancelPendingRead_EndsTheWait_AsACanceledResult_AndTheReaderGoesOn()
    {
        var waiting = _reader.ReadAsync().AsTask();
        Assert.That(waiting.IsCompleted, Is.False);
        _reader.CancelPendingRead();
        var canceled = await waiting;
        Assert.That(canceled.IsCanceled, Is.True);

        _reader.CancelPendingRead();
        Assert.That((await _reader.ReadAsync()).IsCanceled, Is.True, "a cancel without a read pending applies to the next read");

        await _peer.SendAsync(Bytes(4, 4));
        var data = await _reader.ReadAsync();
        Assert.That((data.IsCanceled, data.Buffer.ToArray()), Is.EqualTo((false, Bytes(4, 4))));
    }

    /// <summary>
    /// A cancel racing the peer's data (over Poold's stream it is the stream's own, without a token): each round's read
    /// ends, canceled or with the byte, and the byte is never lost; a cancel left over from a round only cancels a read.
    /// </summary>
    [Test]
    public async Task CancelPendingRead_RacingData_LosesNoWakeUpAndNoByte()
    {
        await PipeReaderChecks.CancelRacingDataAsync(_reader, async b => await _peer.SendAsync(new[] { b }), rounds: 500);
    }

    /// <summary>
    /// A cancel request the stream still keeps when the reader completes (one that raced a read's completion) goes with
    /// the reader: the socket's next reader (the session's last words to a client read it directly) is not canceled.
    /// </summary>
    [Test]
    public async Task ARequestLeftWithTheStream_IsWithdrawnWhenTheReaderCompletes()
    {
        if (_stream is ITokenlessReadCancel tokenless)
        {
            tokenless.CancelPendingRead();
        }

        _reader.Complete();
        var buffer = new byte[8];
        var read = _stream.ReadAsync(buffer).AsTask();
        await _peer.SendAsync(Bytes(3, 5));
        Assert.That(await read.WaitAsync(TimeSpan.FromSeconds(10)), Is.EqualTo(3));
    }

    [Test]
    public async Task TheCallersToken_EndsTheWaitWithAnException()
    {
        using var cts = new CancellationTokenSource();
        var waiting = _reader.ReadAsync(cts.Token).AsTask();
        await cts.CancelAsync();
        Assert.That(async () => await waiting, Throws.InstanceOf<OperationCanceledException>());

        await _peer.SendAsync(Bytes(2, 1));
        Assert.That((await _reader.ReadAsync()).Buffer.Length, Is.EqualTo(2), "the connection is still usable");
    }

    [Test]
    public async Task ThePeerClosing_CompletesTheReader_WithWhatWasLeft()
    {
        await _peer.SendAsync(Bytes(7, 1));
        _peer.Shutdown(SocketShutdown.Send);
        var result = await _reader.ReadAsync();
        while (!result.IsCompleted)
        {
            _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            result = await _reader.ReadAsync();
        }

        Assert.That(result.Buffer.ToArray(), Is.EqualTo(Bytes(7, 1)));
    }

    [Test]
    public void ASecondReadWhileOneIsPending_IsRefused()
    {
        var pending = _reader.ReadAsync();
        Assert.That(pending.IsCompleted, Is.False);
        Assert.That(() => _reader.ReadAsync(), Throws.InvalidOperationException);
        _reader.CancelPendingRead();
    }

    [Test]
    public async Task ManyRequestsAndReplies_AllocateNothingPerRead()
    {
        var reply = Bytes(40, 1);
        async Task RoundTripsAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                var read = _reader.ReadAsync();
                await _peer.SendAsync(reply.AsMemory(), SocketFlags.None);
                var result = await read;
                while (result.Buffer.Length < reply.Length)
                {
                    _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                    result = await _reader.ReadAsync();
                }

                _reader.AdvanceTo(result.Buffer.End);
            }
        }

        // On the thread pool, as Poold's sessions run: on the test's own thread, since NUnit 4.6 / adapter 6.3, the
        // continuations cost ~190 bytes per read that Poold never pays.
        await Task.Run(() => RoundTripsAsync(200));
        var perRead = double.MaxValue;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            // The least of three: the test host reporting another test's result meanwhile allocates too.
            var before = GC.GetTotalAllocatedBytes(precise: true);
            await Task.Run(() => RoundTripsAsync(2000));
            perRead = Math.Min(perRead, (GC.GetTotalAllocatedBytes(precise: true) - before) / 2000.0);
        }

        // Counted over every thread; a state machine per read, as the pipeline's stream reader has, is about 100 bytes.
        Assert.That(perRead, Is.LessThan(16), $"{perRead:0.0} bytes per read");
    }
}
