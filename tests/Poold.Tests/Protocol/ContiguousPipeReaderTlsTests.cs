using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using Poold.Io;
using Poold.Protocol;
using Poold.Tests.Tls;

namespace Poold.Tests.Protocol;

/// <summary>
/// The relay's reader over a TLS stream on Poold's socket stream, as a TLS client's session reads: it cancels its
/// pending read through the socket (no token of its own), and the TLS stream survives that cancel between records and
/// in the middle of one.
/// </summary>
public sealed class ContiguousPipeReaderTlsTests
{
    private Socket? _serverSocket;
    private Socket? _clientSocket;
    private SslStream? _server;
    private SslStream? _client;
    private HoldingStream? _clientTransport;
    private ContiguousPipeReader? _reader;

    [SetUp]
    public async Task HandshakeAsync()
    {
        using var certificate = TestCertificates.SelfSignedLocalhost();

        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        _clientSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await _clientSocket.ConnectAsync(listener.LocalEndPoint!);
        _serverSocket = await listener.AcceptAsync();

        var transport = new SocketStream(_serverSocket);
        _server = new SslStream(transport);
        _clientTransport = new HoldingStream(new NetworkStream(_clientSocket, ownsSocket: false));
        _client = new SslStream(_clientTransport, false, (_, presented, _, _) => presented is not null);
        await Task.WhenAll(
            _server.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }),
            _client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" })).WaitAsync(TimeSpan.FromSeconds(30));
        _reader = new ContiguousPipeReader(_server, bufferSize: 64, minimumReadSize: 16, transport);
    }

    [TearDown]
    public async Task CloseAsync()
    {
        _reader?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        if (_client is not null)
        {
            await _client.DisposeAsync();
        }

        // Already closed with the client's TLS stream, which owns it; said here for the analyzer.
        _clientTransport?.Dispose();
        _clientSocket?.Dispose();
        _serverSocket?.Dispose();
    }

    [Test]
    public async Task CancelPendingRead_BetweenRecords_EndsTheWait_AndTheNextRecordReadsWhole()
    {
        var waiting = _reader!.ReadAsync().AsTask();
        Assert.That(waiting.IsCompleted, Is.False);
        _reader.CancelPendingRead();
        var canceled = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That((canceled.IsCanceled, canceled.Buffer.Length), Is.EqualTo((true, 0L)));

        var payload = RandomNumberGenerator.GetBytes(300);
        await _client!.WriteAsync(payload);
        Assert.That(await ReadExactlyAsync(payload.Length), Is.EqualTo(payload));
    }

    [Test]
    public async Task CancelPendingRead_InTheMiddleOfARecord_LosesNothingOfIt()
    {
        var payload = RandomNumberGenerator.GetBytes(1000);

        // The record's first 20 bytes go out; the rest waits until the test lets it go.
        _clientTransport!.HoldAfter(20);
        var write = _client!.WriteAsync(payload).AsTask();
        await _clientTransport.Held.WaitAsync(TimeSpan.FromSeconds(10));

        await Poll.UntilAsync(() => _serverSocket!.Available >= 20, "the record's first bytes arrive");
        var waiting = _reader!.ReadAsync().AsTask();
        await Poll.UntilAsync(() => _serverSocket!.Available == 0, "the TLS stream has taken them");
        Assert.That(waiting.IsCompleted, Is.False, "a part of a record is no data yet");
        _reader.CancelPendingRead();
        var canceled = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That((canceled.IsCanceled, canceled.Buffer.Length), Is.EqualTo((true, 0L)));

        _clientTransport.Release();
        await write.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(await ReadExactlyAsync(payload.Length), Is.EqualTo(payload));

        // And the connection goes on both ways.
        await _server!.WriteAsync(payload);
        var back = new byte[payload.Length];
        await _client.ReadExactlyAsync(back).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(back, Is.EqualTo(payload));
    }

    [Test]
    public async Task CancelRacingRecords_LosesNoByte()
    {
        await PipeReaderChecks.CancelRacingDataAsync(_reader!, async b => await _client!.WriteAsync(new[] { b }), rounds: 200);
    }

    private Task<byte[]> ReadExactlyAsync(int count) => PipeReaderChecks.ReadExactlyAsync(_reader!, count);

    /// <summary>A client transport that can send the first bytes of its next write and hold the rest back.</summary>
    private sealed class HoldingStream(Stream inner) : Stream
    {
        private int _holdAfter = -1;
        private TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Held => _held.Task;

        public void HoldAfter(int bytes)
        {
            _holdAfter = bytes;
            _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public void Release() => _release.SetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_holdAfter >= 0 && buffer.Length > _holdAfter)
            {
                var split = _holdAfter;
                _holdAfter = -1;
                await inner.WriteAsync(buffer[..split], cancellationToken);
                await inner.FlushAsync(cancellationToken);
                _held.TrySetResult();
                await _release.Task;
                buffer = buffer[split..];
            }

            await inner.WriteAsync(buffer, cancellationToken);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            inner.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            inner.ReadAsync(buffer, offset, count, cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
