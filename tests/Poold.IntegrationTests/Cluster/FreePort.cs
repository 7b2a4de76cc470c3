using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Poold.IntegrationTests.Cluster;

/// <summary>
/// A loopback TCP port nobody listens on right now (bind to port 0, read it, release it), and one this test run has not
/// handed out before: two calls in a row may otherwise get the same port back from the kernel (the metrics port and
/// Poold's own port of one instance, say), and the second server then fails to bind it.
/// </summary>
internal static class FreePort
{
    private static readonly ConcurrentDictionary<int, byte> HandedOut = new();

    public static int Get()
    {
        while (true)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
            if (HandedOut.TryAdd(port, 0))
            {
                return port;
            }
        }
    }
}
