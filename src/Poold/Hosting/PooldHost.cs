using System.Net.Sockets;
using Poold.Auth;
using Poold.Backends;
using Poold.Config;
using Poold.Pooling;
using Poold.Routing;
using Poold.Sessions;
using Poold.Tls;
using Serilog;

namespace Poold.Hosting;

/// <summary>
/// The running daemon: listeners, the session tasks, the pool, the node registry, and the settings in force.
/// Wired by hand here; nothing else knows how the parts are put together.
/// </summary>
internal sealed partial class PooldHost : IAsyncDisposable, Pcp.IPcpHost, ISessionAdmission
{
    private readonly HostOptions _options;
    private readonly ILogger _log;
    private readonly List<Listener> _listeners;
    private readonly CancellationTokenSource _acceptStop = new();
    private readonly CancellationTokenSource _sessionStop = new();
    /// <summary>Sessions started and not yet ended: the stop waits for none to be left (<see cref="_sessionsEnded"/>).</summary>
    private int _runningSessions;

    /// <summary>Set by the stop once no session can start any more; the last session to end then completes <see cref="_sessionsEnded"/>.</summary>
    private int _draining;

    private readonly TaskCompletionSource _sessionsEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _slots;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Task> _acceptLoops = [];
    private SessionServices _services;
    private int _nextSessionId;
    private int _activeSessions;

    /// <summary>Admitted transaction-mode clients (bounded by max_client_conn, not by num_init_children's slots).</summary>
    private int _transactionClients;
    private int _unadmitted;
    private int _stopRequested;
    private int _waitingForSlot;

    private PooldHost(HostOptions options, SessionServices services, List<Listener> listeners, ILogger log)
    {
        _options = options;
        _services = services;
        _listeners = listeners;
        _log = log;
        if (Io.SocketStreams.UseEpoll)
        {
            // What the I/O layer's watchdog finds (a lost wake-up, a blocked event thread) goes to this host's log.
            Io.EpollEngine.Warn = message => log.Warning("{Finding}", message);
        }

        _slots = new SemaphoreSlim(services.Settings.Get(Params.NumInitChildren));
        _nextSessionId = Random.Shared.Next(1000, 30000);
    }

    public PooldSettings Settings => Volatile.Read(ref _services).Settings;

    public ConnectionPool Pool => _services.Pool;

    /// <summary>Sessions holding one of num_init_children's slots (authenticated, or past their startup packet without pool_hba).</summary>
    public int ActiveSessions => Volatile.Read(ref _activeSessions);

    public int TransactionClients => Volatile.Read(ref _transactionClients);

    /// <summary>Accepted client connections that hold no slot yet: negotiating, authenticating, waiting for a slot, or being refused.</summary>
    public int UnadmittedConnections => Volatile.Read(ref _unadmitted);

    public Backends.NodeRegistry Nodes => _services.Nodes;

    public IReadOnlyList<ClientSession> Sessions => _services.Cancels.Sessions;

    public string PcpConfPath => !string.IsNullOrEmpty(_options.PcpFile) ? Path.GetFullPath(_options.PcpFile) : Settings.ResolvePath("pcp.conf");

    public DateTimeOffset StartedAt { get; } = DateTimeOffset.Now;

    /// <summary>The PCP admin port (null when it could not be bound: logged, and Poold serves clients anyway).</summary>
    public Pcp.PcpServer? Pcp { get; private set; }

    public void RequestStop(StopMode mode) => _ = Task.Run(() => StopAsync(mode));

    /// <summary>systemd's notify socket (READY/RELOADING/STOPPING), when Poold runs under systemd; set by the runner.</summary>
    public SystemdNotify? Notify { get; set; }

    /// <summary>The STATUS= text for systemd: clients and nodes.</summary>
    public string StatusText()
    {
        var nodes = Nodes.Current;
        var up = nodes.Nodes.Count(n => n.Status == NodeStatus.Up);
        var configured = nodes.Nodes.Count(n => n.Status != NodeStatus.Unused);
        return $"{ActiveSessions + TransactionClients} clients, {UnadmittedConnections} connecting; {up} of {configured} nodes up, primary node "
               + (nodes.Primary is { } p ? p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) : "none");
    }

    /// <summary>Health and replication checks, failover.</summary>
    public NodeMonitor? Monitor { get; private set; }

    /// <summary>pgpool_status: restored at start (unless -D), rewritten on every change; then the checks start.</summary>
    private void StartNodeTracking(PooldSettings settings, HostOptions options, TimeProvider time)
    {
        var registry = _services.Nodes;
        var statusFile = Path.Combine(settings.ResolvePath(settings.Get(Params.Logdir)), NodeStatusFile.FileName);
        try
        {
            if (options.DiscardStatus)
            {
                File.Delete(statusFile);
                _log.Information("backend status file {File} discarded (-D)", statusFile);
            }
            else if (NodeStatusFile.Read(statusFile) is { } saved)
            {
                registry.Restore(saved);
                foreach (var node in registry.Current.Nodes.Where(n => n.Status == NodeStatus.Down))
                {
                    _log.Warning("node {NodeId} is down according to {File}: attach it with pcp_attach_node", node.Id, statusFile);
                }
            }

            NodeStatusFile.Write(statusFile, registry.Current);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning("cannot use the backend status file {File}: {Reason}", statusFile, e.Message);
        }

        registry.Changed += nodes =>
        {
            try
            {
                NodeStatusFile.Write(statusFile, nodes);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.Warning("cannot write the backend status file {File}: {Reason}", statusFile, e.Message);
            }
        };
        var seen = registry.Current;
        registry.Changed += nodes =>
        {
            // A node that went down or changed role: what the cache holds for it was opened to a server that is gone or
            // now plays another part, so none of it may reach a new session.
            var before = Interlocked.Exchange(ref seen, nodes);
            foreach (var node in nodes.Nodes)
            {
                var old = before.Nodes[node.Id];
                if ((node.Status != old.Status && node.Status != NodeStatus.Up) || node.Role != old.Role)
                {
                    _ = Volatile.Read(ref _services).Pool.PurgeNodeAsync(node.Id);
                }
            }
        };
        Monitor = new NodeMonitor(() => Settings, () => Volatile.Read(ref _services).Auth, registry, _services.Tls, time, _log);
        Monitor.HealthCheckTimed = _services.Metrics is { } metrics ? metrics.HealthCheckTimed : null;
        _services.BackendFailed = Monitor.ReportBackendError;
        Replay = new ReplayTracker(() => Settings, () => Volatile.Read(ref _services).Auth, registry, _services.Tls, time, _log);
        _services.Replay = Replay;
        if (settings.Get(Params.BackendDiscoveryMode) == BackendDiscovery.Patroni)
        {
            Patroni = new PatroniFollower(() => Settings, registry, _log);
            Monitor.RequestDiscovery = Patroni.PollNow;
            Patroni.Start();
        }

        Monitor.Start();
    }

    /// <summary>read_your_writes: the nodes' WAL positions (its pollers run only while a session needs them).</summary>
    public ReplayTracker? Replay { get; private set; }

    /// <summary>backend_discovery = patroni: what follows Patroni's view of the cluster (null otherwise).</summary>
    public PatroniFollower? Patroni { get; private set; }

    public IReadOnlyList<Listener> Listeners => _listeners;

    /// <summary>
    /// pcp_detach_node: a standby is marked down; the primary goes through the failover path (failover_command, then the
    /// search for the new primary), as pgpool-II does, so no session keeps writing to a detached node.
    /// </summary>
    public string? DetachNode(int id)
    {
        var nodes = Nodes.Current;
        string? error = null;
        if (Monitor is { } monitor && id == nodes.PrimaryNodeId && nodes.Nodes[id].Status != NodeStatus.Down)
        {
            // Detaches synchronously before its first await; the commands and the search go on in the background.
            _ = monitor.FailoverAsync(id, "detached by pcp_detach_node", CancellationToken.None);
        }
        else
        {
            error = Nodes.Detach(id);
        }

        if (error is null)
        {
            // Following Patroni: an operator's detach holds until pcp_attach_node, whatever Patroni reports.
            Patroni?.HoldDown(id);
        }

        return error;
    }

    /// <summary>Completes when the host has stopped.</summary>
    public Task Completion => _stopped.Task;

    /// <summary>
    /// Binds the listeners and starts accepting; throws when a socket or the TLS files cannot be set up. The loops it
    /// starts run free of the caller's SynchronizationContext, if it has one (a test runner's, an application hosting
    /// Poold): they would capture it at their first wait, and every continuation of every session would then be posted
    /// to it (an allocation and a hop to another thread each) instead of running on the socket's event thread. What the
    /// caller starts later on its own thread (StopAsync, a node detached through the host) still runs in its context.
    /// </summary>
    public static PooldHost Start(PooldSettings settings, HostOptions options, ILogger log, TimeProvider? time = null)
    {
        var caller = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(null);
        try
        {
            return StartCore(settings, options, log, time ?? TimeProvider.System);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(caller);
        }
    }

    private static PooldHost StartCore(PooldSettings settings, HostOptions options, ILogger log, TimeProvider time)
    {
        var tls = TlsSetup.Create(settings);
        tls.WarnAboutExpiredCrls(log);
        var auth = AuthFiles.Load(settings, options.HbaFile, options.KeyFile, log);
        var services = new SessionServices(settings, tls, auth, new ConnectionPool(PoolLimits.From(settings), time), new NodeRegistry(settings, time),
            new CancelRegistry(), RoutingOptions.From(settings), new FunctionCatalog(), new Pcp.NodeCounters(), time, log);
        var (backlog, cappedBy) = ListenBacklog.Choose(settings, ListenBacklog.ReadSomaxconn());
        if (cappedBy is not null)
        {
            log.Warning("listen backlog capped at {Backlog} by net.core.somaxconn (listen_backlog = {Wanted}): raise the sysctl for larger bursts",
                backlog, settings.Get(Params.ListenBacklog));
        }
        var listeners = Listener.BindAll(settings.Get(Params.ListenAddresses), settings.Get(Params.UnixSocketDirectories),
            settings.Get(Params.Port), backlog, settings.Get(Params.UnixSocketPermissions), log);
        if (listeners.Count == 0)
        {
            throw new InvalidOperationException("nothing to listen on: listen_addresses is empty and no unix_socket_directories entry exists");
        }

        var host = new PooldHost(options, services, listeners, log);
        services.Admission = host;
        host.WarnAboutCleartext();
        // Metrics first: the node monitor reports each health check's duration to them from its first check.
        host.StartMetrics(settings, log);
        host.StartNodeTracking(settings, options, time);
        log.Information("sessions' sockets on {Engine}", Io.SocketStreams.UseEpoll
            ? $"Poold's epoll layer ({Io.SocketStreams.EngineVariable}=dotnet selects .NET's engine)"
            : ".NET's socket engine");
        foreach (var listener in listeners)
        {
            log.Information("listening on {Endpoint}{Tls}", listener.Description, tls.Enabled && !listener.IsUnix ? " (TLS available)" : "");
            host._acceptLoops.Add(host.AcceptLoopAsync(listener));
        }

        try
        {
            host.Pcp = global::Poold.Pcp.PcpServer.Start(host, log);
        }
        catch (Exception e) when (e is SocketException or IOException or InvalidOperationException or UnauthorizedAccessException)
        {
            log.Error("could not start the PCP port {Port}: {Reason}", settings.Get(Params.PcpPort), e.Message);
        }

        if (services.Nodes.Current.Primary is null)
        {
            log.Warning("no backend node is configured (backend_port0 …): clients will be refused");
        }

        return host;
    }

    private void WarnAboutCleartext()
    {
        var s = Settings;
        if (!_services.Tls.Enabled && _listeners.Any(l => !l.IsUnix))
        {
            _log.Warning("ssl = off: passwords asked of clients for pass-through authentication cross TCP connections unencrypted");
        }

        if (!_services.Tls.Enabled && s.Backends.Any(b => b.IsConfigured && !b.IsUnixSocket && !IsLoopback(b.Hostname)))
        {
            _log.Warning("ssl = off: connections to non-local backends are unencrypted, and a backend using 'password' authentication receives it in cleartext");
        }
    }

    private static bool IsLoopback(string host) =>
        host is "localhost" || (System.Net.IPAddress.TryParse(host, out var ip) && System.Net.IPAddress.IsLoopback(ip));

    /// <summary>
    /// Accepts as fast as clients arrive. A connection takes no session slot here: it negotiates and authenticates
    /// first (<see cref="TryEnterAsync"/>), under max_unauthenticated_connections and unauthenticated_timeout, so silent
    /// sockets cannot lock logins out and cancel requests need no slot. Beyond the cap, or with reserved_connections
    /// &gt; 0 and the slots that remain all taken, the client is refused (53300) before any TLS handshake; far beyond
    /// it (twice the cap) the socket is closed at once, so a flood costs no more than that.
    /// </summary>
    private async Task AcceptLoopAsync(Listener listener)
    {
        await Task.Yield();
        var stop = _acceptStop.Token;
        var backoff = new AcceptBackoff();
        while (!stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                var (delay, log) = backoff.Failed();
                if (log)
                {
                    _log.Warning("accept failed on {Endpoint} ({Failures} in a row): {Reason}; retrying in {Delay} ms", listener.Description,
                        backoff.Failures, e.Message, delay.TotalMilliseconds);
                }

                try
                {
                    await Task.Delay(delay, _services.Time, stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            if (backoff.Succeeded() is var failed and > 0)
            {
                _log.Information("accept works again on {Endpoint} after {Failures} failures", listener.Description, failed);
            }

            var settings = Settings;
            var cap = settings.Get(Params.MaxUnauthenticatedConnections);
            var reserved = settings.Get(Params.ReservedConnections);
            var pending = Interlocked.Increment(ref _unadmitted);
            if (pending > 2L * cap)
            {
                Interlocked.Decrement(ref _unadmitted);
                socket.Dispose();
                continue;
            }

            if (!listener.IsUnix)
            {
                socket.NoDelay = true;
            }

            var reject = pending > cap || (reserved > 0 && ActiveSessions >= settings.Get(Params.NumInitChildren) - reserved);
            StartSession(socket, reject);
        }
    }

    /// <summary>
    /// <see cref="ISessionAdmission"/>: a slot for an authenticated session. With reserved_connections = 0 the client
    /// waits for one (as pgpool-II's clients wait for a free child) until its start deadline, then gets 53300; with
    /// reserved_connections &gt; 0 it is refused at once when none is free.
    /// </summary>
    public async ValueTask<bool> TryEnterAsync(ClientSession session, bool transactionMode, CancellationToken cancellationToken)
    {
        var settings = Settings;
        if (transactionMode)
        {
            if (Interlocked.Increment(ref _transactionClients) > settings.Get(Params.MaxClientConn))
            {
                Interlocked.Decrement(ref _transactionClients);
                return false;
            }

            Interlocked.Decrement(ref _unadmitted);
            return true;
        }

        var reserved = settings.Get(Params.ReservedConnections);
        var limit = settings.Get(Params.NumInitChildren);
        bool admitted;
        if (reserved > 0)
        {
            admitted = ActiveSessions < limit - reserved && _slots.Wait(0, CancellationToken.None);
        }
        else
        {
            Interlocked.Increment(ref _waitingForSlot);
            try
            {
                await _slots.WaitAsync(cancellationToken);
                admitted = true;
            }
            catch (OperationCanceledException)
            {
                admitted = false;
            }
            finally
            {
                Interlocked.Decrement(ref _waitingForSlot);
            }
        }

        if (admitted)
        {
            Interlocked.Increment(ref _activeSessions);
            Interlocked.Decrement(ref _unadmitted);
        }

        return admitted;
    }

    private void StartSession(Socket socket, bool reject)
    {
        var id = Interlocked.Increment(ref _nextSessionId);
        var session = new ClientSession(Volatile.Read(ref _services), socket, id, reject);

        // Started here, on the accepting thread, up to its first wait (the client's next packet): handing it to the
        // thread pool cost a thread wake-up per connection and the pool's spinning afterwards. Counted, not kept in a
        // table: an idle session costs a table entry and a continuation less (the stop only needs to know when none is left).
        Interlocked.Increment(ref _runningSessions);
        _ = session.RunAsync(_sessionStop.Token);
    }

    /// <summary><see cref="ISessionAdmission"/>: a session's slot (or its count in transaction mode) is free again.</summary>
    public void Ended(ClientSession session)
    {
        if (session.Admitted && session.TransactionMode)
        {
            Interlocked.Decrement(ref _transactionClients);
        }
        else if (session.Admitted)
        {
            Interlocked.Decrement(ref _activeSessions);
            _slots.Release();
        }
        else
        {
            Interlocked.Decrement(ref _unadmitted);
        }

        if (Interlocked.Decrement(ref _runningSessions) == 0 && Volatile.Read(ref _draining) == 1)
        {
            _sessionsEnded.TrySetResult();
        }
    }

    /// <summary>
    /// Re-reads the configuration file. Reloadable parameters take effect for new sessions; start-only ones keep their
    /// value and are reported. A file with errors changes nothing.
    /// </summary>
    public void Reload()
    {
        var current = Settings;
        Notify?.Reloading();
        try
        {
            var (loaded, warnings) = PooldSettings.Load(_options.ConfigFile);
            foreach (var warning in warnings)
            {
                _log.Warning("reload: {Diagnostic}", warning.ToString());
            }

            var merged = loaded.KeepStartParameters(current, out var needRestart);
            foreach (var name in needRestart)
            {
                _log.Warning("reload: parameter {Parameter} changed but takes effect only at restart; keeping the current value", name);
            }

            var auth = AuthFiles.Load(merged, _options.HbaFile, _options.KeyFile, _log);
            var tls = TlsSetup.Reload(merged, _services.Tls, _log);
            Volatile.Write(ref _services, _services with { Settings = merged, Auth = auth, Routing = RoutingOptions.From(merged), Tls = tls });

            // What the pool reads of the settings at each checkout (server_check_query, server_check_delay,
            // connect_timeout, and transaction mode's default_pool_size and max_db_connections, for every session);
            // its start-only ones (session mode's sizes, connection_life_time) are the same in merged as before.
            _services.Pool.UpdateLimits(PoolLimits.From(merged));
            Logging.Reconfigure(_log, merged);
            _log.Information("configuration reloaded from {File}", _options.ConfigFile);
        }
        catch (ConfigException e)
        {
            foreach (var d in e.Diagnostics)
            {
                _log.Error("reload failed, configuration unchanged: {Diagnostic}", d.ToString());
            }
        }
        finally
        {
            Notify?.Ready();
        }
    }

    /// <summary>Smart waits for clients to leave; fast and immediate disconnect them (FATAL 57P01) now.</summary>
    public async Task StopAsync(StopMode mode)
    {
        if (Interlocked.Exchange(ref _stopRequested, 1) != 0)
        {
            await Completion;
            return;
        }

        Notify?.Stopping();
        _log.Information("{Mode} shutdown requested", mode);
        await _acceptStop.CancelAsync();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }

        await Task.WhenAll(_acceptLoops);
        if (Pcp is { } pcp)
        {
            await pcp.DisposeAsync();
        }

        if (Monitor is { } monitor)
        {
            await monitor.DisposeAsync();
        }

        if (Patroni is { } patroni)
        {
            await patroni.DisposeAsync();
        }

        if (mode != StopMode.Smart)
        {
            await _sessionStop.CancelAsync();
        }

        // The accept loops have ended: no session starts now. Whichever comes last, this check or the last session's end,
        // completes the wait (both are full fences, so one of them sees the other).
        Interlocked.Exchange(ref _draining, 1);
        if (Volatile.Read(ref _runningSessions) == 0)
        {
            _sessionsEnded.TrySetResult();
        }

        await _sessionsEnded.Task;
        if (Replay is { } replay)
        {
            // After the sessions: they ask it until they end.
            await replay.DisposeAsync();
        }

        await _services.Pool.DisposeAsync();
        await _services.AuthQueries.DisposeAsync();
        if (MetricsEndpoint is { } metrics)
        {
            // Last: a load balancer's health check sees 503 for as long as the smart stop drains.
            await metrics.DisposeAsync();
        }

        _log.Information("poold stopped");
        _stopped.TrySetResult();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(StopMode.Fast);
        _acceptStop.Dispose();
        _sessionStop.Dispose();
        _slots.Dispose();
    }
}
