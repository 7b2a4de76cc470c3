using System.Threading.Channels;
using Poold.Config;
using Serilog;

namespace Poold.Backends;

/// <summary>
/// backend_discovery = patroni: Patroni decides which node is primary, Poold follows. Every patroni_check_period, and
/// at once when asked (a session lost its primary, a health check failed), the first Patroni endpoint that answers
/// gives <c>/cluster</c>; its leader becomes the primary, members that are not running are detached and come back when
/// they run again, <c>noloadbalance</c> members get no balanced reads. Nothing is ever promoted and no failover
/// command runs. With every endpoint unreachable the last view stays, Poold's own health checks still detach dead
/// nodes, and the registry carries a warning for SHOW POOL_NODES. The loop is the only writer of this class's state.
/// </summary>
internal sealed class PatroniFollower : IAsyncDisposable
{
    private readonly Func<PooldSettings> _settings;
    private readonly NodeRegistry _registry;
    private readonly ILogger _log;
    private readonly HttpClient _http;
    private readonly CancellationTokenSource _stop = new();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly HashSet<int> _heldDown = [];
    private DateTimeOffset? _unreachableSince;

    /// <summary>A promotion is under way: look again after <see cref="SoonAfter"/> rather than a whole period.</summary>
    private bool _soon;

    private static readonly TimeSpan SoonAfter = TimeSpan.FromMilliseconds(100);
    private Task _loop = Task.CompletedTask;

    public PatroniFollower(Func<PooldSettings> settings, NodeRegistry registry, ILogger log)
    {
        _settings = settings;
        _registry = registry;
        _log = log.ForContext<PatroniFollower>();

        // No proxy from the environment: Patroni's API is on the cluster's own network.
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public void Start() => _loop = RunAsync(_stop.Token);

    /// <summary>Reads Patroni's view now rather than at the next period (safe from any thread).</summary>
    public void PollNow() => _wake.Writer.TryWrite(true);

    /// <summary>An operator detached the node (pcp_detach_node): Patroni's "running" does not bring it back.</summary>
    public void HoldDown(int nodeId)
    {
        lock (_heldDown)
        {
            _heldDown.Add(nodeId);
        }
    }

    private async Task RunAsync(CancellationToken stop)
    {
        await Task.Yield();
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await PollAsync(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log.Error(e, "following Patroni failed");
            }

            using var period = CancellationTokenSource.CreateLinkedTokenSource(stop);
            var wait = _settings().Get(Params.PatroniCheckPeriod);
            period.CancelAfter(_soon && wait > SoonAfter ? SoonAfter : wait);
            _soon = false;
            try
            {
                await _wake.Reader.ReadAsync(period.Token);
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested)
            {
                // The period is over.
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task PollAsync(CancellationToken stop)
    {
        var settings = _settings();
        var errors = new List<string>();
        foreach (var url in settings.Get(Params.PatroniUrls))
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
            deadline.CancelAfter(settings.Get(Params.PatroniTimeout));
            try
            {
                var json = await _http.GetStringAsync(url.TrimEnd('/') + "/cluster", deadline.Token);
                var members = PatroniMember.ParseCluster(json);
                Reachable(url);
                await ApplyAsync(members, settings, stop);
                return;
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested)
            {
                errors.Add($"{url}: no answer within patroni_timeout");
            }
            catch (Exception e) when (e is HttpRequestException or FormatException)
            {
                errors.Add($"{url}: {e.Message}");
            }
        }

        Unreachable(string.Join("; ", errors));
    }

    private void Reachable(string url)
    {
        if (_unreachableSince is not null)
        {
            _log.Information("Patroni's view is readable again ({Url}): following it", url);
            _unreachableSince = null;
            _registry.DiscoveryWarning = null;
        }
    }

    private void Unreachable(string why)
    {
        if (_unreachableSince is null)
        {
            _unreachableSince = DateTimeOffset.UtcNow;
            _log.Warning("Patroni's view cannot be read ({Why}): keeping the last one; only Poold's own health checks change it now", why);
        }

        _registry.DiscoveryWarning =
            $"Patroni's view has not been readable since {_unreachableSince:yyyy-MM-dd HH:mm:ss} UTC ({why}): this is the last one, kept current only by Poold's health checks";
    }

    /// <summary>Makes the registry match Patroni's members (only for configured nodes that match a member).</summary>
    private async Task ApplyAsync(IReadOnlyList<PatroniMember> members, PooldSettings settings, CancellationToken stop)
    {
        var snapshot = _registry.Current;
        int? leader = null;
        PatroniMember? leaderMember = null;
        var matched = 0;
        foreach (var node in snapshot.Nodes.Where(n => n.Status != NodeStatus.Unused))
        {
            var member = members.FirstOrDefault(m => m.Is(node.Settings.Hostname, node.Settings.Port));
            if (member is null)
            {
                continue;
            }

            _registry.SetNoLoadBalance(node.Id, member.NoLoadBalance);
            matched++;
            bool heldDown;
            lock (_heldDown)
            {
                if (node.Status != NodeStatus.Down)
                {
                    _heldDown.Remove(node.Id); // attached again by the operator: the hold is over
                }

                heldDown = _heldDown.Contains(node.Id);
            }

            if (!member.IsRunning && node.Status != NodeStatus.Down)
            {
                _log.Warning("Patroni reports member {Member} (node {NodeId}) {State}: detaching it", member.Name, node.Id, member.State);
                _registry.Detach(node.Id);
            }
            else if (member.IsRunning && node.Status == NodeStatus.Down && !heldDown && !FailsPooldsHealthCheck(node.Id))
            {
                _log.Information("Patroni reports member {Member} (node {NodeId}) running as {Role}: attaching it", member.Name, node.Id, member.Role);
                _registry.Attach(node.Id);
            }

            if (member.IsLeader && !heldDown)
            {
                leader = node.Id;
                leaderMember = member;
            }
        }

        if (matched == 0)
        {
            Unreachable("no configured backend matches a Patroni member by host and port");
            return;
        }

        var primary = _registry.Current.PrimaryNodeId;
        if (leader is { } candidate && candidate != primary && !await IsPrimaryAsync(leaderMember!, settings, stop))
        {
            // Patroni holds the leader lock for the member before its promotion has finished: until the member says
            // it runs as a primary (its GET /primary answers 200), writes sent to it would fail as read-only.
            _log.Information("Patroni's new leader {Member} (node {NodeId}) is not yet running as a primary", leaderMember!.Name, candidate);
            leader = null;
            _soon = true;
        }

        if (leader is { } id && id != primary)
        {
            _log.Warning("following Patroni: node {NodeId} is the leader (the primary was node {Old})", id, primary);
            _registry.SetPrimary(id);
        }
        else if (leader is null && primary >= 0)
        {
            // Between the old leader's end and the new one's promotion: no writes anywhere rather than to a demoted node.
            _log.Warning("Patroni has no running leader: node {NodeId} is no longer taken as the primary", primary);
            _registry.SetPrimary(-1);
        }
    }

    /// <summary>
    /// Poold's own health check failed on the node more recently than it succeeded: Patroni may see a member Poold
    /// cannot reach, and attaching it would only flap. (The monitor keeps checking down nodes in this mode.)
    /// </summary>
    private bool FailsPooldsHealthCheck(int nodeId)
    {
        var stats = _registry.Health[nodeId];
        lock (stats)
        {
            return stats.LastFailure is { } failed && (stats.LastSuccess is not { } succeeded || failed > succeeded);
        }
    }

    /// <summary>The member's own GET /primary: 200 only while it runs as the primary with the leader lock.</summary>
    private async Task<bool> IsPrimaryAsync(PatroniMember member, PooldSettings settings, CancellationToken stop)
    {
        if (member.ApiBase is null)
        {
            return true; // Nothing to ask: take Patroni's word.
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
        deadline.CancelAfter(settings.Get(Params.PatroniTimeout));
        try
        {
            using var response = await _http.GetAsync(member.ApiBase + "/primary", HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException || (e is OperationCanceledException && !stop.IsCancellationRequested))
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
        _http.Dispose();
    }
}
