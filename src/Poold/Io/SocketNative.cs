using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Poold.Io;

/// <summary>
/// send(2) and recv(2) straight on a socket's descriptor, for <see cref="SocketStream"/>'s hot path. .NET's
/// <c>Socket.Send</c>/<c>Receive</c> cost a few hundred nanoseconds per call above the system call (checks, the blocking
/// mode, flag and errno translation through its native shim): four calls per relayed statement. The socket's
/// <see cref="SafeHandle"/> is held for the length of the call, as .NET does, so a concurrent close cannot release
/// the descriptor, and a socket opened meanwhile cannot get its number, while the call uses it.
/// </summary>
internal static unsafe partial class SocketNative
{
    /// <summary>MSG_NOSIGNAL: a peer that has gone gives EPIPE, not SIGPIPE (as .NET's own send).</summary>
    private const int NoSignal = 0x4000;

    /// <summary>Sends what it can of <paramref name="buffer"/>; throws ObjectDisposedException when the socket is closed.</summary>
    public static SocketError Send(SafeHandle socket, ReadOnlySpan<byte> buffer, out int sent)
    {
        fixed (byte* data = buffer)
        {
            return Transfer(socket, data, buffer.Length, send: true, out sent);
        }
    }

    /// <summary>Receives into <paramref name="buffer"/> (0 at the end of the stream); throws ObjectDisposedException when the socket is closed.</summary>
    public static SocketError Receive(SafeHandle socket, Span<byte> buffer, out int received)
    {
        fixed (byte* data = buffer)
        {
            return Transfer(socket, data, buffer.Length, send: false, out received);
        }
    }

    /// <summary>As <see cref="Receive"/>, leaving the bytes queued (MSG_PEEK).</summary>
    public static SocketError Peek(SafeHandle socket, Span<byte> buffer, out int received)
    {
        fixed (byte* data = buffer)
        {
            return Transfer(socket, data, buffer.Length, send: false, out received, Peeking);
        }
    }

    /// <summary>
    /// Sets or clears O_NONBLOCK on the descriptor itself, behind the <see cref="Socket"/>'s back: its
    /// <see cref="Socket.Blocking"/> setter would also build .NET's asynchronous context for the socket (about 250 bytes,
    /// kept as long as the socket), which a socket served by <see cref="EpollEngine"/> never uses. Such a socket must
    /// then not be read, written or connected through the <see cref="Socket"/> (which still takes it for blocking).
    /// Returns 0 or the errno.
    /// </summary>
    public static int SetNonBlocking(SafeHandle socket, bool nonBlocking)
    {
        var added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            var fd = (int)socket.DangerousGetHandle();
            var flags = Control(fd, GetFlags, 0);
            if (flags < 0)
            {
                return Marshal.GetLastPInvokeError();
            }

            var wanted = nonBlocking ? flags | NonBlock : flags & ~NonBlock;
            return wanted == flags || Control(fd, SetFlags, wanted) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>Whether the descriptor has O_NONBLOCK (tests).</summary>
    internal static bool IsNonBlocking(SafeHandle socket)
    {
        var added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            return (Control((int)socket.DangerousGetHandle(), GetFlags, 0) & NonBlock) != 0;
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    private const int Peeking = 0x2;

    /// <summary>MSG_DONTWAIT: no call blocks, whatever the descriptor's mode (the calls without a GC transition rely on it).</summary>
    private const int DontWait = 0x40;
    private const int GetFlags = 3;
    private const int SetFlags = 4;
    private const int NonBlock = 0x800;

    private static SocketError Transfer(SafeHandle socket, byte* data, int length, bool send, out int count, int flags = 0)
    {
        var added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            var fd = (int)socket.DangerousGetHandle();
            var result = (send, length <= QuickTransferLimit) switch
            {
                (true, true) => QuickSendCall(fd, data, (nuint)length, NoSignal | DontWait | flags),
                (true, false) => SendCall(fd, data, (nuint)length, NoSignal | DontWait | flags),
                (false, true) => QuickReceiveCall(fd, data, (nuint)length, DontWait | flags),
                (false, false) => ReceiveCall(fd, data, (nuint)length, DontWait | flags),
            };
            count = result > 0 ? (int)result : 0;
            return result >= 0 ? SocketError.Success : ToSocketError(Marshal.GetLastSystemError());
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>Linux's errno values that send and recv give, as .NET reports them (anything else: SocketError.SocketError).</summary>
    internal static SocketError ToSocketError(int errno) => errno switch
    {
        4 => SocketError.Interrupted,
        9 => SocketError.OperationAborted,
        11 => SocketError.WouldBlock,
        12 or 105 => SocketError.NoBufferSpaceAvailable,
        22 => SocketError.InvalidArgument,
        32 => SocketError.Shutdown,
        90 => SocketError.MessageSize,
        100 => SocketError.NetworkDown,
        101 => SocketError.NetworkUnreachable,
        103 => SocketError.ConnectionAborted,
        104 => SocketError.ConnectionReset,
        107 => SocketError.NotConnected,
        110 => SocketError.TimedOut,
        111 => SocketError.ConnectionRefused,
        113 => SocketError.HostUnreachable,
        _ => SocketError.SocketError,
    };

    // No SetLastError on send and recv: its stub clears errno before the call and stores it per thread after every
    // call (bench/hot-path.sh, pgbench -S, perf: __tls_get_addr, thread-local access, fell from 1.9% of Poold's samples
    // to 0.5% without it). errno is read only after a failure, straight from the C library (Marshal.GetLastSystemError).
    // Whatever the runtime does between the return and that read (the transition back to cooperative mode, or the GC
    // poll after a call without one) keeps errno: CoreCLR preserves the last error, which is errno on Linux, across it.
    [LibraryImport("libc", EntryPoint = "send")]
    private static partial nint SendCall(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv")]
    private static partial nint ReceiveCall(int fd, byte* buffer, nuint length, int flags);

    /// <summary>
    /// Transfers up to this size (every statement's request and reply on the hot path; the readers' buffers are 16 and 64
    /// KiB) go through <see cref="QuickSendCall"/> and <see cref="QuickReceiveCall"/>; larger ones, whose copy alone may
    /// take tens of microseconds, through the calls with a GC transition.
    /// </summary>
    private const int QuickTransferLimit = 64 * 1024;

    // Without a GC transition: the thread stays in cooperative mode through the call, which saves the stub's frame setup
    // and its switches to preemptive mode and back (the stub was 1.2% of Poold's samples, four calls per statement). A
    // garbage collection that starts meanwhile waits for the call to return, so these are only for calls that cannot
    // block and are short: every call passes MSG_DONTWAIT (a descriptor left in blocking mode returns EAGAIN at once) and
    // moves at most QuickTransferLimit bytes (on loopback, the receiver's side of TCP runs inside send: microseconds).
    [LibraryImport("libc", EntryPoint = "send")]
    [SuppressGCTransition]
    private static partial nint QuickSendCall(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv")]
    [SuppressGCTransition]
    private static partial nint QuickReceiveCall(int fd, byte* buffer, nuint length, int flags);

    /// <summary>fcntl(2) with an int argument (F_GETFL, F_SETFL), the only forms used here.</summary>
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Control(int fd, int command, int argument);
}
