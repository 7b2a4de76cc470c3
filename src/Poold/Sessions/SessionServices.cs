using Poold.Auth;
using Poold.Backends;
using Poold.Config;
using Poold.Pooling;
using Poold.Routing;
using Poold.Tls;
using Serilog;

namespace Poold.Sessions;

/// <summary>What a session needs from the host. <see cref="Settings"/> is the snapshot in force when it started.</summary>
internal sealed record SessionServices(
    PooldSettings Settings,
    TlsSetup Tls,
    AuthFiles Auth,
    ConnectionPool Pool,
    NodeRegistry Nodes,
    CancelRegistry Cancels,
    RoutingOptions Routing,
    FunctionCatalog Functions,
    Pcp.NodeCounters Counters,
    TimeProvider Time,
    ILogger Log)
{
    /// <summary>Set once the node monitor runs: a session reports a backend connection it lost.</summary>
    public Action<int, string, bool>? BackendFailed { get; set; }

    /// <summary>Cancel requests for the other Poolds of <c>peers</c>.</summary>
    public PeerCancels PeerCancels { get; } = new(Time);

    /// <summary>auth_query's connections and cache; one per host (a reload keeps it), disposed when the host stops.</summary>
    public AuthQuerySource AuthQueries { get; init; } = new(Time);

    /// <summary>The session slots (num_init_children); null admits everyone (tests that build a session alone).</summary>
    public ISessionAdmission? Admission { get; set; }

    /// <summary>The WAL positions read_your_writes routes by; null in tests that build a session alone (the option then does nothing).</summary>
    public ReplayTracker? Replay { get; set; }

    /// <summary>The Prometheus metrics; null when metrics_port = 0 (and in tests that build a session alone).</summary>
    public Metrics.PooldMetrics? Metrics { get; set; }
}
