using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

internal sealed partial class BackendSide
{
    /// <summary>Frames Poold reads whole on the reply path (ReadyForQuery, ParameterStatus, ParseComplete …) stay below this.</summary>
    private const int MaxInspectedFrame = 1 << 20;

    /// <summary>How long a leaving client's unfinished requests may take before its backend connections are closed instead of reused.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Batches sent whose ReadyForQuery the client has not had yet: 0 when the session is idle.</summary>
    private int _outstanding;

    /// <summary>Timestamp of the backend side's last answer to the client, for <c>client_idle_limit</c> (the client side keeps the client's own).</summary>
    private long _answeredAt;

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
        BatchControl? Control = null, long SentAt = 0, WalPositionCapture? Capture = null, string[]? Leading = null);

    /// <summary>
    /// A batch sent before its Sync: the dispatch may later end it with a Sync of Poold's (<see cref="SwallowReadyForQuery"/>,
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

        /// <summary>
        /// ParseComplete/CloseComplete replies the client's own messages of the batch's parts sent so far will bring
        /// (one per Parse and per Close). Kept by the dispatch only.
        /// </summary>
        public int ClientCompletes;

        /// <summary>Statements Poold put ahead of a later part: after that many of the client's completions, so many of Poold's (under the lock).</summary>
        private volatile List<(int After, int Count)>? _hidden;

        /// <summary>
        /// The names of the statements Poold parsed or closed ahead of later parts (the dispatch's only). When the batch
        /// fails, the server may have skipped them (it skips everything up to the Sync after an error), and the
        /// dispatch's records of those names are not to be trusted (<see cref="InjectionsSkipped"/>).
        /// </summary>
        public List<string> InjectedNames { get; } = [];

        /// <summary>Set with the batch's end: an error came, and some of Poold's statements got no completion (the server skipped them).</summary>
        public bool InjectionsSkipped { get; private set; }

        /// <summary>The batch's ReadyForQuery has come (set before the client gets it: its next batch sees the flag).</summary>
        public bool Ended => _ended;

        private volatile bool _ended;

        /// <summary>The batch's changes to the client's named statements, until settled (the dispatch's only: see <see cref="StatementRegistry.Settle"/>).</summary>
        public List<ParsedStatement> Parsed => _parsed ??= [];

        private List<ParsedStatement>? _parsed;

        /// <summary>The client's ParseComplete/CloseComplete replies that came before the batch ended (read once <see cref="Ended"/>).</summary>
        public int CompletesAtEnd { get; private set; }

        /// <summary>
        /// The reply pump, at the batch's ReadyForQuery, before it goes to the client, with the number of the client's
        /// ParseComplete/CloseComplete replies it relayed: after an error, the client's Parse and Close messages past them did not run.
        /// </summary>
        public void End(int clientCompletes)
        {
            CompletesAtEnd = clientCompletes;
            if (Failed && _hidden is not null)
            {
                lock (this)
                {
                    InjectionsSkipped = _hidden.Exists(static h => h.Count > 0);
                }
            }

            _ended = true;
        }

        /// <summary>
        /// The dispatch, before it writes a later part with <paramref name="count"/> statements of Poold's ahead of it
        /// (statements the connection lacks): their completions come after <see cref="ClientCompletes"/> of the client's.
        /// </summary>
        public void HideAfterClientCompletes(int count)
        {
            lock (this)
            {
                var hidden = _hidden ?? [];
                hidden.Add((ClientCompletes, count));
                _hidden = hidden;
            }
        }

        /// <summary>The reply pump, at a ParseComplete/CloseComplete after <paramref name="relayed"/> of the client's: true when it is Poold's.</summary>
        public bool TakeHidden(int relayed)
        {
            if (_hidden is null)
            {
                // The common case, a batch with nothing of Poold's in its later parts: no lock.
                return false;
            }

            lock (this)
            {
                if (_hidden is not { } hidden)
                {
                    return false;
                }

                for (var i = 0; i < hidden.Count; i++)
                {
                    var (after, count) = hidden[i];
                    if (after == relayed && count > 0)
                    {
                        hidden[i] = (after, count - 1);
                        return true;
                    }
                }

                return false;
            }
        }

        public void Complete(TransactionStatus status)
        {
            if (!_ended)
            {
                // Completed without a ReadyForQuery of its own (a standby that failed under the batch): what it ran is unknown.
                Failed = true;
                End(0);
            }

            Status = status;
            _done.TrySetResult();
        }

        public void Abandon() => _done.TrySetCanceled();
    }

    /// <summary>Set once the server's own FATAL went to the client (see <see cref="ServerFatalRelayed"/>).</summary>
    private volatile bool _serverFatalRelayed;

    /// <summary>
    /// Backends → client: each queued batch's replies from its node, up to and including its ReadyForQuery, relayed or
    /// dropped; the primary's asynchronous messages in between. What is relayed goes to the client as contiguous runs
    /// of the backend's bytes (one write per read, not one per message); only ReadyForQuery, ParameterStatus,
    /// ErrorResponse and the ParseComplete/CloseComplete Poold may hide are looked into.
    /// </summary>
    public async Task PumpRepliesAsync(CancellationToken stop)
    {
        // No hop to the thread pool to start: the first wait (for a batch) comes at once and returns to the caller. An
        // idle session waits here, in this small state machine; the large one that reads replies (DrainRepliesAsync) is
        // rented from a pool while there are replies to read and given back when the queue is empty.
        while (true)
        {
            // The wait for the first batch's first reply happens here, in this long-lived state machine, and leaves the
            // reply in the reader (nothing consumed or examined: its next read returns it at once), so that the large
            // state machine below usually runs to the end without a wait: a statement answered in one read costs no
            // state machine from the pool, whose few cached ones the sessions waiting for replies would otherwise exceed
            // (one allocation per statement). What the wait ends with is left for the drain: a cancellation is asked
            // again, an error is raised there, where the entry's handlers are.
            ExceptionDispatchInfo? waitFailed = null;
            if (_replies.TryPeek(out var head) && head.Synthetic is null)
            {
                var reader = head.Link.Connection.Reader;
                try
                {
                    var result = await reader.ReadAsync(stop);

                    // Back to where the read began (the reader, always a ContiguousPipeReader, takes an examined
                    // position earlier than its last): a partial frame left by RelayAsynchronousAsync is parsed again.
                    reader.AdvanceTo(result.Buffer.Start);
                    if (result.IsCanceled && !stop.IsCancellationRequested)
                    {
                        // For the drain to see as it did (a wake-up, a detached node); a stopping session needs none.
                        reader.CancelPendingRead();
                    }
                }
                catch (Exception e)
                {
                    waitFailed = ExceptionDispatchInfo.Capture(e);
                }
            }

            await DrainRepliesAsync(waitFailed, stop);
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
    private async ValueTask DrainRepliesAsync(ExceptionDispatchInfo? waitFailed, CancellationToken stop)
    {
        while (_replies.TryRead(out var entry))
        {
            if (entry.Synthetic is { } answer)
            {
                // Poold's own answer (SHOW POOL_NODES …), in its place among the backends' replies.
                await _output.WriteAsync(answer, stop);
                await _output.FlushAsync(stop);
                if (Interlocked.Decrement(ref _outstanding) == 0)
                {
                    AllAnswered();
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

            // The client's ParseComplete/CloseComplete relayed so far (see BatchControl.End).
            var clientCompletes = 0;
            try
            {
                // One batch's replies, read up to and including its ReadyForQuery, relayed or dropped. Inline rather
                // than a method of its own: a call per batch would cost a state machine per statement.
                var link = entry.Link;
                var reader = link.Connection.Reader;
                var skip = entry.SkipLeading;
                var sawError = false;
                while (true)
                {
                    if (waitFailed is not null)
                    {
                        // The pump's wait for this entry's first reply failed (see PumpRepliesAsync).
                        var error = waitFailed;
                        waitFailed = null;
                        error.Throw();
                    }

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
                        if (code is (byte)BackendCode.ParseComplete or (byte)BackendCode.CloseComplete && !IsClients(entry, ref skip, ref clientCompletes))
                        {
                            // Poold's own injected statement: send what came before it, leave it out.
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
                            sawError = true;
                            if (skip > 0 && entry.Leading is { } leading)
                            {
                                // The statements Poold put ahead of the batch from here on were skipped by the server.
                                QueueSkippedCatchUps(link, leading[^skip..]);
                                skip = 0;
                            }

                            if (!entry.Relay)
                            {
                                LogCatchUpError(link.Connection.NodeId, error.Message);
                                if (_transactionMode && error.SqlState == "57014")
                                {
                                    // One of Poold's own statements (a SET replayed, the reset) was cancelled midway (a
                                    // client's cancel landed on it): what the connection carries is not what its state
                                    // says, so it is closed when this session gives it back. A SET that fails for good
                                    // fails alike for every client with the same state, so the state stays true then.
                                    link.Connection.Break();
                                }
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
                            entry.Control?.End(clientCompletes);
                            var status = (TransactionStatus)body.FirstSpan[0];
                            RecordTransactionStatus(entry, status, answersLast: Volatile.Read(ref link.Pending) == 1, sawError);
                            await RelayRunAsync(entry, result.Buffer, runStart, swallow ? frame.Start : buffer.Start, stop);
                            runStart = buffer.Start;
                            if (entry.Relay)
                            {
                                await _output.FlushAsync(stop);
                            }

                            ObserveLatency(entry);
                            CountAnswered(entry, countPending: true);
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
                        await _output.FlushAsync(stop);
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
                    _output.MidFrame = true;
                    throw;
                }

                if (entry.Control is { Ended: false } control)
                {
                    // What the client was told was made stays made; the rest of the batch failed with the standby.
                    control.Failed = true;
                    control.End(clientCompletes);
                }

                await FailStandbyEntryAsync(entry, e.Message, stop);
            }
            catch
            {
                entry.Control?.Abandon();
                entry.Capture?.Complete();
                throw;
            }

            if (Interlocked.Decrement(ref _repliesInFlight) == 0)
            {
                WakeWaiter();
                if (_transactionMode)
                {
                    // Every reply read: the connections may go back now.
                    ReleaseFromReplyPump();
                }
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

            await _output.WriteAsync(frame, stop);
            forwarded = true;
        }

        if (forwarded)
        {
            await _output.FlushAsync(stop);
        }

        reader.AdvanceTo(buffer.Start, buffer.End);
        if (result.IsCompleted)
        {
            throw new BackendException(link.Connection.NodeId, SqlState.ConnectionFailure,
                $"backend node {link.Connection.NodeId} closed the connection unexpectedly");
        }
    }

    /// <summary>
    /// Whether a ParseComplete/CloseComplete answers the client's own Parse or Close (counted in
    /// <paramref name="clientCompletes"/>), or a statement Poold put ahead of the batch (<paramref name="skip"/> of them
    /// lead it) or ahead of a later part of it (<see cref="BatchControl.HideAfterClientCompletes"/>).
    /// </summary>
    private static bool IsClients(ReplyEntry entry, ref int skip, ref int clientCompletes)
    {
        if (skip > 0)
        {
            skip--;
            return false;
        }

        if (entry.Control?.TakeHidden(clientCompletes) == true)
        {
            return false;
        }

        clientCompletes++;
        return true;
    }

    /// <summary>Writes the bytes between two positions of a read buffer to the client (when the entry is relayed).</summary>
    private ValueTask RelayRunAsync(in ReplyEntry entry, in ReadOnlySequence<byte> buffer, SequencePosition from, SequencePosition to,
        CancellationToken stop) =>
        entry.Relay && !from.Equals(to) ? _output.WriteAsync(buffer.Slice(from, to), stop) : default;

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
        RecordTransactionStatus(entry, TransactionStatus.Idle, answersLast: Volatile.Read(ref link.Pending) == 0, failed: true);
        await _output.WriteAsync(buffer.Written, stop);
        await _output.FlushAsync(stop);
        CountAnswered(entry, countPending: false);
        entry.Control?.Complete(TransactionStatus.Idle);
    }

    /// <summary>
    /// A batch's ReadyForQuery: the server's word on its transaction, recorded before the client can see it, so the
    /// client's next batch is routed by it (after an error in a transaction, to the node where it failed).
    /// <paramref name="answersLast"/>: it answers the last request sent on this connection; <paramref name="failed"/>: an
    /// ErrorResponse came among its replies (a SET it carried did not take: see <see cref="SettleStateUndo"/>).
    /// </summary>
    private void RecordTransactionStatus(ReplyEntry entry, TransactionStatus status, bool answersLast, bool failed)
    {
        var link = entry.Link;
        link.Connection.TransactionStatus = status;
        if (answersLast)
        {
            // The server's word on its transaction replaces whatever Poold predicted from the statements it saw pass.
            link.TransactionOpen = status != TransactionStatus.Idle;
        }

        if (!entry.Relay)
        {
            return;
        }

        _clientStatus = status;
        lock (_routingLock)
        {
            _recordedSequence = entry.Sequence;
            _recordedFailed = failed;
            if (entry.Sequence == _stateUndoSequence)
            {
                // A COMMIT sent alone into a transaction that had failed unseen (pipelined) rolls back, with no error.
                _stateUndoFailed = failed || (_stateUndoInheritsFailure && _recordedStatus == TransactionStatus.Failed);
            }

            _recordedStatus = status;
            if (failed && _transactionMode)
            {
                // What the request changed may not have taken (a SET it recorded, rolled back), and the connection may go
                // back to the pool before the client side undoes it in the history: its next client resets it first.
                link.Connection.AppliedState = ResetMark;
            }

            if (entry.Sequence == _lastSequence)
            {
                // The answer to the client's last statement: what Poold predicted as it dispatched the statements after an
                // earlier one (a ROLLBACK TO that ends a failure, say) is not undone by that earlier one's answer.
                _failedLink = status == TransactionStatus.Failed ? link : null;
                _router!.ReadyForQuery(status != TransactionStatus.Idle);
            }
        }
    }

    /// <summary>
    /// The batch is answered, its ReadyForQuery with the client: counted only now, because a session with nothing
    /// outstanding may give its connections back (transaction mode), and the reply came out of this connection's reader.
    /// </summary>
    private void CountAnswered(ReplyEntry entry, bool countPending)
    {
        if (countPending)
        {
            Interlocked.Decrement(ref entry.Link.Pending);
        }

        if (entry.Relay && Interlocked.Decrement(ref _outstanding) == 0)
        {
            AllAnswered();
        }
    }

    /// <summary>Armed by the dispatcher while it waits for every relayed answer (<see cref="WaitForAnswersAsync"/>).</summary>
    private TaskCompletionSource? _answersWaiter;

    /// <summary>The reply pump has relayed the answer to every statement the client sent.</summary>
    private void AllAnswered()
    {
        Volatile.Write(ref _answeredAt, _services.Time.GetTimestamp());
        WakeWaiter();
    }

    /// <summary>
    /// After a count reached zero (an interlocked decrement: a full fence before this read, as the waiter has one
    /// between publishing and reading the count), wakes the dispatcher if it waits; usually nobody does, and a plain
    /// read spares the relay an interlocked exchange per statement.
    /// </summary>
    private void WakeWaiter()
    {
        if (Volatile.Read(ref _answersWaiter) is not null)
        {
            Interlocked.Exchange(ref _answersWaiter, null)?.TrySetResult();
        }
    }

    /// <summary>
    /// In a transaction, a statement bound for one node while answers are still due from another waits for them: an
    /// error among them decides where it must go (the node that failed) and whether the transaction may commit. Never
    /// while a batch is under way on a node (its answers wait for the client's Sync).
    /// </summary>
    private bool AnswersDueElsewhere(int nodeId)
    {
        if (Volatile.Read(ref _outstanding) == 0 || _lockedLink is not null || !InTransactionNow())
        {
            return false;
        }

        foreach (var link in _backends.Links)
        {
            if (link.Connection.NodeId != nodeId && Volatile.Read(ref link.Pending) > 0)
            {
                return true;
            }
        }

        return false;
    }

    private ValueTask WaitForAnswersAsync(CancellationToken ct) => WaitUntilZeroAsync(replies: false, ct);

    /// <summary>Waits until the reply pump has read every reply queued, Poold's own included.</summary>
    private ValueTask WaitForRepliesAsync(CancellationToken ct) => WaitUntilZeroAsync(replies: true, ct);

    /// <summary>
    /// Waits until <see cref="_repliesInFlight"/> (<paramref name="replies"/>) or <see cref="_outstanding"/> is zero; the
    /// reply pump counts both down and wakes the waiter whenever either reaches zero.
    /// </summary>
    private async ValueTask WaitUntilZeroAsync(bool replies, CancellationToken ct)
    {
        while (Count() != 0)
        {
            var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

            // A full fence between publishing the waiter and reading the count (a store then a load may be reordered):
            // either the pump's last decrement sees the waiter, or this read sees the zero.
            Interlocked.Exchange(ref _answersWaiter, waiter);
            if (Count() == 0)
            {
                Interlocked.CompareExchange(ref _answersWaiter, null, waiter);
                return;
            }

            await waiter.Task.WaitAsync(ct);
        }

        int Count() => replies ? Volatile.Read(ref _repliesInFlight) : Volatile.Read(ref _outstanding);
    }

    /// <summary>
    /// Gives every backend connection back: reset and pooled when its stream is in step and idle (every request
    /// answered, or answered within <see cref="DrainTimeout"/> and <see cref="MaxDrainBytes"/>), otherwise closed. Cancels
    /// this session forwarded are finished first, and a connection that had one is checked with a round trip, so a late
    /// cancel can never reach the connection's next owner.
    /// </summary>
    public async Task ReleaseAllAsync(SessionEnd end, bool replication)
    {
        var cancels = await _cancelGate.CloseAsync(DrainTimeout);
        var links = _backends.TakeAll();
        if (links.Count == 0 && Interlocked.Exchange(ref _backend, null) is { } lone)
        {
            links.Add(new NodeLink(lone));
        }

        Volatile.Write(ref _backend, null);
        foreach (var link in links)
        {
            link.StopWatching();
            await ReleaseAsync(link, end, cancels, replication);
        }
    }

    private async Task ReleaseAsync(NodeLink link, SessionEnd end, CancelsSince cancels, bool replication)
    {
        var backend = link.Connection;
        var pool = _services.Pool;
        var cancelled = cancels != CancelsSince.None;
        var keep = end != SessionEnd.Failed && !link.Dead && !link.NodeDown && !backend.IsBroken && !replication && ConnectionPool.IsCacheable(backend.Key.Database)
                   && (_services.Settings.Get(Params.ConnectionCache) || backend.Shared) && cancels != CancelsSince.Undelivered;
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

            // A pinned session left what only DISCARD ALL undoes (a temporary table, a session advisory lock, LISTEN, a
            // role, a cursor WITH HOLD): without it in reset_query_list, the connection is closed, not shared; a library
            // LOADed into the server process stays whatever the reset, so that one is always closed.
            var pinnedBy = Volatile.Read(ref _pinnedBy);
            if ((pinnedBy is null || (discarded && !pinnedBy.StartsWith("LOAD", StringComparison.Ordinal))) && pool.Return(backend))
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
