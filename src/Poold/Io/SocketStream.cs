using System.Net.Sockets;
using System.Threading.Tasks.Sources;

using Poold.Protocol;

namespace Poold.Io;

/// <summary>
/// A <see cref="Stream"/> over a non-blocking socket watched by <see cref="EpollEngine"/>: readiness first, so a read in
/// the steady state never meets EAGAIN, and nothing is allocated per read or write (the stream is the value-task source
/// of its one pending read and its one pending write). Errors are <see cref="IOException"/>s wrapping a
/// <see cref="SocketException"/>, as <see cref="NetworkStream"/>'s; the stream owns the socket.
/// <para>
/// <b>Readiness.</b> <see cref="_readiness"/> has two bits: <c>Edge</c>, set by the event thread on EPOLLIN (and on every
/// hang-up or error) and cleared by a reader just before it calls recv; and <c>Hangup</c>, set on EPOLLRDHUP, EPOLLHUP,
/// EPOLLERR or a read that saw the end or an error, and never cleared (data followed by a FIN may arrive in one edge that
/// one short read does not exhaust; with the bit, the next read goes to the kernel and sees the end). A read that
/// filled its whole buffer sets <c>Edge</c> again: more may be queued, and an edge-triggered epoll will not say so.
/// A zero-byte read completes as soon as the stream is readable, without a recv. <see cref="_writability"/> works the
/// same way for EPOLLOUT, except that a writer always tries send first and clears <c>Edge</c> only after an EAGAIN, then
/// tries once more before it parks.
/// </para>
/// <para>
/// <b>Hand-off invariant.</b> For each direction, <c>_readParked</c>/<c>_writeParked</c> is 1 exactly while a parked
/// operation is owned by nobody. A caller parks by storing 1 (a full fence) and then reading the flag; the event thread
/// sets the flag (a full fence) and then reads the parked word: at least one of them sees the other, so an edge is never
/// lost. Whoever moves the parked word from 1 to 0 with a compare-exchange (the event thread, the parking caller that
/// saw the flag, a cancellation callback, or <see cref="Dispose(bool)"/>) owns the operation and is the only one to
/// complete it, or to park it again by storing 1 and re-checking. No lock is taken on this path. A parked operation's
/// cancellation registration is disposed in GetResult, before its caller can start the next one, so a late callback
/// never meets a later operation.
/// </para>
/// <para>
/// At most one read and one write may be pending at a time (the pipe reader and SslStream keep to that; a second
/// concurrent read is a caller's bug and is not detected). An operation parked when the stream is disposed ends with an
/// IOException over <see cref="SocketError.OperationAborted"/>, as NetworkStream's; one started after, with an
/// ObjectDisposedException.
/// </para>
/// </summary>
internal sealed partial class SocketStream : Stream, IValueTaskSource<int>, IValueTaskSource, ITokenlessReadCancel
{
    private const int Edge = 1;
    private const int Hangup = 2;

    private readonly Socket _socket;
    private readonly SafeSocketHandle _handle;
    private readonly EpollEngine _engine;
    private readonly int _fd;

    /// <summary>The epoll instance, hence the event thread, that watches the socket; changed only by <see cref="JoinEventThreadOf"/>.</summary>
    private int _epollFd;

    private int _readiness;
    private int _writability;
    private int _readParked;

    /// <summary>1 from <see cref="CancelPendingRead"/> until a read ends canceled by it.</summary>
    private int _readCancel;
    private int _writeParked;
    private int _disposed;

    private ManualResetValueTaskSourceCore<int> _readCore;
    private Memory<byte> _readBuffer;
    private CancellationToken _readToken;
    private CancellationTokenRegistration _readRegistration;

    private ManualResetValueTaskSourceCore<bool> _writeCore;
    private ReadOnlyMemory<byte> _writeBuffer;
    private CancellationToken _writeToken;
    private CancellationTokenRegistration _writeRegistration;

    /// <summary>
    /// Makes <paramref name="socket"/>'s descriptor non-blocking and registers it with <paramref name="engine"/> (the shared
    /// one by default). From here on the socket is read and written only through this stream (see
    /// <see cref="SocketNative.SetNonBlocking"/>).
    /// </summary>
    public SocketStream(Socket socket, EpollEngine? engine = null)
    {
        _socket = socket;
        _engine = engine ?? EpollEngine.Shared;
        _readCore.RunContinuationsAsynchronously = false;
        _writeCore.RunContinuationsAsynchronously = false;
        _handle = socket.SafeHandle;
        _fd = (int)_handle.DangerousGetHandle();
        var nonBlocking = SocketNative.SetNonBlocking(_handle, nonBlocking: true);
        if (nonBlocking != 0)
        {
            throw new IOException($"fcntl could not make the socket non-blocking: errno {nonBlocking}");
        }

        (Token, _epollFd) = _engine.Reserve();
        _engine.Publish(Token, this);
        var error = EpollEngine.Watch(_epollFd, _fd, Token);
        if (error != 0)
        {
            _engine.Release(Token);
            throw new IOException($"epoll_ctl could not watch the socket: errno {error}");
        }
    }

    /// <summary>
    /// Moves this socket to the event thread that serves <paramref name="other"/>'s, so that both ends of a relay wake
    /// the same thread: a session's client socket and the server connections bound to it. Otherwise a statement's
    /// request is read on one thread and its reply on the other, each waking a thread of its own (bench/hot-path.sh,
    /// session mode, 16 clients, 2 cores: 44 µs of Poold's CPU per select with two event threads against 35 with one
    /// before; 36–39 with two since).
    /// <para>
    /// No edge is lost: adding a socket to an epoll instance reports the readiness it has at once (so the new thread
    /// also gets a write-readiness event it does not need). It is added to the new instance before it leaves the old one,
    /// so a failed epoll_ctl leaves it watched where it was; for that moment an edge may come on both threads, which is
    /// harmless (a parked operation goes to whoever wins its compare-exchange). Called by the stream's owner. A Dispose
    /// on another thread meanwhile is safe but abortive: the descriptor is held while the socket moves, so its number
    /// cannot go to another socket, and .NET's close, finding it held, resets the connection rather than closing it.
    /// </para>
    /// </summary>
    internal void JoinEventThreadOf(SocketStream other)
    {
        var target = other.EpollFd;
        var current = EpollFd;
        if (target == current || !ReferenceEquals(_engine, other._engine) || Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            if (EpollEngine.Watch(target, _fd, Token) != 0)
            {
                return;
            }

            // A full fence, as Dispose's exchange of _disposed: one of the two sees the other's write.
            Interlocked.Exchange(ref _epollFd, target);
            EpollEngine.Unwatch(current, _fd);
            if (Volatile.Read(ref _disposed) != 0)
            {
                // Disposed while moving: its Unwatch may have read the old descriptor.
                EpollEngine.Unwatch(target, _fd);
            }
        }
        catch (ObjectDisposedException)
        {
            // Closed already: nothing to move.
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    /// <summary>Whether this socket and <paramref name="other"/> are served by the same event thread (tests).</summary>
    internal bool SharesEventThreadWith(SocketStream other) => EpollFd == other.EpollFd;

    private int EpollFd => Volatile.Read(ref _epollFd);

    /// <summary>The socket's descriptor (the engine's watchdog polls it).</summary>
    internal int Descriptor => _fd;

    /// <summary>
    /// For the engine's watchdog: a read is parked and no edge has come since (nothing should be readable), with the
    /// park's identity (the value-task version), to tell the same park from a later one.
    /// </summary>
    internal bool ReadWaitsForEdge(out short version)
    {
        version = _readCore.Version;
        return Volatile.Read(ref _readParked) == 1 && Volatile.Read(ref _readiness) == 0 && Volatile.Read(ref _disposed) == 0;
    }

    /// <summary>As <see cref="ReadWaitsForEdge"/>, for a write waiting for room.</summary>
    internal bool WriteWaitsForEdge(out short version)
    {
        version = _writeCore.Version;
        return Volatile.Read(ref _writeParked) == 1 && Volatile.Read(ref _writability) == 0 && Volatile.Read(ref _disposed) == 0;
    }

    /// <summary>The local and remote ends, for a watchdog report.</summary>
    internal string Describe()
    {
        try
        {
            return $"{_socket.LocalEndPoint}, remote {_socket.RemoteEndPoint}";
        }
        catch (Exception e) when (e is ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            return "closed";
        }
    }

    /// <summary>This stream's registration: slot index and generation (see <see cref="EpollEngine"/>).</summary>
    public ulong Token { get; }

    public Socket Socket => _socket;

    /// <summary>
    /// False when no edge has come since a read found the socket drained: no input, and no hang-up, can be waiting.
    /// True means there may be (a read that filled its buffer, or an event since): ask the kernel.
    /// </summary>
    public bool MayHaveInput => Volatile.Read(ref _readiness) != 0;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Called by the event thread with the events epoll reported for this stream.</summary>
    internal void OnEvents(uint events)
    {
        const uint hangup = EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr;
        var read = (events & (EpollNative.EpollIn | hangup)) != 0;
        var write = (events & (EpollNative.EpollOut | EpollNative.EpollHup | EpollNative.EpollErr)) != 0;
        if (read)
        {
            Interlocked.Or(ref _readiness, (events & hangup) != 0 ? Edge | Hangup : Edge);
        }

        if (write)
        {
            Interlocked.Or(ref _writability, (events & (EpollNative.EpollHup | EpollNative.EpollErr)) != 0 ? Edge | Hangup : Edge);
        }

        if (read && Volatile.Read(ref _readParked) == 1 && Interlocked.CompareExchange(ref _readParked, 0, 1) == 1)
        {
            ResumeRead();
        }

        if (write && Volatile.Read(ref _writeParked) == 1 && Interlocked.CompareExchange(ref _writeParked, 0, 1) == 1)
        {
            ResumeWrite();
        }
    }

    /// <summary>
    /// For a connect started on the non-blocking socket: completes when the socket is writable (connected, or failed:
    /// the caller reads SO_ERROR).
    /// </summary>
    internal ValueTask WaitWritableAsync(CancellationToken cancellationToken) =>
        cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled(cancellationToken) : ParkWrite(ReadOnlyMemory<byte>.Empty, cancellationToken);

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) =>
        cancellationToken.IsCancellationRequested ? Task.FromCanceled(cancellationToken) : Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            // Unwatched before the close: the descriptor number may be reused at once by another socket.
            EpollEngine.Unwatch(EpollFd, _fd);
            Interlocked.Or(ref _readiness, Edge | Hangup);
            Interlocked.Or(ref _writability, Edge | Hangup);
            _socket.Dispose();
            _engine.Release(Token);

            // A parked operation, taken here, sees _disposed and fails as NetworkStream's do: an IOException over
            // SocketError.OperationAborted. A call that starts after this gets an ObjectDisposedException.
            if (Interlocked.CompareExchange(ref _readParked, 0, 1) == 1)
            {
                ResumeRead();
            }

            if (Interlocked.CompareExchange(ref _writeParked, 0, 1) == 1)
            {
                ResumeWrite();
            }
        }

        base.Dispose(disposing);
    }

    private static IOException Failure(SocketError error, bool reading) =>
        new(reading ? $"Unable to read data from the transport connection: {new SocketException((int)error).Message}."
                : $"Unable to write data to the transport connection: {new SocketException((int)error).Message}.",
            new SocketException((int)error));

    private static IOException Aborted(bool reading) => Failure(SocketError.OperationAborted, reading);

    private ObjectDisposedException Disposed() => new(GetType().FullName);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _readCore.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _readCore.OnCompleted(continuation, state, token, flags);

    int IValueTaskSource<int>.GetResult(short token)
    {
        try
        {
            return _readCore.GetResult(token);
        }
        finally
        {
            // Here, before the caller can start its next read: once Dispose returns, the callback cannot run for this one.
            var registration = _readRegistration;
            _readRegistration = default;
            registration.Dispose();
        }
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _writeCore.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _writeCore.OnCompleted(continuation, state, token, flags);

    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            _writeCore.GetResult(token);
        }
        finally
        {
            var registration = _writeRegistration;
            _writeRegistration = default;
            registration.Dispose();
        }
    }
}
