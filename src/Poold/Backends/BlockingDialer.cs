using System.Net.Sockets;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Backends;

/// <summary>
/// The health check's connections: blocking sockets, read and written by the check's own thread. Sockets used
/// asynchronously are served by .NET's event threads, which run Poold's session continuations inline (see
/// Hosting/SocketTuning); a session with a long run of buffered work delays every other socket on its event thread,
/// and a health check waiting there timed out on a healthy node. A blocking socket never enters that engine, so
/// nothing a client sends can make a check late. The deadline closes the socket, which ends a blocked call.
/// </summary>
internal static class BlockingDialer
{
    public static readonly BackendDialer Dial = DialAsync;

    private static Task<(Socket Socket, Stream Stream)> DialAsync(BackendSettings node, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        var socket = node.IsUnixSocket
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var connectDeadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (connectTimeout > TimeSpan.Zero)
        {
            connectDeadline.CancelAfter(connectTimeout);
        }

        try
        {
            using (connectDeadline.Token.Register(static s => ((Socket)s!).Dispose(), socket))
            {
                if (node.IsUnixSocket)
                {
                    socket.Connect(new UnixDomainSocketEndPoint(BackendConnection.SocketPath(node)));
                }
                else
                {
                    socket.Connect(node.Hostname, node.Port);
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            socket.Dispose();
            cancellationToken.ThrowIfCancellationRequested();
            var why = connectDeadline.IsCancellationRequested ? $"timed out after {connectTimeout.TotalMilliseconds:0} ms (connect_timeout)" : e.Message;
            throw new BackendException(node.Id, SqlState.ConnectionFailure, $"could not connect to backend node {node.Id}: {why}", e);
        }

        return Task.FromResult<(Socket, Stream)>((socket, new BlockingStream(socket, cancellationToken)));
    }

    /// <summary>A stream whose asynchronous calls block: the async login code then runs straight through on the calling thread.</summary>
    private sealed class BlockingStream : Stream
    {
        private readonly Socket _socket;
        private readonly CancellationTokenRegistration _onCancel;

        public BlockingStream(Socket socket, CancellationToken cancellationToken)
        {
            _socket = socket;
            _onCancel = cancellationToken.Register(static s => ((Socket)s!).Dispose(), socket);
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            try
            {
                return _socket.Receive(buffer);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                throw new IOException(e.Message, e);
            }
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(Read(buffer.Span));
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            try
            {
                while (!buffer.IsEmpty)
                {
                    buffer = buffer[_socket.Send(buffer)..];
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                throw new IOException(e.Message, e);
            }
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _onCancel.Dispose();
                _socket.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
