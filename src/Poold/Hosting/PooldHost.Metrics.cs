using System.Globalization;
using System.Net.Sockets;
using Poold.Backends;
using Poold.Config;
using Poold.Metrics;
using Serilog;

namespace Poold.Hosting;

/// <summary>The host's side of the metrics: the endpoint, what a scrape reads, and what <c>/health</c> answers.</summary>
internal sealed partial class PooldHost
{
    /// <summary>The HTTP port of /metrics and /health (null when metrics_port = 0 or it could not be bound).</summary>
    public MetricsEndpoint? MetricsEndpoint { get; private set; }

    /// <summary>The host's metrics (null when metrics_port = 0).</summary>
    public PooldMetrics? Metrics => _services.Metrics;

    /// <summary>With metrics_port &gt; 0: the metrics every session reports to, and the endpoint (a port that cannot be bound is logged).</summary>
    private void StartMetrics(PooldSettings settings, ILogger log)
    {
        var port = settings.Get(Params.MetricsPort);
        if (port == 0)
        {
            return;
        }

        var metrics = new PooldMetrics(_services.Nodes.Current.Nodes.Length, Scrape);
        _services.Metrics = metrics;
        try
        {
            MetricsEndpoint = MetricsEndpoint.Start(settings.Get(Params.MetricsListenAddresses), port, metrics, Health, log);
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            log.Error("could not start the metrics endpoint on port {Port}: {Reason}", port, e.Message);
        }
    }

    /// <summary>
    /// <c>GET /health</c>: healthy while this Poold accepts clients and has a primary that is up; a smart stop, which
    /// stops accepting first, makes it unhealthy at once so a load balancer sends new clients elsewhere.
    /// </summary>
    internal (bool Healthy, string Why) Health()
    {
        if (Volatile.Read(ref _stopRequested) != 0)
        {
            return (false, "draining: shutting down, not accepting new clients");
        }

        var nodes = Nodes.Current;
        return nodes.Primary is { Status: NodeStatus.Up or NodeStatus.Waiting } primary
            ? (true, string.Create(CultureInfo.InvariantCulture, $"ok: accepting clients, primary node {primary.Id}"))
            : (false, "no primary node: clients would be refused");
    }

    /// <summary>Everything a scrape reads, from the session list, the pool and the node registry.</summary>
    private ScrapeState Scrape()
    {
        var services = Volatile.Read(ref _services);
        var nodes = services.Nodes.Current;
        var active = new int[nodes.Nodes.Length];
        var idle = new int[nodes.Nodes.Length];
        int running = 0, idleClients = 0, inTransaction = 0, waitingForServer = 0;
        long bytesIn = 0, bytesOut = 0;
        foreach (var session in services.Cancels.Sessions)
        {
            switch (session.StatusText)
            {
                case "Execute command":
                    running++;
                    break;
                case "Idle in transaction":
                    inTransaction++;
                    break;
                case "Wait for server connection":
                    waitingForServer++;
                    break;
                default:
                    idleClients++;
                    break;
            }

            foreach (var (nodeId, _) in session.Backends)
            {
                if ((uint)nodeId < (uint)active.Length)
                {
                    active[nodeId]++;
                }
            }

            bytesIn += session.BytesIn;
            bytesOut += session.BytesOut;
        }

        for (var i = 0; i < idle.Length; i++)
        {
            idle[i] = Math.Max(0, services.Pool.OpenCount(i) - active[i]);
        }

        var waitingForSlot = Volatile.Read(ref _waitingForSlot);
        var starting = Math.Max(0, UnadmittedConnections - waitingForSlot);

        // Waiting: for one of num_init_children's slots (session mode) or for a server connection (transaction mode).
        var waiting = waitingForSlot + waitingForServer;
        return new ScrapeState(nodes, services.Nodes.Health, services.Counters, new ClientCounts(running, idleClients, inTransaction, waiting, starting),
            active, idle, bytesIn, bytesOut, Monitor?.Failovers ?? 0);
    }
}
