using System.Globalization;
using Poold.Auth;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Routing;
using Poold.Tls;
using Serilog;

namespace Poold.Backends;

/// <summary>A node's WAL position (replayed on a standby, written on the primary) and when the query that read it was sent.</summary>
internal readonly record struct ReplaySample(ulong Lsn, long SentAt);

/// <summary>
/// The WAL positions <c>read_your_writes</c> routes by: one poller per node, each with one connection of its own
/// (sr_check_user, as the replication check), asking <c>pg_last_wal_replay_lsn()</c> on a standby and
/// <c>pg_current_wal_insert_lsn()</c> on the primary every <c>read_your_writes_poll_interval</c>, and at once when a session
/// asks for a fresh position (<see cref="FreshAsync"/>; sessions that ask together share one query). A node's poller
/// starts on the first question and stops while the option is off, so nothing runs when nobody uses it.
/// </summary>
internal sealed class ReplayTracker : IAsyncDisposable
{
    private const string PositionQuery =
        "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END, "
        + "current_setting('wal_block_size')";

    private readonly Func<PooldSettings> _settings;
    private readonly Func<AuthFiles> _auth;
    private readonly NodeRegistry _registry;
    private readonly TlsSetup _tls;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<int, Poller> _pollers = [];

    public ReplayTracker(Func<PooldSettings> settings, Func<AuthFiles> auth, NodeRegistry registry, TlsSetup tls, TimeProvider time, ILogger log)
    {
        _settings = settings;
        _auth = auth;
        _registry = registry;
        _tls = tls;
        _time = time;
        _log = log.ForContext<ReplayTracker>();
    }

    /// <summary>The newest position known for the node (Lsn 0 when none is); starts the node's poll when it does not run.</summary>
    public ReplaySample Latest(int nodeId)
    {
        lock (_lock)
        {
            if (_pollers.TryGetValue(nodeId, out var poller))
            {
                poller.EnsureRunning();
                return poller.Latest;
            }
        }

        PollerFor(nodeId);
        return default;
    }

    /// <summary>A position read by a query sent after this call (Lsn 0 when the node did not answer).</summary>
    public Task<ReplaySample> FreshAsync(int nodeId) => PollerFor(nodeId).Ask(wake: true);

    /// <summary>The next position the periodic poll reads (Lsn 0 when the node did not answer).</summary>
    public Task<ReplaySample> NextAsync(int nodeId) => PollerFor(nodeId).Ask(wake: false);

    private Poller PollerFor(int nodeId)
    {
        lock (_lock)
        {
            if (!_pollers.TryGetValue(nodeId, out var poller))
            {
                _pollers[nodeId] = poller = new Poller(this, nodeId);
            }

            poller.EnsureRunning();
            return poller;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        Poller[] pollers;
        lock (_lock)
        {
            pollers = [.. _pollers.Values];
        }

        await Task.WhenAll(pollers.Select(p => p.Loop));
        foreach (var poller in pollers)
        {
            poller.Dispose();
        }

        _stop.Dispose();
    }

    /// <summary>A node's poll stops when no session has asked about the node for this long (the next question starts it).</summary>
    private static readonly TimeSpan IdleStop = TimeSpan.FromSeconds(10);

    /// <summary>One node's poll: a loop that runs while the option is on, the node is up and sessions ask about it.</summary>
    private sealed class Poller(ReplayTracker owner, int nodeId) : IDisposable
    {
        private readonly SemaphoreSlim _wake = new(0, 1);

        /// <summary>Completed by the next query sent: callers take it before that query is sent (the loop swaps it just before).</summary>
        private TaskCompletionSource<ReplaySample> _next = NewSource();

        private ReplaySample _latest;

        /// <summary>The last attempt failed (warned once per run of failures).</summary>
        private bool _failing;

        public Task Loop { get; private set; } = Task.CompletedTask;

        public ReplaySample Latest => _latest;

        public void Dispose() => _wake.Dispose();

        /// <summary>When a session last asked about the node (a timestamp of the owner's time provider).</summary>
        private long _lastAsked;

        /// <summary>Caller holds the owner's lock (so does the loop when it writes <see cref="Latest"/>).</summary>
        public void EnsureRunning()
        {
            Volatile.Write(ref _lastAsked, owner._time.GetTimestamp());
            if (Loop.IsCompleted && !owner._stop.IsCancellationRequested)
            {
                Loop = RunAsync(owner._stop.Token);
            }
        }

        public Task<ReplaySample> Ask(bool wake)
        {
            var next = Volatile.Read(ref _next).Task;
            if (wake && _wake.CurrentCount == 0)
            {
                try
                {
                    _wake.Release();
                }
                catch (SemaphoreFullException)
                {
                    // Another caller woke the loop first: one query answers both.
                }
            }

            return next;
        }

        /// <summary>A standby's replay position as it is; a primary's insert position as the end of what it wrote.</summary>
        private static ulong Position(string? recovery, string? lsn, string? blockSize) =>
            recovery == "t" || !int.TryParse(blockSize, NumberStyles.None, CultureInfo.InvariantCulture, out var size)
                ? NodeMonitor.ParseLsn(lsn)
                : ReadYourWrites.EndOfWrites(NodeMonitor.ParseLsn(lsn), size);

        private static TaskCompletionSource<ReplaySample> NewSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);

        private async Task RunAsync(CancellationToken stop)
        {
            await Task.Yield();
            BackendConnection? connection = null;
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    var settings = owner._settings();
                    var node = owner._registry.Current.Nodes is var nodes && nodeId < nodes.Length ? nodes[nodeId] : null;
                    if (settings.Get(Params.ReadYourWrites) == ReadYourWritesMode.Off || node is null
                        || node.Status is not (NodeStatus.Up or NodeStatus.Waiting)
                        || owner._time.GetElapsedTime(Volatile.Read(ref _lastAsked)) > IdleStop)
                    {
                        // Nobody needs it now: the next question starts the loop again.
                        Interlocked.Exchange(ref _next, NewSource()).TrySetResult(default);
                        return;
                    }

                    var interval = settings.Get(Params.ReadYourWritesPollInterval);
                    var waiting = Interlocked.Exchange(ref _next, NewSource());
                    var sample = default(ReplaySample);
                    try
                    {
                        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
                        deadline.CancelAfter(settings.Get(Params.ConnectTimeout, nodeId) is var t && t > TimeSpan.Zero ? t : TimeSpan.FromSeconds(10));
                        connection ??= await ConnectAsync(node, settings, deadline.Token);
                        var sentAt = owner._time.GetTimestamp();
                        var rows = await connection.QueryRowsAsync(PositionQuery, deadline.Token);
                        sample = new ReplaySample(rows is [[var recovery, var lsn, var blockSize], ..] ? Position(recovery, lsn, blockSize) : 0, sentAt);
                        lock (owner._lock)
                        {
                            _latest = sample;
                        }

                        _failing = false;
                    }
                    catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException or OperationCanceledException
                                                  or TimeoutException or PgProtocolException or ScramException && !stop.IsCancellationRequested)
                    {
                        if (!_failing)
                        {
                            // Once per run of failures: reads after writes go to the primary meanwhile (check sr_check_user).
                            owner._log.Warning("read_your_writes: node {NodeId} did not give its WAL position ({Reason}): reads after a write go elsewhere until it does",
                                nodeId, e.Message);
                        }

                        _failing = true;
                        if (connection is not null)
                        {
                            await connection.DisposeAsync();
                            connection = null;
                        }

                        // A node that fails is asked again after a second at the soonest; meanwhile reads go elsewhere.
                        interval = interval < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : interval;
                    }

                    waiting.TrySetResult(sample);
                    try
                    {
                        await _wake.WaitAsync(interval > TimeSpan.Zero ? interval : TimeSpan.FromMilliseconds(20), stop);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Poold stops.
            }
            finally
            {
                Interlocked.Exchange(ref _next, NewSource()).TrySetResult(default);
                if (connection is not null)
                {
                    await connection.DisposeAsync();
                }
            }
        }

        private async Task<BackendConnection> ConnectAsync(NodeState node, PooldSettings settings, CancellationToken ct)
        {
            var user = settings.Get(Params.SrCheckUser);
            var database = settings.Get(Params.SrCheckDatabase);
            var credential = CheckCredentials.Resolve(settings.Get(Params.SrCheckPassword), user, owner._auth());
            var startup = new List<KeyValuePair<string, string>>
            {
                new("user", user),
                new("database", database.Length == 0 ? "postgres" : database),
                new("application_name", "poold read_your_writes"),
            };
            return await BackendConnection.OpenAsync(node.Settings, PoolKey.Create(node.Id, startup), startup,
                (_, _) => ValueTask.FromResult(credential), owner._tls, settings.Get(Params.ConnectTimeout, node.Id), owner._time, ct);
        }
    }
}
