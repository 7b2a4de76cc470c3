using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Poold.Auth;
using Poold.Backends;
using Poold.Config;
using Poold.Hosting;
using Serilog;

namespace Poold.Pcp;

/// <summary>What the PCP server needs from the host.</summary>
internal interface IPcpHost
{
    public PooldSettings Settings { get; }

    public NodeRegistry Nodes { get; }

    /// <summary>The sessions that are past their startup.</summary>
    public IReadOnlyList<Sessions.ClientSession> Sessions { get; }

    /// <summary>pcp.conf: <c>-F</c>, else next to the configuration file.</summary>
    public string PcpConfPath { get; }

    public DateTimeOffset StartedAt { get; }

    public void Reload();

    public void RequestStop(StopMode mode);

    /// <summary>pcp_detach_node: the primary goes through the failover path. Returns an error message, or null.</summary>
    public string? DetachNode(int id);
}

/// <summary>
/// The PCP admin port (compat §4), wire-compatible with pgpool-II 4.x: pgpool's own pcp_* tools and Poold's work
/// against it. One task per connection; a connection authenticates with pgpool's salted md5 against pcp.conf, then
/// carries any number of requests. A malformed request gets a PCP error; nothing a client sends stops the server.
/// At most pcp_max_connections are open at once (more are closed on accept), and one that has not authenticated is
/// closed after pcp_authentication_timeout of silence, so idle sockets cannot fill the port.
/// </summary>
internal sealed class PcpServer : IAsyncDisposable
{
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromMinutes(5);

    /// <summary>pcp_authentication_timeout, 5 s when set to 0 (a PCP client authenticates in one round trip).</summary>
    private static TimeSpan PreAuthIdle(PooldSettings settings) =>
        settings.Get(Params.PcpAuthenticationTimeout) is var t && t > TimeSpan.Zero ? t : TimeSpan.FromSeconds(5);

    private readonly IPcpHost _host;
    private readonly ILogger _log;
    private readonly List<Listener> _listeners;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private int _open;

    private PcpServer(IPcpHost host, ILogger log, List<Listener> listeners)
    {
        _host = host;
        _log = log.ForContext<PcpServer>();
        _listeners = listeners;
    }

    public IReadOnlyList<Listener> Listeners => _listeners;

    /// <summary>PCP connections open now.</summary>
    public int OpenConnections => Volatile.Read(ref _open);

    /// <summary>Binds pcp_listen_addresses:pcp_port and the socket in each pcp_socket_dir, and starts accepting.</summary>
    public static PcpServer Start(IPcpHost host, ILogger log)
    {
        var settings = host.Settings;
        var listeners = Listener.BindAll(settings.Get(Params.PcpListenAddresses), settings.Get(Params.PcpSocketDir), settings.Get(Params.PcpPort),
            backlog: 16, settings.Get(Params.UnixSocketPermissions), log);
        var server = new PcpServer(host, log, listeners);
        foreach (var listener in listeners)
        {
            log.Information("PCP listening on {Endpoint}", listener.Description);
            server._loops.Add(server.AcceptLoopAsync(listener));
        }

        return server;
    }

    private async Task AcceptLoopAsync(Listener listener)
    {
        await Task.Yield();
        var connections = new List<Task>();
        var backoff = new AcceptBackoff();
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var socket = await listener.AcceptAsync(_stop.Token);
                backoff.Succeeded();
                connections.RemoveAll(t => t.IsCompleted);
                if (Interlocked.Increment(ref _open) > _host.Settings.Get(Params.PcpMaxConnections))
                {
                    Interlocked.Decrement(ref _open);
                    _log.Debug("PCP connection refused: pcp_max_connections ({Max}) are open", _host.Settings.Get(Params.PcpMaxConnections));
                    socket.Dispose();
                    continue;
                }

                connections.Add(ServeAsync(socket));
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            catch (SocketException e)
            {
                var (delay, log) = backoff.Failed();
                if (log)
                {
                    _log.Warning("PCP accept failed on {Endpoint} ({Failures} in a row): {Reason}", listener.Description, backoff.Failures, e.Message);
                }

                try
                {
                    await Task.Delay(delay, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        await Task.WhenAll(connections);
    }

    private async Task ServeAsync(Socket socket)
    {
        await Task.Yield();
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var connection = new PcpConnection(this, stream);
        try
        {
            await connection.RunAsync(_stop.Token);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or EndOfStreamException
                                      or ObjectDisposedException)
        {
            // The client went away.
        }
        catch (Exception e)
        {
            _log.Error(e, "PCP connection failed unexpectedly");
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    }

    /// <summary>Serves one PCP connection over <paramref name="stream"/>, without listeners (the fuzzing harness).</summary>
    internal static async Task ServeStreamAsync(IPcpHost host, ILogger log, Stream stream, CancellationToken cancellationToken)
    {
        await using var server = new PcpServer(host, log, []);
        await new PcpConnection(server, stream).RunAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }

        await Task.WhenAll(_loops);
        _stop.Dispose();
    }

    /// <summary>One PCP client connection: authentication, then requests until 'X' or end of stream.</summary>
    private sealed class PcpConnection(PcpServer server, Stream stream)
    {
        private byte[]? _salt;
        private bool _authenticated;
        private string _user = "";

        private IPcpHost Host => server._host;

        public async Task RunAsync(CancellationToken stop)
        {
            while (true)
            {
                (byte Tag, byte[] Body)? packet;
                using (var idle = CancellationTokenSource.CreateLinkedTokenSource(stop))
                {
                    idle.CancelAfter(_authenticated ? IdleTimeout : PreAuthIdle(Host.Settings));
                    try
                    {
                        packet = await PcpPacket.ReadAsync(stream, PcpPacket.MaxRequestLength, idle.Token);
                    }
                    catch (PcpProtocolException e)
                    {
                        await FatalAsync("invalid PCP packet", $"incorrect packet length ({e.Length})");
                        return;
                    }
                }

                if (packet is not { } p || p.Tag == (byte)'X')
                {
                    return;
                }

                if (!await HandleAsync(p.Tag, p.Body))
                {
                    return;
                }
            }
        }

        /// <summary>Handles one request; false ends the connection (after a FATAL).</summary>
        private async Task<bool> HandleAsync(byte tag, byte[] body)
        {
            switch ((char)tag)
            {
                case 'M':
                    _salt = RandomNumberGenerator.GetBytes(4);
                    await SendAsync(PcpPacket.Frame((byte)'m', _salt));
                    return true;
                case 'R':
                    return await AuthenticateAsync(body);
            }

            if (!_authenticated)
            {
                await FatalAsync("authentication failed for new PCP connection", "connection not authorized");
                return false;
            }

            var argument = PcpPacket.SplitStrings(body) is [var first, ..] ? first : "";
            switch ((char)tag)
            {
                case 'L':
                    await SendAsync(PcpPacket.Strings((byte)'l', PcpPacket.CommandComplete, Host.Nodes.Current.Nodes.Length.ToString(CultureInfo.InvariantCulture)));
                    return true;
                case 'I':
                    await NodeInfoAsync(Atoi(argument));
                    return true;
                case 'H':
                    await HealthCheckStatsAsync(Atoi(argument));
                    return true;
                case 'N':
                    await SendAsync(PcpPacket.Strings((byte)'n', [PcpPacket.CommandComplete, Host.Sessions.Count.ToString(CultureInfo.InvariantCulture),
                        .. Host.Sessions.Select(s => s.Id.ToString(CultureInfo.InvariantCulture))]));
                    return true;
                case 'P':
                    await ProcessInfoAsync(Atoi(argument));
                    return true;
                case 'B':
                    await PoolStatusAsync();
                    return true;
                case 'C':
                    return await NodeCommandAsync((byte)'c', "attach", Atoi(argument), id => Host.Nodes.Attach(id));
                case 'D' or 'd':
                    return await NodeCommandAsync((byte)'d', tag == (byte)'d' ? "detach (gracefully)" : "detach", Atoi(argument), Host.DetachNode);
                case 'J' or 'j':
                    {
                        var text = Encoding.ASCII.GetString(body);
                        var space = text.IndexOfAny([' ', '\0']);
                        var id = Atoi(space >= 0 ? text[..space] : text);
                        var error = Host.Nodes.Promote(id);
                        if (error is not null)
                        {
                            await FatalAsync("invalid promote request", error);
                            return false;
                        }

                        Log("promote", id);
                        await SendAsync(PcpPacket.Strings((byte)'d', PcpPacket.CommandComplete));
                        return true;
                    }

                case 'T' or 't':
                    {
                        var mode = body.Length > 0 ? (char)body[0] : 's';
                        StopMode? stopMode = mode switch
                        {
                            's' => StopMode.Smart,
                            'f' => StopMode.Fast,
                            'i' => StopMode.Immediate,
                            _ => null,
                        };
                        if (stopMode is null)
                        {
                            await ErrorAsync("failed to process PCP request at the moment", $"invalid shutdown mode \"{mode}\"");
                            return true;
                        }

                        server._log.Information("PCP: stop requested by {User} ({Mode})", _user, stopMode);
                        await SendAsync(PcpPacket.Strings((byte)'t', PcpPacket.CommandComplete));
                        Host.RequestStop(stopMode.Value);
                        return false;
                    }

                case 'Z':
                    server._log.Information("PCP: reload requested by {User}", _user);
                    Host.Reload();
                    await SendAsync(PcpPacket.Strings((byte)'z', PcpPacket.CommandComplete));
                    return true;
                case 'W':
                    await ErrorAsync("PCP: informing watchdog info failed", "watchdog is not enabled");
                    return true;
                case 'A':
                    await SendAsync(PcpPacket.Strings((byte)'a', PcpPacket.CommandComplete));
                    return true;
                case 'O':
                    await ErrorAsync("recovery failed", "online recovery is not supported by Poold: rebuild the standby (pg_basebackup) and attach it");
                    return true;
                case 'V' or 'G':
                    await SendAsync(PcpPacket.Strings((byte)char.ToLowerInvariant((char)tag), PcpPacket.CommandComplete));
                    return true;
                default:
                    await FatalAsync("PCP processing request", $"unknown PCP packet type \"{(char)tag}\"");
                    return false;
            }
        }

        /// <summary>pgpool's check: md5hex(md5hex(stored ‖ user) ‖ salt), stored being pcp.conf's md5 of the password.</summary>
        private async Task<bool> AuthenticateAsync(byte[] body)
        {
            var fields = PcpPacket.SplitStrings(body);
            var user = fields.Count > 0 ? fields[0] : "";
            var hash = fields.Count > 1 ? fields[1] : "";
            var stored = _salt is null ? null : PcpConf.Find(Host.PcpConfPath, user);
            var expected = stored is null || _salt is null ? null : Md5Password.SaltedResponse(Md5Password.Hash(stored, user), _salt)[3..];
            _salt = null;
            if (expected is null || !FixedTime.Equals(expected, hash))
            {
                server._log.Warning("PCP: authentication failed for user {User}", user);
                await FatalAsync(user.Length > 0 ? $"authentication failed for user \"{user}\"" : "authentication failed",
                    "username and/or password does not match");
                return false;
            }

            _authenticated = true;
            _user = user;
            await SendAsync(PcpPacket.Strings((byte)'r', "AuthenticationOK"));
            return true;
        }

        private async Task<bool> NodeCommandAsync(byte reply, string what, int id, Func<int, string?> change)
        {
            if (change(id) is { } error)
            {
                await ErrorAsync($"{what} node failed", error);
                return true;
            }

            Log(what, id);
            await SendAsync(PcpPacket.Strings(reply, PcpPacket.CommandComplete));
            return true;
        }

        private void Log(string what, int id) => server._log.Warning("PCP: {What} node {NodeId} requested by {User}", what, id, _user);

        private async Task NodeInfoAsync(int id)
        {
            var nodes = Host.Nodes.Current;
            if (id != -1 && (id < 0 || id >= nodes.Nodes.Length))
            {
                await ErrorAsync("informing node info failed", $"invalid node ID : {id}");
                return;
            }

            var selected = id == -1 ? nodes.Nodes.ToList() : [nodes.Nodes[id]];
            var reachable = await Task.WhenAll(selected.Select(NodeReport.ReachableAsync));
            var v44 = Host.Settings.Get(Params.PcpProtocol) == PcpProtocolVersion.V44;
            await SendAsync(PcpPacket.Strings((byte)'i', "ArraySize", selected.Count.ToString(CultureInfo.InvariantCulture)));
            for (var i = 0; i < selected.Count; i++)
            {
                await SendAsync(PcpPacket.Strings((byte)'i', ["NodeInfo", .. NodeReport.NodeInfoFields(selected[i], nodes, reachable[i], v44)]));
            }

            await SendAsync(PcpPacket.Strings((byte)'i', PcpPacket.CommandComplete));
        }

        private async Task HealthCheckStatsAsync(int id)
        {
            var nodes = Host.Nodes.Current;
            if (id < 0 || id >= nodes.Nodes.Length)
            {
                await ErrorAsync("informing health check stats info failed", $"invalid node ID {id}");
                return;
            }

            await SendAsync(PcpPacket.Strings((byte)'h', [PcpPacket.CommandComplete, .. NodeReport.HealthCheckFields(nodes.Nodes[id], nodes, Host.Nodes.Health[id])]));
        }

        private async Task ProcessInfoAsync(int pid)
        {
            var rows = NodeReport.ProcessRows(Host.Sessions, pid);
            if (pid != 0 && rows.Count == 0)
            {
                await ErrorAsync("informing process info failed", $"invalid process ID : {pid}");
                return;
            }

            await SendAsync(PcpPacket.Strings((byte)'p', "ArraySize", rows.Count.ToString(CultureInfo.InvariantCulture)));
            foreach (var row in rows)
            {
                await SendAsync(PcpPacket.Strings((byte)'p', ["ProcessInfo", .. row]));
            }

            await SendAsync(PcpPacket.Strings((byte)'p', PcpPacket.CommandComplete));
        }

        private async Task PoolStatusAsync()
        {
            var rows = NodeReport.PoolStatus(Host.Settings, Host.Nodes.Current);
            await SendAsync(PcpPacket.BinaryArraySize((byte)'b', rows.Count));
            foreach (var (name, value, description) in rows)
            {
                await SendAsync(PcpPacket.Strings((byte)'b', "ProcessConfig", name, value, description));
            }

            await SendAsync(PcpPacket.Strings((byte)'b', PcpPacket.CommandComplete));
        }

        private Task ErrorAsync(string message, string detail) => SendAsync(PcpPacket.Error("ERROR", message, detail));

        private Task FatalAsync(string message, string detail) => SendAsync(PcpPacket.Error("FATAL", message, detail));

        private async Task SendAsync(byte[] packet)
        {
            await stream.WriteAsync(packet);
            await stream.FlushAsync();
        }

        /// <summary>C's atoi, as pgpool parses ids: leading digits (with a sign), anything else 0.</summary>
        private static int Atoi(string text)
        {
            text = text.Trim();
            var end = 0;
            if (end < text.Length && text[end] is '-' or '+')
            {
                end++;
            }

            while (end < text.Length && char.IsAsciiDigit(text[end]))
            {
                end++;
            }

            return int.TryParse(text.AsSpan(0, end), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) ? value : 0;
        }
    }
}
