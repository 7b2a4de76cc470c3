using System.Net.Sockets;
using System.Text;
using Poold.Metrics;
using Serilog;

namespace Poold.Hosting;

/// <summary>
/// The HTTP port of <c>metrics_listen_addresses</c>:<c>metrics_port</c>: <c>GET /metrics</c> (Prometheus text format
/// from the host's <see cref="PooldMetrics"/> registry) and <c>GET /health</c> (200 while this Poold accepts clients and
/// has a primary, 503 otherwise, for a load balancer's check). A small HTTP/1.1 server of Poold's own rather than
/// prometheus-net's <c>MetricServer</c>, which serves one path only: <c>/health</c> has to share the port. One request per
/// connection, a head of at most 8 KiB read within 5 s, at most 32 connections at once; anything else is refused.
/// </summary>
internal sealed class MetricsEndpoint : IAsyncDisposable
{
    private const int MaxHead = 8192;
    private const int MaxConnections = 32;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    private readonly List<Listener> _listeners;
    private readonly PooldMetrics _metrics;
    private readonly Func<(bool Healthy, string Why)> _health;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private int _connections;

    private MetricsEndpoint(List<Listener> listeners, PooldMetrics metrics, Func<(bool, string)> health, ILogger log)
    {
        _listeners = listeners;
        _metrics = metrics;
        _health = health;
        _log = log;
    }

    public IReadOnlyList<Listener> Listeners => _listeners;

    /// <summary>Binds every address and starts serving; throws <see cref="SocketException"/> when an address cannot be bound.</summary>
    public static MetricsEndpoint Start(IReadOnlyList<string> addresses, int port, PooldMetrics metrics, Func<(bool, string)> health, ILogger log)
    {
        var listeners = Listener.BindAll(addresses, [], port, 64, 0, log);
        var endpoint = new MetricsEndpoint(listeners, metrics, health, log);
        foreach (var listener in listeners)
        {
            log.Information("metrics and health endpoint on http://{Endpoint}/metrics", listener.Description);
            endpoint._loops.Add(endpoint.AcceptLoopAsync(listener));
        }

        return endpoint;
    }

    private async Task AcceptLoopAsync(Listener listener)
    {
        await Task.Yield();
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                _log.Debug("metrics endpoint: accept failed: {Reason}", e.Message);
                continue;
            }

            if (Interlocked.Increment(ref _connections) > MaxConnections)
            {
                Interlocked.Decrement(ref _connections);
                socket.Dispose();
                continue;
            }

            _ = ServeAsync(socket);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(RequestTimeout);
            await using var stream = new NetworkStream(socket, ownsSocket: true);
            var (status, contentType, body) = await RespondAsync(await ReadHeadAsync(stream, timeout.Token), timeout.Token);
            var head = Encoding.ASCII.GetBytes(
                $"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n");
            await stream.WriteAsync(head, timeout.Token);
            await stream.WriteAsync(body, timeout.Token);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // A client that went away or was too slow: nothing to answer.
        }
        catch (Exception e)
        {
            _log.Error(e, "metrics endpoint: unexpected error");
        }
        finally
        {
            socket.Dispose();
            Interlocked.Decrement(ref _connections);
        }
    }

    /// <summary>The request line, once the whole head has arrived; null when it is too long or the client closed first.</summary>
    private static async Task<string?> ReadHeadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxHead];
        var length = 0;
        while (length < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken);
            if (n == 0)
            {
                return null;
            }

            length += n;
            var end = buffer.AsSpan(0, length).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                var line = buffer.AsSpan(0, length).IndexOf("\r\n"u8);
                return Encoding.ASCII.GetString(buffer, 0, line);
            }
        }

        return null;
    }

    private static readonly byte[] NotFound = "not found: try /metrics or /health\n"u8.ToArray();

    internal async Task<(string Status, string ContentType, byte[] Body)> RespondAsync(string? requestLine, CancellationToken cancellationToken)
    {
        var parts = requestLine?.Split(' ') ?? [];
        if (parts.Length != 3 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            return ("400 Bad Request", "text/plain", "bad request\n"u8.ToArray());
        }

        if (parts[0] is not ("GET" or "HEAD"))
        {
            return ("405 Method Not Allowed", "text/plain", "only GET\n"u8.ToArray());
        }

        var path = parts[1].Split('?')[0];
        switch (path)
        {
            case "/metrics":
                {
                    using var text = new MemoryStream();
                    await _metrics.Registry.CollectAndExportAsTextAsync(text, cancellationToken);
                    return ("200 OK", "text/plain; version=0.0.4; charset=utf-8", parts[0] == "HEAD" ? [] : text.ToArray());
                }

            case "/health":
                {
                    var (healthy, why) = _health();
                    return (healthy ? "200 OK" : "503 Service Unavailable", "text/plain", Encoding.UTF8.GetBytes(why + "\n"));
                }

            default:
                return ("404 Not Found", "text/plain", NotFound);
        }
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
}
