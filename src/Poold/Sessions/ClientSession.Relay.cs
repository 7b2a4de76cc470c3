using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

internal sealed partial class ClientSession
{
    /// <summary>Frames Poold reads whole on the reply path (ReadyForQuery, ParameterStatus, ParseComplete …) stay below this.</summary>
    private const int MaxInspectedFrame = 1 << 20;

    /// <summary>How long a leaving client's unfinished requests may take before its backend connections are closed instead of reused.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Batches sent whose ReadyForQuery the client has not had yet: 0 when the session is idle.</summary>
    private int _outstanding;

    /// <summary>Timestamp of the client's last data or of the backend's last answer to it, for <c>client_idle_limit</c>.</summary>
    private long _idleSince;

    /// <summary>
    /// Once the session has LISTENed, the reply pump also watches the primary between batches, so notifications reach
    /// an idle client; until then it only waits for batches (one wake-up per batch instead of two).
    /// </summary>
    private bool _watchPrimary;

    /// <summary>Replies to read, in the order the requests were sent: each is read from its node up to its ReadyForQuery.</summary>
    private readonly ReplyQueue<ReplyEntry> _replies = new();

    /// <summary>
    /// One batch's replies on one node: relayed to the client (the batch's main node) or read and dropped (catch-up
    /// queries, and other nodes' copies of transaction control). <see cref="SkipLeading"/> ParseComplete/CloseComplete
    /// messages answer statements Poold injected at the head of the batch, and are not the client's.
    /// </summary>
    private readonly record struct ReplyEntry(NodeLink Link, bool Relay, int SkipLeading, long Sequence, byte[]? Synthetic = null,
        BatchControl? Control = null, long SentAt = 0, WalPositionCapture? Capture = null);

    /// <summary>
    /// A batch sent before its Sync: the client side may later end it with a Sync of Poold's (<see cref="SwallowReadyForQuery"/>,
    /// set before that Sync is written, so the reply pump sees it when the ReadyForQuery comes) and wait for its replies.
    /// </summary>
    private sealed class BatchControl
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public volatile bool SwallowReadyForQuery;

        /// <summary>An ErrorResponse came among the batch's replies.</summary>
        public bool Failed { get; set; }

        public TransactionStatus Status { get; private set; } = TransactionStatus.Idle;

        public Task Completion => _done.Task;

        public void Complete(TransactionStatus status)
        {
            Status = status;
            _done.TrySetResult();
        }

        public void Abandon() => _done.TrySetCanceled();
    }

    /// <summary>Set once the server's own FATAL went to the client: the session ends without a second error from Poold.</summary>
    private volatile bool _serverFatalRelayed;

    /// <summary>Set when part of a frame has reached the client: nothing more may be written to it (no error can be framed).</summary>
    private volatile bool _clientMidFrame;

    /// <summary>
    /// Two pumps: client → backends (message by message; batches are routed by <see cref="DispatchBatchAsync"/> and <see cref="DispatchQueryAsync"/>) until
    /// Terminate or end of stream, and backends → client, which reads each batch's replies from the node that runs it,
    /// in order, and in between passes on the primary's asynchronous messages (notifications, notices).
    /// </summary>
    private async Task<SessionEnd> RelayAsync(CancellationToken shutdown)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        var fromBackends = PumpRepliesAsync(stop.Token);
        var clientReader = new ContiguousPipeReader(_client, bufferSize: 16 * 1024, minimumReadSize: 4096);
        _clientReader = clientReader;
        Task<SessionEnd>? toBackends = null;
        SessionEnd end;
        try
        {
            toBackends = PumpClientAsync(clientReader, stop.Token);
            var first = await Task.WhenAny(toBackends, fromBackends);
            if (first == fromBackends)
            {
                // The reply side ended first: it failed (the error surfaces here) or a backend closed the connection.
                await fromBackends;
                throw new BackendException(_primaryNodeId, SqlState.ConnectionFailure,
                    $"backend node {_primaryNodeId} closed the connection unexpectedly");
            }

            end = await toBackends;
            if (end == SessionEnd.ClientClosed)
            {
                // The client closed its side after whole messages (a half-close: shutdown(SHUT_WR), or a FIN in the same
                // read as its last query). PostgreSQL answers every message it has read before it acts on the end of the
                // stream: so does Poold. Nothing more is queued now; the reply pump reads what is owed and stops. A
                // client that closed both ways makes the first write fail, which ends it too. Bounded: a statement still
                // running after DrainTimeout is cancelled as for any client that leaves (ReleaseAsync), so a vanished
                // client does not hold a server connection for as long as its query runs.
                _replies.Complete();
                _backends.Primary?.Connection.Reader.CancelPendingRead();
                await Task.WhenAny(fromBackends, Task.Delay(DrainTimeout, _services.Time, shutdown));
            }
        }
        finally
        {
            _replies.Complete();
            foreach (var link in _backends.Links)
            {
                link.Connection.Reader.CancelPendingRead();
            }

            // Cancel, not CancelAsync: the callbacks (the pumps' pending reads) are short, and CancelAsync would wake a
            // thread-pool thread for every session that ends.
            stop.Cancel();
            clientReader.CancelPendingRead();
            await SwallowAsync(fromBackends);
            if (toBackends is not null)
            {
                // Both pumps are stopped before the backend connections are released: nothing else touches them then.
                await StoppedAsync(toBackends);
            }

            await clientReader.CompleteAsync();
        }

        return end;
    }

    /// <summary>How many client messages one read's buffer may handle before the session yields its thread.</summary>
    private const int MessagesPerTurn = 256;

    private async Task<SessionEnd> PumpClientAsync(PipeReader reader, CancellationToken shutdown)
    {
        var idleLimit = _services.Settings.Get(Params.ClientIdleLimit);
        await using var onShutdown = shutdown.Register(static r => ((PipeReader)r!).CancelPendingRead(), reader);

        // client_idle_limit: a timer wakes the pending read now and then; the read gives up once no batch is in flight
        // and the client has sent nothing for the whole limit. Waits end with CancelPendingRead, which also interrupts
        // an idle zero-byte read (a token would not).
        using var idleTimer = idleLimit > TimeSpan.Zero
            ? _services.Time.CreateTimer(static r => ((PipeReader)r!).CancelPendingRead(), reader, IdleCheckPeriod(idleLimit),
                IdleCheckPeriod(idleLimit))
            : null;
        Volatile.Write(ref _idleSince, _services.Time.GetTimestamp());
        var maxMessage = _services.Settings.Get(Params.MaxPacketSize);
        try
        {
            while (true)
            {
                if (_transactionMode)
                {
                    // Connections the reply pump could not give back (a cancel to wait for, one to close) go back now; then,
                    // while this pump waits for the client, the reply pump may release them itself.
                    await ReleaseBindingAsync(shutdown);
                    if (!Park())
                    {
                        continue;
                    }
                }

                // No token: the registration above ends this wait (one registration per session, not one per read).
                var result = await reader.ReadAsync(CancellationToken.None);
                if (_transactionMode)
                {
                    Unpark();
                }

                if (result.IsCanceled)
                {
                    shutdown.ThrowIfCancellationRequested();
                    ThrowIfIdleTooLong(idleLimit);
                    continue;
                }

                Volatile.Write(ref _idleSince, _services.Time.GetTimestamp());

                // Nothing of the read is used here after this call: the state machine kept while the session is idle
                // holds no reference to the read's buffer (a pooled array, which the pool may have dropped meanwhile).
                if (await HandleClientReadAsync(reader, result, maxMessage, shutdown) is { } end)
                {
                    return end;
                }
            }
        }
        finally
        {
            // Whatever ends the pump, the reply pump touches the connections no more once it returns.
            Unpark();
        }
    }

    /// <summary>
    /// Handles the whole messages of one client read and advances the reader past them. Returns how the session ends
    /// when it does (Terminate, or the client's end of stream), else null. A method of its own, with a pooled state
    /// machine: the client pump's own, which every idle session keeps, stays small and holds nothing of the read.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<SessionEnd?> HandleClientReadAsync(PipeReader reader, ReadResult result, int maxMessage, CancellationToken shutdown)
    {
        var buffer = result.Buffer;
        var handled = 0;
        while (TryReadClientFrame(ref buffer, maxMessage, out var code, out var frame, out var body))
        {
            _bytesIn += frame.Length;
            if (++handled % MessagesPerTurn == 0)
            {
                // A client pipelining thousands of messages in one read must not hold the socket engine's event thread
                // (continuations run inline there): hand the rest to the thread pool so other sockets get their turn.
                await Task.Yield();
            }

            if (code == (byte)FrontendCode.Terminate)
            {
                await FlushBatchAsync(shutdown);
                reader.AdvanceTo(buffer.Start);
                return SessionEnd.Terminated;
            }

            await OnClientMessageAsync(code, frame, body, shutdown);
        }

        await FlushBatchIfStreamingAsync(shutdown);
        reader.AdvanceTo(buffer.Start, buffer.End);
        return result.IsCompleted ? SessionEnd.ClientClosed : null;
    }

    /// <summary>A whole client message, or false for more bytes; a header announcing more than max_packet_size ends the session (54000).</summary>
    private static bool TryReadClientFrame(ref ReadOnlySequence<byte> buffer, int maxMessage, out byte code, out ReadOnlySequence<byte> frame,
        out ReadOnlySequence<byte> body)
    {
        if (FrameReader.TryReadHeader(buffer, int.MaxValue, out code, out var length) && length > maxMessage)
        {
            throw new ClientFatalException(SqlState.ProgramLimitExceeded,
                $"message of type '{(char)code}' is {length} bytes, more than max_packet_size ({maxMessage} bytes)",
                "Raise max_packet_size in the Poold configuration to accept larger messages.");
        }

        return FrameReader.TryReadFrame(ref buffer, maxMessage, out code, out frame, out body);
    }

    private static TimeSpan IdleCheckPeriod(TimeSpan idleLimit) =>
        TimeSpan.FromTicks(Math.Clamp(idleLimit.Ticks / 4, TimeSpan.TicksPerMillisecond * 100, TimeSpan.TicksPerSecond * 5));

    private void ThrowIfIdleTooLong(TimeSpan idleLimit)
    {
        if (idleLimit > TimeSpan.Zero && Volatile.Read(ref _outstanding) == 0
            && _services.Time.GetElapsedTime(Volatile.Read(ref _idleSince)) >= idleLimit)
        {
            throw new ClientFatalException(SqlState.IdleSessionTimeout,
                $"terminating connection because the client was idle for client_idle_limit ({idleLimit.TotalSeconds:0}s)");
        }
    }

    /// <summary>
    /// Backends → client: each queued batch's replies from its node, up to and including its ReadyForQuery, relayed or
    /// dropped; the primary's asynchronous messages in between. What is relayed goes to the client as contiguous runs
    /// of the backend's bytes (one write per read, not one per message); only ReadyForQuery, ParameterStatus,
    /// ErrorResponse and the ParseComplete/CloseComplete Poold may hide are looked into.
    /// </summary>
    private async Task PumpRepliesAsync(CancellationToken stop)
    {
        // No hop to the thread pool to start: the first wait (for a batch) comes at once and returns to the caller. An
        // idle session waits here, in this small state machine; the large one that reads replies (DrainRepliesAsync) is
        // rented from a pool while there are replies to read and given back when the queue is empty.
        while (true)
        {
            await DrainRepliesAsync(stop);
            if (_replies.IsDone)
            {
                return;
            }

            if (Volatile.Read(ref _watchPrimary))
            {
                await RelayAsynchronousAsync(_backends.Primary!, stop);
            }
            else if (!await _replies.WaitToReadAsync())
            {
                // The relay's end completes the queue, which wakes this wait.
                return;
            }
        }
    }

    /// <summary>Reads the replies of every batch queued, in order, until the queue is empty.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DrainRepliesAsync(CancellationToken stop)
    {
        while (_replies.TryRead(out var entry))
        {
            if (entry.Synthetic is { } answer)
            {
                // Poold's own answer (SHOW POOL_NODES …), in its place among the backends' replies.
                await ClientWriteAsync(answer, stop);
                await ClientFlushAsync(stop);
                if (Interlocked.Decrement(ref _outstanding) == 0)
                {
                    Volatile.Write(ref _idleSince, _services.Time.GetTimestamp());
                    if (_transactionMode && Volatile.Read(ref _repliesInFlight) == 0)
                    {
                        // Poold's answer was the last thing outstanding: the connections may go back now.
                        ReleaseFromReplyPump();
                    }
                }

                continue;
            }

            // The rest of a large frame, streamed as it arrives (part of it may already be with the client).
            long remaining = 0;
            try
            {
                // One batch's replies, read up to and including its ReadyForQuery, relayed or dropped. Inline rather
                // than a method of its own: a call per batch would cost a state machine per statement.
                var link = entry.Link;
                var reader = link.Connection.Reader;
                var skip = entry.SkipLeading;
                while (true)
                {
                    var result = await reader.ReadAsync(stop);
                    if (result.IsCanceled)
                    {
                        stop.ThrowIfCancellationRequested();
                        if (link.NodeDown)
                        {
                            throw new BackendException(link.Connection.NodeId, SqlState.ConnectionFailure,
                                $"backend node {link.Connection.NodeId} was detached while running this statement");
                        }

                        continue;
                    }

                    var buffer = result.Buffer;
                    var runStart = buffer.Start;
                    var done = false;
                    while (!done)
                    {
                        if (remaining > 0)
                        {
                            var take = Math.Min(remaining, buffer.Length);
                            buffer = buffer.Slice(take);
                            remaining -= take;
                            if (remaining > 0)
                            {
                                break;
                            }

                            continue;
                        }

                        if (!FrameReader.TryReadHeader(buffer, int.MaxValue, out var code, out var length))
                        {
                            break;
                        }

                        var inspected = (code is (byte)BackendCode.ReadyForQuery or (byte)BackendCode.ParameterStatus or (byte)BackendCode.ParseComplete
                                             or (byte)BackendCode.CloseComplete or (byte)BackendCode.ErrorResponse
                                         || (code == (byte)BackendCode.DataRow && entry.Capture is not null)) && length <= MaxInspectedFrame;
                        if (!inspected)
                        {
                            var available = Math.Min(1 + (long)length, buffer.Length);
                            buffer = buffer.Slice(available);
                            remaining = 1 + (long)length - available;
                            continue;
                        }

                        if (buffer.Length < 1 + length)
                        {
                            break;
                        }

                        var frame = buffer.Slice(0, 1 + length);
                        var body = frame.Slice(FrameReader.HeaderLength);
                        if (code is (byte)BackendCode.ParseComplete or (byte)BackendCode.CloseComplete && skip > 0)
                        {
                            // Poold's own injected statement: send what came before it, leave it out.
                            skip--;
                            await RelayRunAsync(entry, result.Buffer, runStart, frame.Start, stop);
                            buffer = buffer.Slice(frame.End);
                            runStart = buffer.Start;
                            continue;
                        }

                        buffer = buffer.Slice(frame.End);
                        if (code == (byte)BackendCode.DataRow)
                        {
                            entry.Capture!.Read(body);
                        }
                        else if (code == (byte)BackendCode.ParameterStatus)
                        {
                            var (name, value) = BackendConnection.ParseParameterStatus(body);
                            link.Connection.UpdateParameter(name, value);
                        }
                        else if (code == (byte)BackendCode.ErrorResponse)
                        {
                            var error = ErrorFields.Parse(body);
                            link.SawError = true;
                            if (!entry.Relay)
                            {
                                LogCatchUpError(link.Connection.NodeId, error.Message);
                            }

                            if (entry.Control is { } failed)
                            {
                                failed.Failed = true;
                            }

                            if (entry.Relay && error.Severity is "FATAL" or "PANIC")
                            {
                                // The server ends the connection with its own words (pg_terminate_backend: 57P01): the
                                // client has them, and gets nothing of Poold's after them.
                                _serverFatalRelayed = true;
                            }

                            if (error.SqlState is "57P01" or "57P02")
                            {
                                // failover_on_backend_shutdown: the server is going down (confirmed by a login attempt).
                                _services.BackendFailed?.Invoke(link.Connection.NodeId, $"the server is shutting down ({error.SqlState})", true);
                            }
                        }
                        else if (code == (byte)BackendCode.ReadyForQuery && body.Length == 1)
                        {
                            // A ReadyForQuery that answers Poold's own Sync (see EndLockedBatchAsync) stays here.
                            var swallow = entry.Control is { SwallowReadyForQuery: true };
                            await RelayRunAsync(entry, result.Buffer, runStart, swallow ? frame.Start : buffer.Start, stop);
                            runStart = buffer.Start;
                            if (entry.Relay)
                            {
                                await ClientFlushAsync(stop);
                            }

                            var status = (TransactionStatus)body.FirstSpan[0];
                            ObserveLatency(entry);
                            OnReadyForQuery(entry, status);
                            entry.Control?.Complete(status);
                            entry.Capture?.Complete();
                            done = true;
                        }
                    }

                    if (done)
                    {
                        // What follows the ReadyForQuery belongs to the next batch: not examined yet.
                        reader.AdvanceTo(buffer.Start);
                        link.FrameRemaining = 0;
                        break;
                    }

                    await RelayRunAsync(entry, result.Buffer, runStart, buffer.Start, stop);
                    if (entry.Relay)
                    {
                        await ClientFlushAsync(stop);
                    }

                    reader.AdvanceTo(buffer.Start, buffer.End);
                    link.FrameRemaining = remaining;
                    if (result.IsCompleted)
                    {
                        throw new BackendException(link.Connection.NodeId, SqlState.ConnectionFailure,
                            $"backend node {link.Connection.NodeId} closed the connection unexpectedly");
                    }
                }
            }
            catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException
                                          && entry.Link != _backends.Primary && !entry.Link.TransactionOpen && !stop.IsCancellationRequested)
            {
                // A standby died under a statement outside a transaction: that statement fails, the session goes on,
                // unless part of a frame already reached the client (no error can be framed after it).
                entry.Link.Connection.Break();
                if (remaining > 0 && entry.Relay)
                {
                    _clientMidFrame = true;
                    throw;
                }

                await FailStandbyEntryAsync(entry, e.Message, stop);
            }
            catch
            {
                entry.Control?.Abandon();
                entry.Capture?.Complete();
                throw;
            }

            if (Interlocked.Decrement(ref _repliesInFlight) == 0 && _transactionMode)
            {
                // Every reply read: the connections may go back now.
                ReleaseFromReplyPump();
            }
        }
    }

    /// <summary>
    /// While nothing is queued: passes on whole frames the primary sends unasked (NotificationResponse, NoticeResponse,
    /// ParameterStatus, a FATAL before it closes). Returns when a batch is queued (the dispatcher wakes this read).
    /// </summary>
    private async Task RelayAsynchronousAsync(NodeLink link, CancellationToken stop)
    {
        var reader = link.Connection.Reader;
        var result = await reader.ReadAsync(stop);
        var buffer = result.Buffer;
        if (result.IsCanceled || _replies.TryPeek(out _))
        {
            reader.AdvanceTo(buffer.Start);
            return;
        }

        var forwarded = false;
        while (FrameReader.TryReadFrame(ref buffer, MaxInspectedFrame, out var code, out var frame, out var body))
        {
            if (code == (byte)BackendCode.ParameterStatus)
            {
                var (name, value) = BackendConnection.ParseParameterStatus(body);
                link.Connection.UpdateParameter(name, value);
            }
            else if (code == (byte)BackendCode.ErrorResponse && ErrorFields.Parse(body).Severity is "FATAL" or "PANIC")
            {
                _serverFatalRelayed = true;
            }

            await WriteToClientAsync(frame, stop);
            forwarded = true;
        }

        if (forwarded)
        {
            await ClientFlushAsync(stop);
        }

        reader.AdvanceTo(buffer.Start, buffer.End);
        if (result.IsCompleted)
        {
            throw new BackendException(link.Connection.NodeId, SqlState.ConnectionFailure,
                $"backend node {link.Connection.NodeId} closed the connection unexpectedly");
        }
    }

    /// <summary>Writes to the client; a failure is the client's, never the backend's (<see cref="ClientGoneException"/>).</summary>
    private async ValueTask ClientWriteAsync(ReadOnlyMemory<byte> data, CancellationToken stop)
    {
        try
        {
            await _client.WriteAsync(data, stop);
            _bytesOut += data.Length;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new ClientGoneException(e);
        }
    }

    private async ValueTask ClientFlushAsync(CancellationToken stop)
    {
        try
        {
            await _client.FlushAsync(stop);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new ClientGoneException(e);
        }
    }

    /// <summary>Writes the bytes between two positions of a read buffer to the client (when the entry is relayed).</summary>
    private async ValueTask RelayRunAsync(ReplyEntry entry, ReadOnlySequence<byte> buffer, SequencePosition from, SequencePosition to,
        CancellationToken stop)
    {
        if (entry.Relay && !from.Equals(to))
        {
            await WriteToClientAsync(buffer.Slice(from, to), stop);
        }
    }

    /// <summary>
    /// The replies of <paramref name="entry"/> will never come: the client gets an 08006 error and ReadyForQuery in their
    /// place, the connection is marked dead (the next statement goes elsewhere), and the node is reported.
    /// </summary>
    private async Task FailStandbyEntryAsync(ReplyEntry entry, string reason, CancellationToken stop)
    {
        var link = entry.Link;
        var nodeId = link.Connection.NodeId;
        if (!link.Dead)
        {
            link.Dead = true;
            LogBalanceNodeUnavailable(nodeId, reason);
            _services.BackendFailed?.Invoke(nodeId, reason, false);
        }

        Interlocked.Decrement(ref link.Pending);
        if (!entry.Relay)
        {
            entry.Control?.Complete(TransactionStatus.Idle);
            return;
        }

        var buffer = new MessageBuffer(256);
        buffer.Error("ERROR", SqlState.ConnectionFailure, $"backend node {nodeId} failed while running this statement: {reason}",
            "The session is still usable: run the statement again and it goes to another node.");
        buffer.ReadyForQuery(TransactionStatus.Idle);
        await ClientWriteAsync(buffer.Written, stop);
        await ClientFlushAsync(stop);
        OnReadyForQuery(entry, TransactionStatus.Idle, countPending: false);
        entry.Control?.Complete(TransactionStatus.Idle);
    }

    private void OnReadyForQuery(ReplyEntry entry, TransactionStatus status) => OnReadyForQuery(entry, status, countPending: true);

    private void OnReadyForQuery(ReplyEntry entry, TransactionStatus status, bool countPending)
    {
        var link = entry.Link;
        link.Connection.TransactionStatus = status;
        var pending = countPending ? Interlocked.Decrement(ref link.Pending) : Volatile.Read(ref link.Pending);
        if (pending == 0)
        {
            // The answer to the last request sent on this connection: the server's word on its transaction replaces
            // whatever Poold predicted from the statements it saw pass.
            link.TransactionOpen = status != TransactionStatus.Idle;
        }

        if (!entry.Relay)
        {
            return;
        }

        _clientStatus = status;
        if (Interlocked.Decrement(ref _outstanding) == 0)
        {
            Volatile.Write(ref _idleSince, _services.Time.GetTimestamp());
        }

        lock (_routingLock)
        {
            _failedLink = status == TransactionStatus.Failed ? link : null;
            if (entry.Sequence == _lastSequence)
            {
                _router!.ReadyForQuery(status != TransactionStatus.Idle);
            }
        }
    }

    private async ValueTask WriteToClientAsync(ReadOnlySequence<byte> data, CancellationToken stop)
    {
        foreach (var segment in data)
        {
            await ClientWriteAsync(segment, stop);
        }
    }

    /// <summary>Waits for a pump that was stopped; its error, if it mattered, was observed where the relay ended.</summary>
    private static async Task StoppedAsync(Task task)
    {
        try
        {
            await task;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Already observed by the relay's await, or secondary to the error that ended the session.
        }
    }

    private static async Task SwallowAsync(Task task)
    {
        try
        {
            await task;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException
                                      or ObjectDisposedException or PgProtocolException or InvalidOperationException or BackendException
                                      or ClientGoneException)
        {
            // The pump is being stopped; its error, if any, was reported by whoever ended the relay.
        }
    }

    /// <summary>
    /// Gives every backend connection back: reset and pooled when its stream is in step and idle (every request
    /// answered, or answered within <see cref="DrainTimeout"/> and <see cref="MaxDrainBytes"/>), otherwise closed. Cancels
    /// this session forwarded are finished first, and a connection that had one is checked with a round trip, so a late
    /// cancel can never reach the connection's next owner.
    /// </summary>
    private async Task ReleaseBackendsAsync(SessionEnd end)
    {
        var cancelled = await _cancelGate.CloseAsync(DrainTimeout);
        var links = _backends.TakeAll();
        if (links.Count == 0 && Interlocked.Exchange(ref _backend, null) is { } lone)
        {
            links.Add(new NodeLink(lone));
        }

        Volatile.Write(ref _backend, null);
        foreach (var link in links)
        {
            link.StopWatching();
            await ReleaseAsync(link, end, cancelled);
        }
    }

    private async Task ReleaseAsync(NodeLink link, SessionEnd end, bool cancelled)
    {
        var backend = link.Connection;
        var pool = _services.Pool;
        var keep = end != SessionEnd.Failed && !link.Dead && !link.NodeDown && !backend.IsBroken && _replication == ReplicationMode.None && ConnectionPool.IsCacheable(backend.Key.Database)
                   && (_services.Settings.Get(Params.ConnectionCache) || backend.Shared);
        if (keep)
        {
            try
            {
                using var cts = new CancellationTokenSource(DrainTimeout);
                if (Volatile.Read(ref link.Pending) > 0)
                {
                    // The client left with requests unanswered: stop the server working on them rather than read a
                    // large result to its end.
                    cancelled = true;
                    await BackendConnection.SendCancelAsync(backend.Node, backend.ProcessId, backend.SecretKey,
                        _services.Settings.Get(Params.ConnectTimeout, backend.NodeId), cts.Token);
                }

                keep = await DrainAsync(link, cts.Token)
                       && (!cancelled || await backend.ProbeAsync("", cts.Token))
                       && await backend.ResetAsync(_services.Settings.Get(Params.ResetQueryList), cts.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException
                                          or PgProtocolException or BackendException or ObjectDisposedException or InvalidOperationException)
            {
                keep = false;
            }
        }

        if (keep && backend.Shared)
        {
            // What the reset left: with DISCARD ALL in reset_query_list, nothing; otherwise unknown, so the next client
            // resets the connection and drops its statements before it relies on any.
            var discarded = _services.Settings.Get(Params.ResetQueryList).Any(q => q.Trim().TrimEnd(';').Trim().Equals("DISCARD ALL", StringComparison.OrdinalIgnoreCase));
            backend.AppliedState = discarded ? "" : ResetMark;
            backend.Prepared.Clear();
            backend.PreparedUncertain = !discarded;
            if (pool.Return(backend))
            {
                return;
            }
        }
        else if (keep && pool.TryReturn(backend))
        {
            return;
        }

        backend.Break();
        pool.Forget(backend);
        await backend.DisposeAsync();
    }

    /// <summary>A leaving client's unanswered replies are read and dropped up to this many bytes; past it the connection is closed.</summary>
    private const long MaxDrainBytes = 1 << 20;

    /// <summary>
    /// Reads and discards the answers to requests the client left behind on one connection, from exactly where the
    /// reply pump stopped (inside a frame, when it did). False when there is more than <see cref="MaxDrainBytes"/> or
    /// the server closed the connection: the connection is then closed.
    /// </summary>
    private static async Task<bool> DrainAsync(NodeLink link, CancellationToken cancellationToken)
    {
        var reader = link.Connection.Reader;
        var skip = link.FrameRemaining;
        long drained = 0;
        while (link.Pending > 0)
        {
            var result = await reader.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                continue;
            }

            var buffer = result.Buffer;
            while (link.Pending > 0)
            {
                if (skip > 0)
                {
                    var take = Math.Min(skip, buffer.Length);
                    buffer = buffer.Slice(take);
                    skip -= take;
                    drained += take;
                    if (skip > 0)
                    {
                        break;
                    }
                }

                if (!FrameReader.TryReadHeader(buffer, int.MaxValue, out var code, out var length))
                {
                    break;
                }

                if (code == (byte)BackendCode.ReadyForQuery && length == 5)
                {
                    if (buffer.Length < 6)
                    {
                        break;
                    }

                    link.Connection.TransactionStatus = (TransactionStatus)buffer.Slice(5, 1).FirstSpan[0];
                    link.Pending--;
                    buffer = buffer.Slice(6);
                    continue;
                }

                skip = 1 + (long)length;
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
            link.FrameRemaining = skip;
            if (drained > MaxDrainBytes || result.IsCompleted)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Reads one 32-bit big-endian integer at <paramref name="offset"/> of a sequence.</summary>
    private static int ReadInt32(in ReadOnlySequence<byte> data, int offset)
    {
        Span<byte> bytes = stackalloc byte[4];
        data.Slice(offset, 4).CopyTo(bytes);
        return BinaryPrimitives.ReadInt32BigEndian(bytes);
    }
}
