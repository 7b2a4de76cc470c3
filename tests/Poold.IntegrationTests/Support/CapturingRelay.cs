using System.Net;
using System.Net.Sockets;

namespace Poold.IntegrationTests.Support;

/// <summary>A TCP relay between a client and Poold that keeps every byte it carries, both ways, for inspection.</summary>
internal sealed class CapturingRelay : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly int _target;
    private readonly MemoryStream _captured = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public CapturingRelay(int targetPort)
    {
        _target = targetPort;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    public int Port { get; }

    public byte[] Captured
    {
        get
        {
            lock (_captured)
            {
                return _captured.ToArray();
            }
        }
    }

    private async Task AcceptAsync()
    {
        var pumps = new List<Task>();
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var server = new TcpClient();
                await server.ConnectAsync(IPAddress.Loopback, _target, _stop.Token);
                pumps.Add(PumpAsync(client, server));
                pumps.Add(PumpAsync(server, client));
            }
        }
        catch (OperationCanceledException)
        {
            await Task.WhenAll(pumps);
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            // TcpClient.GetStream refuses once the socket is shut down (by the other direction's pump): taken once, and
            // that refusal is one more way of finding the other side gone.
            var source = from.GetStream();
            var target = to.GetStream();
            int n;
            while ((n = await source.ReadAsync(buffer, _stop.Token)) > 0)
            {
                lock (_captured)
                {
                    _captured.Write(buffer, 0, n);
                }

                await target.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // One side closed: close the other.
        }
        finally
        {
            try
            {
                to.Client.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already closed.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
        _captured.Dispose();
    }
}
