using System.Net;
using System.Net.Sockets;

namespace Poold.Io;

/// <summary>
/// The one place that chooses the stream a session's sockets (clients and backends) are spoken on: .NET's
/// <see cref="SocketStream"/> on Poold's own engine (Linux, the default), or .NET's <see cref="NetworkStream"/> on other
/// systems and with <c>POOLD_IO_ENGINE=dotnet</c> (read once, at first use). Other sockets (PCP, metrics, cancel
/// forwarding, health checks) keep .NET's streams.
/// </summary>
internal static class SocketStreams
{
    public const string EngineVariable = "POOLD_IO_ENGINE";

    /// <summary>True when Poold's own engine serves the sessions' sockets: on Linux, unless <c>POOLD_IO_ENGINE=dotnet</c>.</summary>
    public static bool UseEpoll { get; } = OperatingSystem.IsLinux()
        && !string.Equals(Environment.GetEnvironmentVariable(EngineVariable), "dotnet", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// A stream that owns <paramref name="socket"/> (connected, never used with .NET's asynchronous methods): a
    /// <see cref="SocketStream"/>, or a <see cref="NetworkStream"/> when the engine is off or cannot watch one more socket.
    /// </summary>
    public static Stream Create(Socket socket) => Create(socket, UseEpoll);

    /// <summary>As <see cref="Create(Socket)"/>, with the engine chosen by the caller (tests run both).</summary>
    internal static Stream Create(Socket socket, bool useEpoll)
    {
        if (useEpoll)
        {
            try
            {
                return new SocketStream(socket);
            }
            catch (IOException)
            {
                // epoll_ctl refused it (max_user_watches): .NET's engine still can. The descriptor is back in blocking
                // mode, as the Socket takes it to be (its engine sets O_NONBLOCK itself when it registers the socket).
                _ = SocketNative.SetNonBlocking(socket.SafeHandle, nonBlocking: false);
            }
        }

        return new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>
    /// Connects <paramref name="socket"/> to <paramref name="endPoint"/> (an address, not a name) and returns the stream
    /// that owns it; disposes the socket on failure. With the engine on, the connect is started non-blocking and its
    /// completion awaited on the engine, so .NET's engine never registers the socket.
    /// </summary>
    public static ValueTask<Stream> ConnectAsync(Socket socket, EndPoint endPoint, CancellationToken cancellationToken) =>
        ConnectAsync(socket, endPoint, UseEpoll, cancellationToken);

    /// <summary>As <see cref="ConnectAsync(Socket, EndPoint, CancellationToken)"/>, with the engine chosen by the caller (tests run both).</summary>
    internal static async ValueTask<Stream> ConnectAsync(Socket socket, EndPoint endPoint, bool useEpoll, CancellationToken cancellationToken)
    {
        if (!useEpoll)
        {
            try
            {
                await socket.ConnectAsync(endPoint, cancellationToken);
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            return new NetworkStream(socket, ownsSocket: true);
        }

        SocketStream stream;
        var pending = false;
        try
        {
            socket.Blocking = false;
            try
            {
                socket.Connect(endPoint);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress)
            {
                pending = true;
            }

            stream = new SocketStream(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        if (!pending)
        {
            return stream;
        }

        try
        {
            await stream.WaitWritableAsync(cancellationToken);
            var error = (SocketError)(int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
            if (error != SocketError.Success)
            {
                throw new SocketException((int)error);
            }

            // Lets the Socket learn it is connected (it polls once while a non-blocking connect is in progress).
            _ = socket.Connected;
            return stream;
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
    }
}
