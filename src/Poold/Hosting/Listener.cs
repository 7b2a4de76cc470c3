using System.Net;
using System.Net.Sockets;
using Serilog;

namespace Poold.Hosting;

/// <summary>One listening socket (TCP address or Unix socket file) and its accept loop.</summary>
internal sealed class Listener : IDisposable
{
    private readonly Socket _socket;
    private readonly string? _unixPath;

    private Listener(Socket socket, string description, string? unixPath)
    {
        _socket = socket;
        Description = description;
        _unixPath = unixPath;
    }

    public string Description { get; }

    public EndPoint LocalEndPoint => _socket.LocalEndPoint!;

    public bool IsUnix => _unixPath is not null;

    /// <summary>Binds every address of <c>listen_addresses</c> and every directory of <c>unix_socket_directories</c>.</summary>
    public static List<Listener> BindAll(IReadOnlyList<string> addresses, IReadOnlyList<string> socketDirectories, int port, int backlog,
        int socketPermissions, ILogger log)
    {
        var listeners = new List<Listener>();
        try
        {
            foreach (var address in ExpandAddresses(addresses))
            {
                try
                {
                    listeners.Add(BindTcp(address, port, backlog));
                }
                catch (SocketException e) when (address.Equals(IPAddress.IPv6Loopback))
                {
                    // 'localhost' on a machine without IPv6: IPv4 loopback is enough.
                    log.Debug("not listening on ::1: {Reason}", e.Message);
                }
            }

            foreach (var dir in socketDirectories)
            {
                if (!Directory.Exists(dir))
                {
                    log.Warning("unix_socket_directories: directory {Directory} does not exist; no Unix socket there", dir);
                    continue;
                }

                listeners.Add(BindUnix(Path.Combine(dir, $".s.PGSQL.{port}"), backlog, socketPermissions));
            }
        }
        catch
        {
            foreach (var l in listeners)
            {
                l.Dispose();
            }

            throw;
        }

        return listeners;
    }

    /// <summary>'*' is every address (IPv6 dual-stack when available); 'localhost' is the loopback addresses.</summary>
    private static IEnumerable<IPAddress> ExpandAddresses(IReadOnlyList<string> addresses)
    {
        var result = new List<IPAddress>();
        foreach (var text in addresses)
        {
            if (text == "*")
            {
                result.Add(Socket.OSSupportsIPv6 ? IPAddress.IPv6Any : IPAddress.Any);
            }
            else if (text.Equals("localhost", StringComparison.OrdinalIgnoreCase))
            {
                result.Add(IPAddress.Loopback);
                if (Socket.OSSupportsIPv6)
                {
                    result.Add(IPAddress.IPv6Loopback);
                }
            }
            else if (IPAddress.TryParse(text, out var ip))
            {
                result.Add(ip);
            }
            else
            {
                result.AddRange(Dns.GetHostAddresses(text));
            }
        }

        return result.Distinct();
    }

    private static Listener BindTcp(IPAddress address, int port, int backlog)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(backlog);
            return new Listener(socket, $"{address}:{port}", null);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static Listener BindUnix(string path, int backlog, int permissions)
    {
        if (File.Exists(path))
        {
            // A socket file left by a process that is gone: PostgreSQL and pgpool-II remove it too.
            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(backlog);
            File.SetUnixFileMode(path, (UnixFileMode)permissions);
            return new Listener(socket, path, path);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public ValueTask<Socket> AcceptAsync(CancellationToken cancellationToken) => _socket.AcceptAsync(cancellationToken);

    public void Dispose()
    {
        _socket.Dispose();
        if (_unixPath is not null)
        {
            try
            {
                File.Delete(_unixPath);
            }
            catch (IOException)
            {
                // Best effort: a leftover socket file is removed at the next start.
            }
        }
    }
}
