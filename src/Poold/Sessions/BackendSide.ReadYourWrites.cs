using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Poold.Backends;
using Poold.Config;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// <c>read_your_writes = session</c>. When a change of data becomes durable (an autocommit write, or the COMMIT of a
/// transaction that wrote: <see cref="SessionRouter.TakeDurableWrite"/>), Poold sends
/// <c>SELECT pg_current_wal_insert_lsn()</c> on the same primary connection right behind it, pipelined: the server runs
/// it once the commit is done, so its answer is at or after the commit record's end (the insert position, not
/// <c>pg_current_wal_lsn()</c>, the write position, which lags behind commits while synchronous_commit is off), and the
/// client waits for nothing (its ReadyForQuery is relayed first). The next read of the session takes that position
/// (<see cref="_sessionLsn"/>, kept by the backend side for the whole session: it outlives a transaction-mode binding
/// and Poold's own reconnects) and goes to its load-balance node only if that standby has replayed it, as the <see cref="ReplayTracker"/>
/// knows or learns on demand; else to another standby that has, or to the primary, after waiting at most
/// <c>read_your_writes_wait</c> for one to catch up (<see cref="ReadYourWrites"/> decides).
/// </summary>
internal sealed partial class BackendSide
{
    private static readonly byte[] WalPositionQuery = QueryFrame("SELECT pg_current_wal_insert_lsn(), current_setting('wal_block_size')");

    /// <summary>The WAL position every read of this session must see: at or after the end of its last durable write (0: none).</summary>
    private ulong _sessionLsn;

    /// <summary>The position asked for after the session's last durable write, not read yet.</summary>
    private WalPositionCapture? _lsnCapture;

    /// <summary>A durable write whose position could not be asked with it (COPY): the next read asks the primary.</summary>
    private bool _lsnUnknown;

    private bool ReadYourWritesOn => _services.Routing.ReadYourWrites && _services.Replay is not null;

    /// <summary>read_your_writes holds this session's reads to nodes that have replayed its writes: it has written.</summary>
    private bool ReadsFollowWrites => ReadYourWritesOn && (_sessionLsn != 0 || _lsnCapture is not null || _lsnUnknown);

    /// <summary>
    /// After a batch is written to <paramref name="link"/>: when it made a change of data durable, the primary's WAL
    /// position is asked right behind it. <paramref name="complete"/> is false for a batch sent before its Sync (the
    /// question waits for the Sync); a COPY leaves the connection in copy mode, so its position is asked at the next read.
    /// </summary>
    private Task AfterDispatchAsync(NodeLink link, bool complete, bool copy, CancellationToken ct) =>
        ReadYourWritesOn && complete ? AskWalPositionAsync(link, copy, ct) : Task.CompletedTask;

    private async Task AskWalPositionAsync(NodeLink link, bool copy, CancellationToken ct)
    {
        lock (_routingLock)
        {
            if (!_router!.TakeDurableWrite())
            {
                return;
            }
        }

        if (copy || link != _backends.Primary)
        {
            _lsnUnknown = true;
            return;
        }

        var capture = new WalPositionCapture();
        Enqueue(link, relay: false, 0, capture: capture);
        await WriteAndFlushAsync(link.Connection, WalPositionQuery, ct);
        _lsnCapture = capture;
        _lsnUnknown = false;
    }

    /// <summary>
    /// A read the balancer sent to <paramref name="nodeId"/>: where it goes once the session's writes are taken into
    /// account (see the type's summary), and why. Sessions that have not written return at once.
    /// </summary>
    private ValueTask<(int NodeId, string Reason)> ReadYourWritesAsync(int nodeId, string reason, CancellationToken ct) =>
        !ReadYourWritesOn || (_sessionLsn == 0 && _lsnCapture is null && !_lsnUnknown) || nodeId == _primaryNodeId
        || !RouteRules.IsBalanceRule(RouteRules.Of(reason))
            ? ValueTask.FromResult((nodeId, reason))
            : new ValueTask<(int, string)>(RouteAfterWriteAsync(nodeId, reason, ct));

    private async Task<(int NodeId, string Reason)> RouteAfterWriteAsync(int nodeId, string reason, CancellationToken ct)
    {
        var settings = _services.Settings;
        var wait = settings.Get(Params.ReadYourWritesWait);
        var poll = settings.Get(Params.ReadYourWritesPollInterval);
        var started = _services.Time.GetTimestamp();

        // Asking (the session's own position, the standbys' positions) takes at most the poll interval, or the wait when longer.
        var bound = wait > poll ? wait : poll;
        TimeSpan Remaining() => bound - _services.Time.GetElapsedTime(started);

        if (_lsnCapture is { } capture)
        {
            if (!await Completes(capture.Task, Remaining(), ct))
            {
                return (_primaryNodeId, NotKnownYet);
            }

            _lsnCapture = null;
            var lsn = capture.Task.Result;
            if (lsn == 0)
            {
                _lsnUnknown = true;
            }
            else
            {
                _sessionLsn = Math.Max(_sessionLsn, lsn);
            }
        }

        var tracker = _services.Replay!;
        if (_lsnUnknown)
        {
            // The write ended when the client got its ReadyForQuery and nothing is pending on the primary: a position the
            // shared poller reads from now on is at or after it.
            if (_backends.Primary is { } primary && Volatile.Read(ref primary.Pending) > 0)
            {
                return (_primaryNodeId, NotKnownYet);
            }

            var ask = tracker.FreshAsync(_primaryNodeId);
            if (!await Completes(ask, Remaining(), ct) || ask.Result.Lsn == 0)
            {
                return (_primaryNodeId, NotKnownYet);
            }

            _sessionLsn = Math.Max(_sessionLsn, ask.Result.Lsn);
            _lsnUnknown = false;
        }

        var standbys = ReadYourWrites.Standbys(_services.Nodes.Current, id => tracker.Latest(id).Lsn);
        var (choice, why) = Decide(nodeId, standbys);
        if (why is null)
        {
            return (nodeId, reason);
        }

        // What the poll knows is behind: ask the standbys it shows behind now (one query each on the poller's connection,
        // shared by the sessions that ask together).
        var asks = new Task<ReplaySample>[standbys.Length];
        for (var i = 0; i < standbys.Length; i++)
        {
            asks[i] = standbys[i].ReplayLsn >= _sessionLsn ? NothingNew : tracker.FreshAsync(standbys[i].NodeId);
        }

        await Completes(Task.WhenAll(asks), Remaining(), ct);
        Update(standbys, asks);
        (choice, why) = Decide(nodeId, standbys);
        if (why is null)
        {
            return (nodeId, reason);
        }

        if (choice != _primaryNodeId || wait <= TimeSpan.Zero)
        {
            return (choice, why);
        }

        // No standby has replayed the session's write: wait for the periodic poll to see one that has, within the bound.
        while (Remaining() > TimeSpan.Zero && standbys.Length > 0)
        {
            for (var i = 0; i < standbys.Length; i++)
            {
                asks[i] = tracker.NextAsync(standbys[i].NodeId);
            }

            if (!await Completes(Task.WhenAny(asks), Remaining(), ct))
            {
                break;
            }

            if (Array.TrueForAll(asks, a => a.IsCompleted && (!a.IsCompletedSuccessfully || a.Result.Lsn == 0)))
            {
                // No standby answers its poll (down, or the option was turned off by a reload): waiting cannot help.
                break;
            }

            Update(standbys, asks);
            var (next, stillBehind) = Decide(nodeId, standbys);
            if (stillBehind is null || next != _primaryNodeId)
            {
                var waited = _services.Time.GetElapsedTime(started).TotalMilliseconds;
                return (next, string.Create(CultureInfo.InvariantCulture,
                    $"{RouteRules.WaitingForReplay}: node {next} replayed {ReadYourWrites.Lsn(_sessionLsn)} after {waited:0} ms"));
            }
        }

        return (_primaryNodeId, string.Create(CultureInfo.InvariantCulture,
            $"{why} (after waiting {_services.Time.GetElapsedTime(started).TotalMilliseconds:0} ms)"));
    }

    private static readonly Task<ReplaySample> NothingNew = Task.FromResult(default(ReplaySample));

    private const string NotKnownYet = RouteRules.StandbyBehind + ": the session's WAL position is not known yet: the primary";

    /// <summary>PGPOOL EXPLAIN ROUTE: the same decision from what is known now, without asking or waiting.</summary>
    private (int NodeId, string Reason) ExplainReadYourWrites(int nodeId, string reason)
    {
        if (!ReadYourWritesOn || nodeId == _primaryNodeId || !RouteRules.IsBalanceRule(RouteRules.Of(reason)))
        {
            return (nodeId, reason);
        }

        if (_lsnCapture is { } capture)
        {
            if (!capture.Task.IsCompleted)
            {
                return (_primaryNodeId, NotKnownYet);
            }

            _sessionLsn = Math.Max(_sessionLsn, capture.Task.Result);
        }

        var tracker = _services.Replay!;
        var (choice, why) = Decide(nodeId, ReadYourWrites.Standbys(_services.Nodes.Current, id => tracker.Latest(id).Lsn));
        return why is null ? (nodeId, reason) : (choice, why);
    }

    private (int NodeId, string? Reason) Decide(int nodeId, ReadYourWrites.Standby[] standbys)
    {
        lock (_routingLock)
        {
            return ReadYourWrites.Choose(_sessionLsn, nodeId, _primaryNodeId, standbys, _random);
        }
    }

    private static void Update(ReadYourWrites.Standby[] standbys, Task<ReplaySample>[] asks)
    {
        for (var i = 0; i < standbys.Length; i++)
        {
            if (asks[i].IsCompletedSuccessfully && asks[i].Result.Lsn > standbys[i].ReplayLsn)
            {
                standbys[i] = standbys[i] with { ReplayLsn = asks[i].Result.Lsn };
            }
        }
    }

    /// <summary>Whether <paramref name="task"/> completed within <paramref name="timeout"/>.</summary>
    private static async Task<bool> Completes(Task task, TimeSpan timeout, CancellationToken ct)
    {
        if (task.IsCompleted)
        {
            return true;
        }

        if (timeout <= TimeSpan.Zero)
        {
            return false;
        }

        try
        {
            await task.WaitAsync(timeout, ct);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }
}

/// <summary>
/// The answer to Poold's <c>SELECT pg_current_wal_insert_lsn(), current_setting('wal_block_size')</c> on the primary, read
/// by the reply pump: the end of the session's writes (<see cref="ReadYourWrites.EndOfWrites"/>; 0 when it failed).
/// </summary>
internal sealed class WalPositionCapture
{
    private readonly TaskCompletionSource<ulong> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ulong _lsn;

    public Task<ulong> Task => _done.Task;

    /// <summary>A DataRow of the answer: two text columns, X/Y and the WAL block size.</summary>
    public void Read(ReadOnlySequence<byte> body)
    {
        Span<byte> row = stackalloc byte[64];
        if (body.Length > row.Length || body.Length < 2)
        {
            return;
        }

        body.CopyTo(row);
        row = row[..(int)body.Length];
        var offset = 2;
        if (BinaryPrimitives.ReadInt16BigEndian(row) == 2 && Column(row, ref offset) is { } lsn && Column(row, ref offset) is { } blockSize)
        {
            _lsn = ReadYourWrites.EndOfWrites(NodeMonitor.ParseLsn(lsn),
                int.TryParse(blockSize, NumberStyles.None, CultureInfo.InvariantCulture, out var size) ? size : 0);
        }
    }

    /// <summary>The text column of <paramref name="row"/> at <paramref name="offset"/>, which moves past it (null when NULL or cut short).</summary>
    private static string? Column(ReadOnlySpan<byte> row, ref int offset)
    {
        if (row.Length - offset < 4 || BinaryPrimitives.ReadInt32BigEndian(row[offset..]) is var length && (length < 0 || length > row.Length - offset - 4))
        {
            return null;
        }

        var text = Encoding.ASCII.GetString(row.Slice(offset + 4, length));
        offset += 4 + length;
        return text;
    }

    public void Complete() => _done.TrySetResult(_lsn);
}
