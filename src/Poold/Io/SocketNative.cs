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

    private static SocketError Transfer(SafeHandle socket, byte* data, int length, bool send, out int count)
    {
        var added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            var fd = (int)socket.DangerousGetHandle();
            var result = send ? SendCall(fd, data, (nuint)length, NoSignal) : ReceiveCall(fd, data, (nuint)length, 0);
            count = result > 0 ? (int)result : 0;
            return result >= 0 ? SocketError.Success : ToSocketError(Marshal.GetLastPInvokeError());
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

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SendCall(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint ReceiveCall(int fd, byte* buffer, nuint length, int flags);
}
