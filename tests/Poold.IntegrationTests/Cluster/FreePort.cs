using System.Net;
using System.Net.Sockets;

namespace Poold.IntegrationTests.Cluster;

/// <summary>A loopback TCP port nobody listens on right now (bind to port 0, read it, release it).</summary>
internal static class FreePort
{
    public static int Get()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
