using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Poold.Backends;
using Poold.Config;
using Poold.Pcp;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// Routing of a session's requests across nodes (compat §6). The unit is a batch: a simple Query, a FunctionCall, or
/// the extended-protocol messages up to Sync (or Flush). Each batch runs on one node, chosen from the statements in it
/// and the session's state; the reply side reads it back from there. Session state follows the session across
/// nodes: SET/RESET/DISCARD are replayed on a node before its next use, an explicit transaction is opened on a node
/// when it first joins it, and named prepared statements are parsed on a node when a Bind needs them there, with the
/// extra ParseComplete kept from the client.
/// </summary>
internal sealed partial class BackendSide
{
    /// <summary>
    /// A standby connection idle for longer than this is checked (one poll) before it is used again; within a burst of
    /// pipelined statements the check is skipped.
    /// </summary>
    private static readonly TimeSpan ProbeAfterIdle = TimeSpan.FromMilliseconds(10);

    /// <summary>A batch buffered beyond this is sent before its Sync, to the node chosen so far.</summary>
    private const int MaxBufferedBatch = 1 << 20;

    private readonly BackendSet _backends = new();
    private readonly Lock _routingLock = new();
    private readonly PooledBufferWriter _batch = new();
    private readonly List<BatchMessage> _batchMessages = [];
    private readonly List<Classification> _batchStatements = [];

    /// <summary>An empty batch, for sends that are not one (never modified).</summary>
    private static readonly List<BatchMessage> NoMessages = [];
    private readonly StatementRegistry _registry;
    private readonly SessionStateHistory _state = new();
    private readonly Random _random = Random.Shared;
    private NodeLink? _lockedLink;
    private NodeLink? _copyLink;
    private NodeLink? _failedLink;
    private SessionRouter? _router;
    private LoadBalancer? _balancer;
    private int _balanceNodeId;
    private long _lastSequence;

    /// <summary>The sequence of the last client request whose ReadyForQuery the reply pump has recorded (see <see cref="Settled"/>).</summary>
    private long _recordedSequence;
    private string _beginText = "BEGIN";

    /// <summary>The open transaction's savepoints and settings, replayed on a node that joins it (see <see cref="TransactionStatements"/>).</summary>
    private readonly TransactionStatements _transaction = new();

    /// <summary>How to undo what the last request that changed the session's history did, until it is answered (<see cref="SettleStateUndo"/>).</summary>
    private StateUndo? _stateUndo;

    /// <summary>
    /// That request's sequence, and whether it failed (its replies carried an error; or, for a COMMIT sent alone, the
    /// status before it was 'E': a COMMIT there rolls back); written by the reply pump, under <see cref="_routingLock"/>.
    /// </summary>
    private long _stateUndoSequence;
    private bool _stateUndoFailed;

    /// <summary>The request is a COMMIT sent alone: it fails also when the status before it was 'E'; under <see cref="_routingLock"/>.</summary>
    private bool _stateUndoInheritsFailure;

    /// <summary>Whether the replies of the request <see cref="_recordedSequence"/> names carried an error; under <see cref="_routingLock"/>.</summary>
    private bool _recordedFailed;

    /// <summary>The status the last recorded ReadyForQuery reported; under <see cref="_routingLock"/>.</summary>
    private TransactionStatus _recordedStatus = TransactionStatus.Idle;

    /// <summary>
    /// The history before a request changed it (<see cref="Saved"/>, at <see cref="SavedVersion"/>), and the links that
    /// ran the change themselves (<see cref="Ran"/>): if the request fails, they, and the links that never took the
    /// change, are as the restored history says; only the others replay it.
    /// </summary>
    private sealed class StateUndo(SessionStateHistory.Saved saved, int savedVersion, List<NodeLink> ran)
    {
        public SessionStateHistory.Saved Saved { get; } = saved;

        public int SavedVersion { get; } = savedVersion;

        public List<NodeLink> Ran { get; } = ran;
    }
    private TransactionStatus _clientStatus = TransactionStatus.Idle;

    /// <summary>The node snapshot the session logged in with, and its primary's generation (see <see cref="EnsurePrimaryUnchanged"/>).</summary>
    private NodeSnapshot? _loginSnapshot;

    private long _primaryGeneration;

    /// <summary>The batch sent before its Sync (Flush, or a large batch) whose replies are still being read: its node gets the rest.</summary>
    private BatchControl? _lockedBatch;

    /// <summary>The last batch sent was extended-protocol (its Sync is swallowed by the server when it starts COPY FROM STDIN).</summary>
    private bool _lastBatchExtended;

    /// <summary>
    /// Before every batch: when the primary changed since this session logged in (failover, promotion, detach), the
    /// node the session writes to is no longer the primary. The session ends with FATAL 57P01, as a server shutting
    /// down would end it, and the client reconnects to the new primary; nothing is written to the old one.
    /// </summary>
    private void EnsurePrimaryUnchanged()
    {
        var nodes = _services.Nodes.Current;
        if (nodes.PrimaryGeneration != _primaryGeneration && _transactionMode && _backends.Count == 0 && nodes.PrimaryNodeId >= 0)
        {
            // Transaction mode, between transactions: the session holds no connection, so its next transaction simply
            // runs on the new primary. No pooler that pins sessions to servers can do this.
            LogPrimaryFollowed(_primaryNodeId, nodes.PrimaryNodeId);
            _primaryNodeId = nodes.PrimaryNodeId;
            _primaryGeneration = nodes.PrimaryGeneration;
            return;
        }

        if (nodes.PrimaryGeneration != _primaryGeneration)
        {
            throw new ClientFatalException(SqlState.AdminShutdown,
                nodes.PrimaryNodeId >= 0
                    ? $"terminating connection because the primary node changed (node {_primaryNodeId} is no longer the primary; node {nodes.PrimaryNodeId} is)"
                    : $"terminating connection because the primary node changed (node {_primaryNodeId} is no longer the primary)",
                "Reconnect: new sessions go to the current primary.");
        }
    }

    /// <summary>The backend connections this session holds (node, backend pid), readable from other threads.</summary>
    public IReadOnlyList<(int NodeId, int ProcessId)> Backends => _backends.Published;

    public int BalanceNodeId => Volatile.Read(ref _balanceNodeId);

    /// <summary>pgpool's process status words.</summary>
    public string StatusText => WaitingForServer ? "Wait for server connection"
        : _clientStatus != TransactionStatus.Idle ? "Idle in transaction"
        : Volatile.Read(ref _outstanding) > 0 ? "Execute command" : "Idle";

    /// <summary>Sets up routing once the primary connection is authenticated: the router, the balance node, the function catalog.</summary>
    public async Task PrepareRoutingAsync(CancellationToken cancellationToken)
    {
        _primaryGeneration = _loginSnapshot!.PrimaryGeneration;
        var connection = _backend;
        if (connection is null)
        {
            // Transaction mode, logged in from the pool's welcome: the first transaction binds the primary.
            _primaryNodeId = _loginSnapshot.PrimaryNodeId;
        }
        else
        {
            _primaryNodeId = connection.NodeId;
            var primary = new NodeLink(connection);
            PrepareSharedLink(primary);
            primary.WatchNode(_services.Nodes.DownToken(connection.NodeId));
            _backends.Add(primary, primary: true);
        }

        var settings = _services.Settings;
        _router = new SessionRouter(_services.Routing, _services.Functions, _database!);
        _balancer = LoadBalancer.For(settings);
        var nodes = _services.Nodes.Current;
        (_balanceNodeId, _balanceWhy) = _balancer.Choose(nodes, _database!, _startup!["application_name"], _random);
        LogBalanceNode(_balanceNodeId, _balanceWhy);
        if (connection is not null && NeedsFunctionLoad(nodes))
        {
            try
            {
                await _services.Functions.LoadAsync(_database!, connection, cancellationToken);
            }
            catch (BackendRejectedException e)
            {
                LogCatchUpError(connection.NodeId, e.Error.Message);
            }
        }
    }

    /// <summary>
    /// Whether routing needs the volatility of this database's functions read from the server before the first batch
    /// (load balancing on, no function list configured, a standby to balance to, not read yet).
    /// </summary>
    private bool NeedsFunctionLoad(NodeSnapshot nodes)
    {
        var options = _services.Routing;
        return options.LoadBalanceMode && options.WriteFunctions.Count == 0 && options.ReadOnlyFunctions.Count == 0
               && nodes.Nodes.Any(n => n.Status == NodeStatus.Up && n.Settings.Weight > 0) && _services.Functions.NeedsLoad(_database!);
    }

    // ---- reading the client's messages ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask OnClientMessageAsync(byte code, ReadOnlySequence<byte> frame, ReadOnlySequence<byte> body, CancellationToken ct)
    {
        switch (code)
        {
            case (byte)FrontendCode.Query:
                await FlushBatchAsync(ct);
                await EndLockedBatchAsync(ct);
                EnsurePrimaryUnchanged();
                await DispatchQueryAsync(frame, body, ct);
                return;
            case (byte)FrontendCode.FunctionCall:
                await FlushBatchAsync(ct);
                await EndLockedBatchAsync(ct);
                EnsurePrimaryUnchanged();
                _lastBatchExtended = false;
                SettleInjected();
                await SendAsync(await PrimaryLinkAsync(ct), frame, relay: true, "function call", ct);
                return;
            case (byte)FrontendCode.CopyData or (byte)FrontendCode.CopyDone or (byte)FrontendCode.CopyFail:
                await FlushBatchAsync(ct);
                var copy = _copyLink ?? await PrimaryLinkAsync(ct);
                await copy.Connection.WriteAsync(frame, ct);
                if (code != (byte)FrontendCode.CopyData)
                {
                    await copy.Connection.FlushAsync(ct);
                    if (_lastBatchExtended && _lockedLink is null)
                    {
                        // COPY FROM STDIN started by an extended-protocol Execute: the server ignored that batch's Sync
                        // during the copy, so the batch's ReadyForQuery answers the client's next Sync. What comes up to
                        // it belongs to that batch, on that node, with no reply entry of its own.
                        _lockedLink = copy;
                        _lockedBatch = null;
                    }
                }

                return;
        }

        if (_discardUntilSync)
        {
            // The first part of this batch failed on a standby before its rest needed the primary: as the server would,
            // skip everything up to the Sync, which gets the ReadyForQuery the first part ended with.
            if (code == (byte)FrontendCode.Sync)
            {
                _discardUntilSync = false;
                var answer = new MessageBuffer(8);
                answer.ReadyForQuery(_discardedStatus);
                EnqueueSynthetic(answer.Written.ToArray());
            }

            return;
        }

        if (_batch.WrittenCount == 0 && _lockedLink is null)
        {
            EnsurePrimaryUnchanged();
        }

        AppendToBatch(code, frame, body);
        if (code == (byte)FrontendCode.Sync)
        {
            await DispatchBatchAsync(sync: true, ct);
        }
        else if (code == (byte)FrontendCode.Flush)
        {
            await DispatchBatchAsync(sync: false, ct);
        }
    }

    private void AppendToBatch(byte code, ReadOnlySequence<byte> frame, ReadOnlySequence<byte> body)
    {
        frame.CopyTo(_batch.GetSpan((int)frame.Length));
        _batch.Advance((int)frame.Length);
        var span = body.IsSingleSegment ? body.FirstSpan : body.ToArray();
        switch (code)
        {
            case (byte)FrontendCode.Parse:
                {
                    var name = CString(span, 0, out var next);
                    var query = QueryBytes(span, next);
                    var c = QueryClassifier.Classify(query, _services.Routing);
                    var text = c.Target is RouteTarget.Transaction or RouteTarget.SessionState || c.Transaction != TransactionEffect.None
                                                                                               || PoolCommands.MightBePoolCommand(query)
                                                                                               || IsDatabaseDdlVerb(c) || c.Verb == "DECLARE"
                        ? Encoding.UTF8.GetString(query)
                        : null;
                    _batchMessages.Add(new BatchMessage(code, name, name, c, text));
                    break;
                }

            case (byte)FrontendCode.Bind:
                {
                    var portal = CString(span, 0, out var next);
                    _batchMessages.Add(new BatchMessage(code, portal, CString(span, next, out _), null));
                    break;
                }

            case (byte)FrontendCode.Describe or (byte)FrontendCode.Close when span.Length > 1:
                _batchMessages.Add(new BatchMessage(code, CString(span, 1, out _), span[0] == (byte)'S' ? "S" : "P", null));
                break;
            case (byte)FrontendCode.Execute:
                _batchMessages.Add(new BatchMessage(code, CString(span, 0, out _), "", null));
                break;
            default:
                _batchMessages.Add(new BatchMessage(code, "", "", null));
                break;
        }
    }

    /// <summary>Sends what is buffered of an unfinished batch once it is larger than Poold keeps (<see cref="MaxBufferedBatch"/>).</summary>
    public ValueTask FlushBatchIfStreamingAsync(CancellationToken ct) =>
        _batch.WrittenCount > MaxBufferedBatch ? DispatchBatchAsync(sync: false, ct) : default;

    /// <summary>Sends what is buffered of an unfinished batch (before a Query, COPY data, or Terminate).</summary>
    public ValueTask FlushBatchAsync(CancellationToken ct) => _batch.WrittenCount > 0 ? DispatchBatchAsync(sync: false, ct) : default;

    // ---- simple Query ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DispatchQueryAsync(ReadOnlySequence<byte> frame, ReadOnlySequence<byte> body, CancellationToken ct)
    {
        _lastBatchExtended = false;
        SettleInjected();
        var span = body.IsSingleSegment ? body.FirstSpan : body.ToArray();
        var text = QueryBytes(span, 0);
        if (_client.TryAnswerPoolQuery(text))
        {
            return;
        }

        var c = QueryClassifier.Classify(text, _services.Routing);

        // The text as a string only for the statements that need it (transaction control, session state).
        var sql = c.Target is RouteTarget.Transaction or RouteTarget.SessionState || c.Transaction != TransactionEffect.None || IsDatabaseDdlVerb(c)
                  || (_transactionMode && (c.Verb == "DECLARE" || c.MultiStatement))
            ? Encoding.UTF8.GetString(text)
            : "";
        if (c.MultiStatement && (ContainsIgnoreCase(text, "DEALLOCATE"u8) || ContainsIgnoreCase(text, "DISCARD"u8)))
        {
            _registry.Unsure();
        }

        PinIfNeeded(c, sql);
        if (TryAnswerDeallocate(c))
        {
            return;
        }

        await FreeDatabasesAsync(sql, c);
        int nodeId;
        string reason;
        lock (_routingLock)
        {
            (nodeId, reason) = ChooseForStatements(new ReadOnlySpan<Classification>(ref c), forced: null);
        }

        if (AnswersDueElsewhere(nodeId))
        {
            await WaitForAnswersAsync(ct);
            lock (_routingLock)
            {
                (nodeId, reason) = ChooseForStatements(new ReadOnlySpan<Classification>(ref c), forced: null);
            }
        }

        (nodeId, reason) = await ReadYourWritesAsync(nodeId, reason, ct);
        if (c.Deallocates is { } deallocated)
        {
            // Where the statement lives (a protocol-level statement may live on a replica); every other holder drops it
            // before its next batch. DEALLOCATE ALL and DISCARD ALL drop everything the session prepared.
            nodeId = DeallocateTarget(deallocated, nodeId);
        }

        NodeLink link;
        try
        {
            if (SharedBindKey(nodeId) is { } bindKey)
            {
                using var wait = BeginSharedWait(bindKey, ct);
                Granted(bindKey, await wait.Task);
            }

            link = await LinkAsync(nodeId, ct);
        }
        catch (PoolWaitTimeoutException e)
        {
            AnswerWaitTimeout(e, sync: true);
            return;
        }
        finally
        {
            ReturnUnusedGrant();
        }

        await CloseLeftoverTransactionsAsync(ct);

        // Only a savepoint statement needs it (one lock less per query): a ROLLBACK TO runs even in a failed transaction, a
        // RELEASE surely runs only when no earlier request awaits its answer.
        var surelyRuns = c.Transaction == TransactionEffect.Savepoint && (IsRollbackTo(c) || Settled());
        if (c.Target == RouteTarget.Transaction && c.Transaction is TransactionEffect.End or TransactionEffect.Savepoint)
        {
            if (await FanOutTransactionControlAsync(c, sql, link, sync: true, surelyRuns, ct) is not { } main)
            {
                return;
            }

            link = main;
        }
        else if (c.MultiStatement && !await EndFailedTransactionInTextAsync(c, ct))
        {
            return;
        }

        if (c.Transaction is TransactionEffect.Begin or TransactionEffect.Serializable && c.Target != RouteTarget.Primary)
        {
            _beginText = sql;
        }
        else if (c.Transaction == TransactionEffect.Serializable && c.Target == RouteTarget.Primary && !_router!.InTransaction)
        {
            _beginText = sql;
        }

        var inTransaction = link.TransactionOpen;
        await SendAsync(link, frame, relay: true, reason, ct, classification: c, sql, surelyRuns);
        if (_transactionMode && _state.StartupValue(c) is { } startup)
        {
            await RestoreStartupValueAsync(link, startup, ct);
        }
        await AfterDispatchAsync(link, complete: true, copy: c.Verb == "COPY", ct);
        var recorded = RecordSessionState(link, c, sql);
        if (recorded)
        {
            AppliedHere(link, c);
        }

        MarkIfUncertain(link, c, sql, recorded, inTransaction);
    }

    /// <summary>
    /// Transaction mode, a client's DEALLOCATE name or DEALLOCATE ALL between transactions, answered by Poold: the
    /// statements are the client's own, kept in its registry and living on server connections other clients share
    /// (the name may live on another connection or none, and another client's statement of that name on the one it would
    /// run on). The client's statements are forgotten, as the server would; a name it never prepared gets the server's
    /// 26000. Inside a transaction, or pinned, the statement goes to the server. DISCARD ALL always does (the server's
    /// ParameterStatus messages for what it resets must reach the client); the connection's statements are then dropped
    /// before its next client relies on them (<see cref="MarkIfUncertain"/>).
    /// </summary>
    private bool TryAnswerDeallocate(Classification c)
    {
        // A bare DEALLOCATE names nothing (Deallocates null): the server's syntax error is the answer.
        if (!_transactionMode || c.Verb != "DEALLOCATE" || c.Deallocates is not { } name || c.MultiStatement || _pinnedBy is not null
            || _backends.Count > 0 || VisibleStatus() != TransactionStatus.Idle)
        {
            return false;
        }

        var answer = new MessageBuffer(64);
        if (_registry.Forget(name == "*" ? null : name))
        {
            answer.CommandComplete(name == "*" ? "DEALLOCATE ALL" : "DEALLOCATE");
        }
        else
        {
            answer.Error("ERROR", SqlState.InvalidSqlStatementName, $"prepared statement \"{name}\" does not exist");
        }

        answer.ReadyForQuery(TransactionStatus.Idle);
        EnqueueSynthetic(answer.Written.ToArray());
        return true;
    }

    /// <summary>
    /// Transaction mode: after a statement that may have changed what its server connection carries in ways the
    /// session's history does not hold exactly (a SET among other statements, set_config(), a SET the history does not
    /// keep, one inside a transaction that may roll it back, DISCARD or DEALLOCATE on the server), the connection's
    /// state counts as unknown: whoever binds it next resets it (RESET ALL, then its own SETs) and, after a DISCARD or
    /// DEALLOCATE, drops every statement on it first. No client ever gets another's settings this way.
    /// </summary>
    private void MarkIfUncertain(NodeLink link, Classification c, string? text, bool recorded, bool inTransaction)
    {
        if (!_transactionMode)
        {
            return;
        }

        if (SessionPins.MayChangeSettings(c, text) && (!recorded || inTransaction))
        {
            // The link itself is as the client left it; only what the connection carries to its next client is unknown.
            link.Connection.AppliedState = ResetMark;
        }

        if (c.Verb is "DEALLOCATE" or "DISCARD" || (c.MultiStatement && text is not null && DeallocatesAmong(text)))
        {
            link.Connection.PreparedUncertain = true;
            if (c.Deallocates is { } gone && !c.MultiStatement)
            {
                // Gone from the server now (another client's statement of that name too): not parsed again by mistake
                // later in this binding. Had the statement failed, the mark above has the next client drop them all.
                if (gone == "*")
                {
                    link.Connection.Prepared.Clear();
                    link.Statements.Clear();
                }
                else
                {
                    link.Connection.Prepared.Remove(gone);
                    link.Statements.Remove(gone);
                }
            }
        }
    }

    /// <summary>Whether a query string of several statements may drop prepared statements (DEALLOCATE or DISCARD among them).</summary>
    private static bool DeallocatesAmong(string text) =>
        text.Contains("DEALLOCATE", StringComparison.OrdinalIgnoreCase) || text.Contains("DISCARD", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether <paramref name="text"/> holds <paramref name="word"/> (upper-case ASCII), in any case.</summary>
    private static bool ContainsIgnoreCase(ReadOnlySpan<byte> text, ReadOnlySpan<byte> word)
    {
        for (var i = text.IndexOfAny(word[0], (byte)(word[0] | 0x20)); i >= 0 && i + word.Length <= text.Length;)
        {
            if (System.Text.Ascii.EqualsIgnoreCase(text.Slice(i, word.Length), word))
            {
                return true;
            }

            var next = text[(i + 1)..].IndexOfAny(word[0], (byte)(word[0] | 0x20));
            i = next < 0 ? -1 : i + 1 + next;
        }

        return false;
    }

    private static bool IsDatabaseDdlVerb(Classification c) => c.Verb is "DROP" or "ALTER" or "CREATE";

    /// <summary>
    /// DROP DATABASE, ALTER DATABASE … RENAME, CREATE DATABASE … TEMPLATE: Poold's idle cached connections to that
    /// database, on every node, are closed first (pgpool-II does it for DROP DATABASE), so they do not make the
    /// statement fail with 55006. A database in use by another client still gets PostgreSQL's own error.
    /// </summary>
    private Task FreeDatabasesAsync(string sql, Classification c) => IsDatabaseDdlVerb(c) ? FreeDatabasesNowAsync(sql) : Task.CompletedTask;

    private async Task FreeDatabasesNowAsync(string sql)
    {
        foreach (var database in DatabaseDdl.DatabasesToFree(sql))
        {
            var closed = await _services.Pool.PurgeDatabaseAsync(database);
            LogDatabaseFreed(database, closed);
        }
    }

    private int DeallocateTarget(string name, int chosen) => _registry.Deallocate(name, chosen, _backends.Links, _backends.Primary);

    // ---- extended protocol ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DispatchBatchAsync(bool sync, CancellationToken ct)
    {
        if (_batch.WrittenCount == 0)
        {
            return;
        }

        // Read in place: the client pump, the only writer of the batch, waits for this dispatch.
        var messages = _batchMessages;
        var bytes = _batch.WrittenMemory;
        try
        {
            _lastBatchExtended = true;
            if (_lockedLink is { } locked && !await RedirectFromLockedAsync(locked, messages, ct))
            {
                // The rest of a batch already under way: no give-back of a standby that now runs more than BEGIN, and
                // what this part pins or changes counts as for any batch.
                locked.OnlyBegun = false;
                PinParsed(messages);
                var completesBefore = _lockedBatch?.ClientCompletes ?? 0;

                // Ended before this part is sent: its standby failed under an earlier part, and this part does not run.
                var endedBefore = _lockedBatch is { Ended: true };
                await CatchUpLockedAsync(locked, messages, ct);
                await CopySavepointControlAsync(locked, messages, ct);
                ApplyStatementEffects(locked, messages, Settledness.Unknown);
                MarkBoundIfUncertain(locked, messages, inTransaction: true);
                await WriteAndFlushAsync(locked.Connection, bytes, ct);
                if (_transactionMode)
                {
                    await RestoreStartupValuesAsync(locked, messages, restore: false, ct);
                }

                AfterBatch(locked, messages, ChangesStatements(messages) ? _lockedBatch : null, completesBefore, endedBefore);
                await AfterDispatchAsync(locked, sync, copy: false, ct);
                if (sync)
                {
                    _lockedLink = null;
                    _lockedBatch = null;
                }

                return;
            }

            SettleInjected();
            if (_discardUntilSync)
            {
                // The part sent before failed: this one is skipped, as the server skips what follows an error.
                if (sync)
                {
                    _discardUntilSync = false;
                    var answer = new MessageBuffer(8);
                    answer.ReadyForQuery(_discardedStatus);
                    EnqueueSynthetic(answer.Written.ToArray());
                }

                return;
            }

            if (_client.TryAnswerPoolBatch(messages, sync))
            {
                return;
            }

            foreach (var m in messages)
            {
                if (m.Code == (byte)FrontendCode.Parse && m.Query is { } query)
                {
                    await FreeDatabasesAsync(query, m.Classification!);
                }
            }

            var statements = _batchStatements;
            NodeLink? forced = null;
            for (var i = 0; i < messages.Count; i++)
            {
                var m = messages[i];
                switch (m.Code)
                {
                    case (byte)FrontendCode.Parse:
                        statements.Add(m.Classification!);
                        break;
                    case (byte)FrontendCode.Bind when FindStatement(messages, m.StatementName, i) is { } s:
                        statements.Add(s);
                        break;
                    case (byte)FrontendCode.Describe when m.StatementName == "S" && FindStatement(messages, m.Name, i) is { } s:
                        statements.Add(s);
                        break;
                    case (byte)FrontendCode.Execute or (byte)FrontendCode.Describe when m.StatementName != "S" && !BoundInBatch(messages, m.Name)
                                                                                   && _registry.PortalHolder(m.Name) is { } holder:
                        forced = holder;
                        break;
                }
            }

            PinParsed(messages);

            int nodeId;
            string reason;
            lock (_routingLock)
            {
                (nodeId, reason) = ChooseForStatements(CollectionsMarshal.AsSpan(statements), forced);
            }

            if (AnswersDueElsewhere(nodeId))
            {
                await WaitForAnswersAsync(ct);
                lock (_routingLock)
                {
                    (nodeId, reason) = ChooseForStatements(CollectionsMarshal.AsSpan(statements), forced);
                }
            }

            (nodeId, reason) = await ReadYourWritesAsync(nodeId, reason, ct);
            NodeLink link;
            try
            {
                if (SharedBindKey(nodeId) is { } bindKey)
                {
                    using var wait = BeginSharedWait(bindKey, ct);
                    Granted(bindKey, await wait.Task);
                }

                link = await LinkAsync(nodeId, ct);
            }
            catch (PoolWaitTimeoutException e)
            {
                AnswerWaitTimeout(e, sync);
                return;
            }
            finally
            {
                ReturnUnusedGrant();
            }

            await CloseLeftoverTransactionsAsync(ct);
            var settled = statements.Exists(static s => s.Transaction == TransactionEffect.Savepoint)
                ? new Settledness(Settled(), FailedLink() is not null)
                : Settledness.Unknown;
            if (await FanOutBoundControlAsync(messages, link, sync, settled, ct) is not { } main)
            {
                return;
            }

            link = main;

            var skip = await CatchUpAsync(link, messages, ct);
            var inTransaction = link.TransactionOpen || statements.Exists(static s => s.Transaction != TransactionEffect.None);

            if (statements.Any(statement => statement.Verb == "LISTEN"))
            {
                // Before the batch is queued: the reply pump must already watch the primary when it has read the answer.
                Volatile.Write(ref _watchPrimary, true);
            }

            var begins = _transactionMode && !link.TransactionOpen && forced is null && statements.Count > 0
                         && statements.TrueForAll(static s => s is { Transaction: TransactionEffect.Begin, MultiStatement: false });

            // Queued before the batch is written, so its replies can never be taken for asynchronous messages. The
            // statements' effects are applied once it is queued (a SET it records is undone if the request fails: see
            // SettleStateUndo) and before it is written: the server's ReadyForQuery, which may come at once, then has
            // the last word.
            // A control for every batch sent before its Sync, and for one that changes the client's named statements (its
            // outcome decides the registry's records).
            var changesStatements = ChangesStatements(messages);
            var control = sync && !changesStatements ? null : new BatchControl { ClientCompletes = Completions(messages) };
            Enqueue(link, relay: true, skip, control, leading: TakeCatchUpNames());
            link.OnlyBegun = begins;
            ApplyStatementEffects(link, messages, settled);
            MarkBoundIfUncertain(link, messages, inTransaction);
            await WriteAndFlushAsync(link.Connection, bytes, ct);
            if (_transactionMode)
            {
                var whole = sync && statements.TrueForAll(static s => s is { Transaction: TransactionEffect.None, Verb: not "COPY" });
                await RestoreStartupValuesAsync(link, messages, restore: whole, ct);
            }

            if (!sync)
            {
                // Sent before its Sync (Flush, or a large batch): the rest goes to the same node unless it must go to
                // the primary (see RedirectFromLockedAsync).
                _lockedLink = link;
                _lockedBatch = control;
            }

            _copyLink = link;
            AfterBatch(link, messages, changesStatements ? control : null, completesBefore: 0);
            await AfterDispatchAsync(link, sync, statements.Exists(s => s.Verb == "COPY"), ct);
            foreach (var statement in statements)
            {
                _services.Counters.Count(link.Connection.NodeId, statement.Verb);
            }

            LogRoute(link.Connection.NodeId, reason);
        }
        finally
        {
            // The array goes back to the pool: between batches the session holds no buffer.
            _batch.Clear();

            _batchMessages.Clear();
            _batchStatements.Clear();
        }
    }

    /// <summary>Transaction mode: each statement the batch parses may pin the session (<see cref="PinIfNeeded"/>).</summary>
    private void PinParsed(List<BatchMessage> messages)
    {
        if (!_transactionMode)
        {
            return;
        }

        foreach (var m in messages)
        {
            if (m.Code == (byte)FrontendCode.Parse)
            {
                PinIfNeeded(m.Classification!, m.Query);
            }
        }
    }

    /// <summary>
    /// Transaction mode: the statements a batch binds, looked at as <see cref="MarkIfUncertain"/> does (a named statement
    /// that SETs, bound again, changes the connection without a Parse for the history to see).
    /// </summary>
    private void MarkBoundIfUncertain(NodeLink link, List<BatchMessage> messages, bool inTransaction)
    {
        if (!_transactionMode)
        {
            return;
        }

        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Code == (byte)FrontendCode.Bind && FindStatement(messages, m.StatementName, i) is { } bound
                && (bound.Verb is "DEALLOCATE" or "DISCARD" || SessionPins.MayChangeSettings(bound, null)))
            {
                // The history took a SET at its Parse (SessionStateHistory.Record); bound again later, the statement is
                // not recorded again.
                var recorded = bound.Target == RouteTarget.SessionState && (bound.SettingKey is not null || bound.ResetsSession)
                               && StatementRegistry.ParsedBefore(messages, m.StatementName, i);
                MarkIfUncertain(link, bound, null, recorded, inTransaction);
            }
        }
    }

    /// <summary>The statement a message at <paramref name="at"/> refers to: the last Parse of that name before it in the batch, else the registry.</summary>
    private Classification? FindStatement(List<BatchMessage> messages, string name, int at) =>
        StatementRegistry.ParseIndex(messages, name, at + 1) is >= 0 and var parse ? messages[parse].Classification : _registry.Find(name);

    private string StatementText(List<BatchMessage> messages, string name, int at)
    {
        if (StatementRegistry.ParseIndex(messages, name, at + 1) is >= 0 and var parse)
        {
            return messages[parse].Query ?? "";
        }

        if (_registry.TryGet(name, out var s))
        {
            var body = s.ParseFrame.AsSpan(5);
            CString(body, 0, out var next);
            return Encoding.UTF8.GetString(QueryBytes(body, next));
        }

        return "";
    }

    private static bool BoundInBatch(List<BatchMessage> messages, string portal)
    {
        foreach (var m in messages)
        {
            if (m.Code == (byte)FrontendCode.Bind && m.Name == portal)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Registers what the batch created and closed on <paramref name="link"/>; with a <paramref name="control"/> (a batch
    /// that changes the client's named statements), the changes are watched until the server has answered them
    /// (<see cref="SettleParses"/>). The batch's answer may come before this runs: <paramref name="endedBefore"/> tells a
    /// later part of a batch that had ended before the part was sent.
    /// </summary>
    private void AfterBatch(NodeLink link, List<BatchMessage> messages, BatchControl? control, int completesBefore, bool endedBefore = false)
    {
        if (control is not null && endedBefore)
        {
            // The batch had ended before this part was sent (its standby failed under an earlier part): it did not run.
            var changes = new List<ParsedStatement>();
            _registry.AfterBatch(link, _backends.Links, messages, _batch.WrittenSpan, _transactionMode, completesBefore, changes);
            _registry.Settle(changes, failed: true, answered: 0, _backends.Links);
            return;
        }

        var made = control?.Parsed;
        var before = made?.Count ?? 0;
        _registry.AfterBatch(link, _backends.Links, messages, _batch.WrittenSpan, _transactionMode, completesBefore, made);
        if (made is not null && made.Count > before && before == 0)
        {
            _parseWatches.Add(control!);
        }
    }

    /// <summary>Batches whose changes to the client's named statements wait to be settled, oldest first.</summary>
    private readonly List<BatchControl> _parseWatches = [];

    /// <summary>
    /// Before the registry is used for a new request: the changes of each watched batch that has ended are settled by
    /// the server's answer (<see cref="StatementRegistry.Settle"/>). A request the client pipelined ahead of the answer
    /// finds a statement parsed there still unconfirmed: the registry then neither trusts nor refuses it (see
    /// <see cref="StatementRegistry.AfterBatch"/>).
    /// </summary>
    private void SettleParses()
    {
        if (_parseWatches.Count == 0)
        {
            return;
        }

        for (var i = 0; i < _parseWatches.Count;)
        {
            var control = _parseWatches[i];
            if (!control.Ended || control == _lockedBatch)
            {
                // Not answered yet; or the batch under way, whose later parts add to it (settled after its last part).
                i++;
                continue;
            }

            _registry.Settle(control.Parsed, control.Failed, control.CompletesAtEnd, _backends.Links);
            _parseWatches.RemoveAt(i);
        }
    }

    /// <summary>
    /// Whether a batch changes the client's named statements: it parses or closes one, or binds a DEALLOCATE or DISCARD
    /// (a statement it parses, or one the client has).
    /// </summary>
    private bool ChangesStatements(List<BatchMessage> messages)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            switch (m.Code)
            {
                case (byte)FrontendCode.Parse or (byte)FrontendCode.Close when m.Name.Length > 0 && (m.Code == (byte)FrontendCode.Parse || m.StatementName == "S"):
                case (byte)FrontendCode.Bind when FindStatement(messages, m.StatementName, i)?.Deallocates is not null:
                    return true;
            }
        }

        return false;
    }

    /// <summary>
    /// What the statements of a batch (sent on <paramref name="link"/>, its request queued) do, in their order: each
    /// statement bound has its effect on the transaction applied to the router and the node's prediction, and a SET parsed
    /// in the batch is recorded where its first Bind runs it (so a SET before a ROLLBACK in the same batch is dropped with
    /// the transaction, one after a BEGIN waits for the COMMIT); a SET only parsed, where the batch ends.
    /// <paramref name="settled"/>: the session as the batch found it (see <see cref="SurelyRuns"/>).
    /// </summary>
    private void ApplyStatementEffects(NodeLink link, List<BatchMessage> messages, Settledness settled)
    {
        List<int>? recorded = null;
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Code != (byte)FrontendCode.Bind)
            {
                continue;
            }

            var parse = StatementRegistry.ParseIndex(messages, m.StatementName, i);
            if (parse >= 0 && messages[parse].Classification is { Target: RouteTarget.SessionState } set && !(recorded?.Contains(parse) ?? false))
            {
                (recorded ??= []).Add(parse);
                RecordParsedSetting(link, set, messages[parse].Query);
            }

            if (FindStatement(messages, m.StatementName, i) is { } bound)
            {
                Dispatched(link, bound, bound.Transaction == TransactionEffect.Savepoint ? StatementText(messages, m.StatementName, i) : "",
                    SurelyRuns(messages, i, bound, settled));
            }
        }

        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i] is { Code: (byte)FrontendCode.Parse, Classification: { Target: RouteTarget.SessionState } set } && !(recorded?.Contains(i) ?? false))
            {
                RecordParsedSetting(link, set, messages[i].Query);
            }
        }
    }

    private void RecordParsedSetting(NodeLink link, Classification c, string? sql)
    {
        if (RecordSessionState(link, c, sql ?? ""))
        {
            AppliedHere(link, c);
        }
    }

    /// <summary>
    /// How a batch found the session: every earlier request answered (<see cref="Settled"/>), and whether its transaction
    /// had failed. <see cref="Unknown"/> for the rest of a batch under way, whose earlier part may still fail, and for a
    /// batch without savepoint statements (nothing asks).
    /// </summary>
    private readonly record struct Settledness(bool Answered, bool Failed)
    {
        public static Settledness Unknown => new(false, false);
    }

    /// <summary>
    /// Whether the server surely runs statement <paramref name="c"/>, which the Bind at <paramref name="bind"/> binds: the
    /// batch's first, with nothing before it but Close messages (which never fail) and at most one Parse, its own, when
    /// every earlier request is answered and (ROLLBACK TO aside, which a failed transaction runs) the transaction has not
    /// failed. Anything else ahead of it in the batch (another Parse, a Bind, a Describe, an Execute) may fail, and the
    /// server then skips the rest up to the Sync. In a failed transaction, a batch that binds another named statement
    /// does not count either: Poold may parse that statement ahead of the batch (a catch-up), which the server refuses.
    /// </summary>
    private static bool SurelyRuns(List<BatchMessage> messages, int bind, Classification c, Settledness settled)
    {
        if (!settled.Answered || (settled.Failed && !IsRollbackTo(c)))
        {
            return false;
        }

        var parses = 0;
        for (var i = 0; i < bind; i++)
        {
            var m = messages[i];
            if (m.Code == (byte)FrontendCode.Parse && m.Name == messages[bind].StatementName && ++parses == 1)
            {
                continue;
            }

            if (m.Code != (byte)FrontendCode.Close)
            {
                return false;
            }
        }

        if (settled.Failed)
        {
            for (var i = bind + 1; i < messages.Count; i++)
            {
                if (messages[i].Code == (byte)FrontendCode.Bind && messages[i].StatementName.Length > 0)
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>Every request the client sent has had its ReadyForQuery recorded (before it was relayed): none can still fail.</summary>
    private bool Settled()
    {
        lock (_routingLock)
        {
            return _recordedSequence == _lastSequence;
        }
    }

    /// <summary>
    /// The rest of a batch whose first part went to a standby before its Sync (a Flush) now needs the primary (a write):
    /// the standby's part is closed with a Sync of Poold's whose ReadyForQuery the client does not see, and once its
    /// replies are in, the rest is routed on its own. When that first part failed, the server would have skipped the
    /// rest up to the Sync: so does Poold. Returns false when the rest stays where it is.
    /// </summary>
    private async Task<bool> RedirectFromLockedAsync(NodeLink locked, List<BatchMessage> messages, CancellationToken ct)
    {
        if (_lockedBatch is null)
        {
            return false;
        }

        if (!EndsATransactionOpenElsewhere(locked, messages)
            && (locked == _backends.Primary || locked.TransactionOpen || locked.Connection.NodeId == _primaryNodeId))
        {
            return false;
        }

        var statements = _batchStatements;
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Code is (byte)FrontendCode.Parse or (byte)FrontendCode.Bind
                && (m.Code == (byte)FrontendCode.Parse ? m.Classification : FindStatement(messages, m.StatementName, i)) is { } c)
            {
                statements.Add(c);
            }
        }

        bool needsPrimary;
        lock (_routingLock)
        {
            needsPrimary = ChooseForStatements(CollectionsMarshal.AsSpan(statements), forced: null).NodeId == _primaryNodeId;
        }

        statements.Clear();
        if (!needsPrimary && !EndsATransactionOpenElsewhere(locked, messages))
        {
            return false;
        }

        var control = await EndLockedBatchAsync(ct);
        if (control is { Failed: true })
        {
            _discardUntilSync = true;
            _discardedStatus = control.Status;
        }

        return true;
    }

    /// <summary>
    /// Closes a batch that was sent before its Sync, before something that cannot join it (a simple Query, a
    /// FunctionCall, a part that needs another node): a Sync of Poold's ends it on its node, the ReadyForQuery that
    /// answers it is kept from the client, and this returns once the batch's replies have all been read.
    /// </summary>
    private Task<BatchControl?> EndLockedBatchAsync(CancellationToken ct) => _lockedLink is { } locked ? EndLockedBatchNowAsync(locked, ct) : NoLockedBatch;

    private static readonly Task<BatchControl?> NoLockedBatch = Task.FromResult<BatchControl?>(null);

    private async Task<BatchControl?> EndLockedBatchNowAsync(NodeLink locked, CancellationToken ct)
    {
        var control = _lockedBatch;
        _lockedLink = null;
        _lockedBatch = null;
        if (control is null)
        {
            // A COPY continuation: the client's own Sync ends it.
            return null;
        }

        control.SwallowReadyForQuery = true;
        await WriteAndFlushAsync(locked.Connection, SyncFrame, ct);
        await control.Completion.WaitAsync(ct);
        return control;
    }

    /// <summary>
    /// The rest of a batch under way on a standby, inside an explicit transaction there, binds COMMIT, ROLLBACK or a
    /// savepoint statement while the transaction is open on another node too: it is routed as a batch of its own (after
    /// Poold's Sync closes the part under way, which ends nothing in an explicit transaction), so that the node that
    /// answers is the one whose outcome counts, and an error in the part under way is known first (the server skips
    /// the rest, COMMIT included, up to the Sync). Not when the rest uses a portal the part under way bound: it lives
    /// only there (the rest then stays, as before).
    /// </summary>
    private bool EndsATransactionOpenElsewhere(NodeLink locked, List<BatchMessage> messages)
    {
        if (locked == _backends.Primary || !locked.TransactionOpen || !InTransactionNow())
        {
            return false;
        }

        var elsewhere = false;
        foreach (var link in _backends.Links)
        {
            elsewhere |= link != locked && link.TransactionOpen;
        }

        if (!elsewhere)
        {
            return false;
        }

        var ends = false;
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Code is (byte)FrontendCode.Execute or (byte)FrontendCode.Describe && m.StatementName != "S" && !BoundBefore(messages, m.Name, i))
            {
                return false;
            }

            ends |= BoundTransactionControl(messages, i) is not null;
        }

        return ends;
    }

    /// <summary>The COMMIT, ROLLBACK or savepoint statement <paramref name="messages"/>[<paramref name="i"/>] binds, if it is such a Bind.</summary>
    private Classification? BoundTransactionControl(List<BatchMessage> messages, int i) =>
        messages[i] is { Code: (byte)FrontendCode.Bind } m
        && FindStatement(messages, m.StatementName, i) is { Target: RouteTarget.Transaction, Transaction: TransactionEffect.End or TransactionEffect.Savepoint } tc
            ? tc
            : null;

    private static bool BoundBefore(List<BatchMessage> messages, string portal, int index)
    {
        for (var i = 0; i < index; i++)
        {
            if (messages[i].Code == (byte)FrontendCode.Bind && messages[i].Name == portal)
            {
                return true;
            }
        }

        return false;
    }

    private static readonly byte[] SyncFrame = [(byte)FrontendCode.Sync, 0, 0, 0, 4];

    /// <summary>Set after a redirected batch's first part failed: client messages are skipped up to the Sync.</summary>
    private bool _discardUntilSync;

    private TransactionStatus _discardedStatus = TransactionStatus.Idle;

    // ---- choosing the node ----

    /// <summary>The node for a batch holding these statements (caller holds <see cref="_routingLock"/>).</summary>
    private (int NodeId, string Reason) ChooseForStatements(ReadOnlySpan<Classification> statements, NodeLink? forced)
    {
        var router = _router!;
        var primary = _primaryNodeId;
        var endsTransaction = false;
        var begins = false;
        foreach (var s in statements)
        {
            endsTransaction |= s.Transaction is TransactionEffect.End || IsRollbackTo(s);
            begins |= s.Transaction == TransactionEffect.Begin;
        }

        if (_failedLink is { } failed && !endsTransaction)
        {
            return (failed.Connection.NodeId, "the transaction failed on this node");
        }

        if (forced is not null)
        {
            return (forced.Connection.NodeId, "the portal lives on this node");
        }

        var choice = NodeChoice.Anywhere;
        var reason = "session state or transaction control";
        foreach (var s in statements)
        {
            var (c, why) = router.Decide(s);
            if (c == NodeChoice.Primary)
            {
                return (primary, why);
            }

            if (c == NodeChoice.Balance && choice == NodeChoice.Anywhere)
            {
                (choice, reason) = (c, why);
            }
        }

        if (choice == NodeChoice.Balance)
        {
            return (BalanceNode(out var how), how);
        }

        // Only session state or transaction control: where the transaction already runs, else the primary.
        if (begins)
        {
            // Where the transaction will probably run: the primary when the session's last transaction wrote (no standby
            // joins and commits for nothing), else where the session reads.
            if (router.Decide(PlainRead) is var (read, why) && read != NodeChoice.Balance)
            {
                return (primary, BeginReason(why));
            }

            return router.LastTransactionWrote
                ? (primary, "BEGIN: the session's last transaction wrote")
                : (BalanceNode(out _), "BEGIN: opened where the session reads");
        }

        // Where the transaction is open: the primary if it is, else the first node that is (a loop: a lambda over this
        // session would be allocated for every statement of a transaction).
        NodeLink? open = null;
        foreach (var link in _backends.Links)
        {
            if (!link.TransactionOpen)
            {
                continue;
            }

            if (link == _backends.Primary)
            {
                open = link;
                break;
            }

            open ??= link;
        }

        return (open?.Connection.NodeId ?? primary, reason);
    }

    private static readonly Classification PlainRead = new(RouteTarget.LoadBalance, "read");

    /// <summary>The last reason a BEGIN went to the primary, and the text built from it (one string per reason, not per BEGIN).</summary>
    private (string Why, string Reason) _beginReason = ("", "BEGIN: ");

    private string BeginReason(string why)
    {
        if (!ReferenceEquals(_beginReason.Why, why))
        {
            _beginReason = (why, "BEGIN: " + why);
        }

        return _beginReason.Reason;
    }

    /// <summary>The session's load-balance node (re-drawn per statement with statement_level_load_balance), and why.</summary>
    private int BalanceNode(out string why)
    {
        why = _balanceWhy;
        var nodes = _services.Nodes.Current;
        var gone = _balanceNodeId < 0 || _balanceNodeId >= nodes.Nodes.Length
                                      || nodes.Nodes[_balanceNodeId].Status is not (NodeStatus.Up or NodeStatus.Waiting);
        if (!gone && nodes.Nodes[_balanceNodeId].Replication.Lagging && _balanceNodeId != nodes.PrimaryNodeId)
        {
            // Over delay_threshold: with prefer_lower_delay_standby another standby, else the primary (compat §6.1).
            if (!_services.Settings.Get(Params.PreferLowerDelayStandby))
            {
                why = DelayedToPrimary;
                return nodes.PrimaryNodeId;
            }

            gone = true;
            why = DelayedRedrawn;
        }

        if (gone || (_services.Routing.StatementLevel && !_router!.InTransaction))
        {
            // A detached node gets no more reads: the session draws again among the nodes that are up.
            (_balanceNodeId, _balanceWhy) = _balancer!.Choose(nodes, _database!, _startup!["application_name"], _random);
            why = ReferenceEquals(why, DelayedRedrawn) ? why : _balanceWhy;
        }

        return _balanceNodeId;
    }

    // ---- sending ----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendAsync(NodeLink link, ReadOnlySequence<byte> frame, bool relay, string reason, CancellationToken ct,
        Classification? classification = null, string sql = "", bool surelyRuns = false)
    {
        if (classification?.Verb == "LISTEN")
        {
            // Before the batch is queued: the reply pump must already watch the primary when it has read the answer.
            Volatile.Write(ref _watchPrimary, true);
        }

        var skip = await CatchUpAsync(link, NoMessages, ct);
        var begins = classification is { Transaction: TransactionEffect.Begin, MultiStatement: false } && !link.TransactionOpen;
        Enqueue(link, relay, skip, leading: TakeCatchUpNames());
        link.OnlyBegun = begins && _transactionMode;
        if (classification is not null)
        {
            // Once the request is queued (its sequence is the one a commit's settings are undone by) and before it is
            // written: the server's ReadyForQuery, which may come at once, has the last word.
            Dispatched(link, classification, sql, surelyRuns, alone: !classification.MultiStatement);
        }

        await link.Connection.WriteAsync(frame, ct);
        await link.Connection.FlushAsync(ct);
        _copyLink = link;
        if (classification is not null)
        {
            _services.Counters.Count(link.Connection.NodeId, classification.Verb);
        }

        LogRoute(link.Connection.NodeId, reason);
    }

    /// <summary>The session's connection to a node, opened on first use; the primary when the node cannot be had.</summary>
    private ValueTask<NodeLink> LinkAsync(int id, CancellationToken ct) =>
        _backends.TryGet(id, out var existing) && IsUsable(existing)
            ? ValueTask.FromResult(existing)
            : OpenLinkAsync(id, ct);

    /// <summary>
    /// The primary, or a standby connection that is busy, was used in the last few milliseconds, or has not been
    /// closed by its server while idle (a poll, no round trip).
    /// </summary>
    private bool IsUsable(NodeLink link) =>
        link == _backends.Primary || (!link.Dead && (Volatile.Read(ref link.Pending) > 0 || link.TransactionOpen
                                            || _services.Time.GetElapsedTime(link.LastUsed) < ProbeAfterIdle
                                            || !link.Connection.IsClosedByPeer()));

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<NodeLink> OpenLinkAsync(int id, CancellationToken ct)
    {
        if (_backends.TryGet(id, out var existing))
        {
            // A standby that went away while this session was idle on it: drop the connection, report the node, and
            // run the statement elsewhere instead of failing it.
            _backends.Remove(id);
            existing.StopWatching();
            if (!existing.Dead)
            {
                LogBalanceNodeUnavailable(id, "the connection was closed by the server");
                _services.BackendFailed?.Invoke(id, "connection closed by the server", false);
            }

            _services.Pool.Forget(existing.Connection);
            await existing.Connection.DisposeAsync();
            _balanceNodeId = _balancer!.Choose(_services.Nodes.Current, _database!, _startup!["application_name"], _random) is var (next, _)
                             && next != id ? next : _primaryNodeId;
            _balanceWhy = UnavailableRedrawn;

            // A session that has written reads on the primary: the node drawn again has not been checked for its writes.
            return _balanceNodeId == id || ReadsFollowWrites ? await PrimaryLinkAsync(ct) : await LinkAsync(_balanceNodeId, ct);
        }

        if (id == _primaryNodeId)
        {
            // Transaction mode: the primary is bound for this transaction (a failure here is the session's, as at login).
            return await PrimaryLinkAsync(ct);
        }

        var nodes = _services.Nodes.Current;
        if (id < 0 || id >= nodes.Nodes.Length || nodes.Nodes[id].Status is not (NodeStatus.Up or NodeStatus.Waiting))
        {
            return await PrimaryLinkAsync(ct);
        }

        // Transaction mode: a session that already holds a connection never waits for another pool's to read (two
        // sessions each holding what the other waits for would stall until query_wait_timeout); the read runs on a
        // node it holds. Only a write waits, for the primary, and whoever holds the primary never waits.
        var holding = _transactionMode && _backends.Count > 0;
        try
        {
            var connection = await ConnectAsync(nodes.Nodes[id], ct, wait: !holding);
            var opened = new NodeLink(connection);
            PrepareSharedLink(opened);
            opened.WatchNode(_services.Nodes.DownToken(id));
            _backends.Add(opened);
            return opened;
        }
        catch (PoolWaitTimeoutException) when (holding)
        {
            // A session that has written may read only where its writes are known to be: the primary, waited for if need be.
            return _backends.Primary ?? (ReadsFollowWrites ? await PrimaryLinkAsync(ct) : _backends.Links.First());
        }
        catch (Exception e) when (e is BackendException or IOException or System.Net.Sockets.SocketException or TimeoutException)
        {
            LogBalanceNodeUnavailable(id, e.Message);
            _balanceNodeId = _primaryNodeId;
            _balanceWhy = UnavailableToPrimary;
            return await PrimaryLinkAsync(ct);
        }
    }

    /// <summary>
    /// Brings a node up to date before a batch: replays session state it missed, opens the explicit transaction on it,
    /// closes statements the client closed elsewhere, and parses the named statements the batch binds but the node
    /// lacks. Returns how many ParseComplete/CloseComplete replies at the head of the batch are Poold's.
    /// </summary>
    private Task<int> CatchUpAsync(NodeLink link, List<BatchMessage> messages, CancellationToken ct)
    {
        _catchUpNames = null;
        SettleStateUndo();
        if (!link.HasStaleStatements && link.AppliedHistory == _state.Version && messages.Count == 0 && link.TransactionOpen == InTransactionNow()
            && (!link.TransactionOpen || link.TransactionSettingsSeen == _transaction.LastSetting))
        {
            // The usual case, a link already up to date: no state machine.
            return NothingCaughtUp;
        }

        return CatchUpNowAsync(link, messages, ct);
    }

    private static readonly Task<int> NothingCaughtUp = Task.FromResult(0);

    private async Task<int> CatchUpNowAsync(NodeLink link, List<BatchMessage> messages, CancellationToken ct)
    {
        var connection = link.Connection;
        if (link.AppliedHistory != _state.Version)
        {
            if (_transactionMode)
            {
                await ApplySharedStateAsync(link, ct);
            }
            else
            {
                foreach (var entry in _state.Entries)
                {
                    Enqueue(link, relay: false, 0);
                    await connection.WriteAsync(entry.Frame, ct);
                    if (entry.DropsStatements)
                    {
                        link.Statements.Clear();
                        link.StaleStatements.Clear();
                    }
                }
            }

            link.AppliedHistory = _state.Version;
        }

        bool inTransaction;
        lock (_routingLock)
        {
            inTransaction = _router!.InTransaction;
        }

        if (inTransaction && !link.TransactionOpen)
        {
            var begin = link == _backends.Primary ? _beginText : StandbyBegin(_beginText);
            Enqueue(link, relay: false, 0);
            await connection.WriteAsync(QueryFrame(begin), ct);
            link.TransactionOpen = true;
            for (var i = 0; i < _transaction.Count; i++)
            {
                Enqueue(link, relay: false, 0);
                await connection.WriteAsync(QueryFrame(_transaction.StatementAt(i)), ct);
            }

            MarkForReset(link, _transaction.HasSettings);
        }
        else if (inTransaction && link.TransactionSettingsSeen != _transaction.LastSetting)
        {
            // In the transaction already: the settings made on another node since this one last ran a statement.
            var replayed = false;
            foreach (var sql in _transaction.SettingsAfter(link.TransactionSettingsSeen))
            {
                Enqueue(link, relay: false, 0);
                await connection.WriteAsync(QueryFrame(sql), ct);
                replayed = true;
            }

            MarkForReset(link, replayed);
        }

        link.TransactionSettingsSeen = _transaction.LastSetting;

        var frames = _catchUpFrames;
        _registry.CatchUp(link, messages, _transactionMode, _services.Settings.Get(Params.MaxPreparedStatements), frames);
        foreach (var frame in frames)
        {
            await connection.WriteAsync(frame, ct);
        }

        var skip = frames.Count;
        if (skip > 0)
        {
            var names = new string[skip];
            for (var i = 0; i < skip; i++)
            {
                names[i] = StatementRegistry.StatementNameOf(frames[i]);
            }

            _catchUpNames = names;
            if (_transactionMode)
            {
                // Should the server skip them (an error first), what the connection holds is not what its records say:
                // its next client drops every statement first (see ReturnSharedAsync).
                link.ParsedSinceBound = true;
            }
        }

        frames.Clear();
        return skip;
    }

    /// <summary>The names of the statements the last catch-up parsed or closed ahead of a batch, in order, for its reply entry.</summary>
    private string[]? _catchUpNames;

    /// <summary>The names of the last catch-up's statements, once (see <see cref="_catchUpNames"/>).</summary>
    private string[]? TakeCatchUpNames()
    {
        var names = _catchUpNames;
        _catchUpNames = null;
        return names;
    }

    /// <summary>
    /// Statements Poold parsed or closed ahead of a batch that the server skipped (an error came first: say the Parse
    /// of a statement bound in a failed transaction, 25P02), with their link: queued by the reply pump, put right by the
    /// client side before its next request (<see cref="SettleInjected"/>). Made at first use (rare: a concurrent queue
    /// holds a kilobyte from the start, and every idle session would carry one).
    /// </summary>
    private System.Collections.Concurrent.ConcurrentQueue<(NodeLink Link, string[] Names)>? _skippedCatchUps;

    /// <summary>Queues statements the server skipped (the reply pump's side of <see cref="_skippedCatchUps"/>).</summary>
    private void QueueSkippedCatchUps(NodeLink link, string[] names)
    {
        var queue = Volatile.Read(ref _skippedCatchUps);
        if (queue is null)
        {
            var created = new System.Collections.Concurrent.ConcurrentQueue<(NodeLink Link, string[] Names)>();
            queue = Interlocked.CompareExchange(ref _skippedCatchUps, created, null) ?? created;
        }

        queue.Enqueue((link, names));
    }

    /// <summary>
    /// A later part of a batch already under way (sent after a Flush) may bind a statement its connection lacks: as
    /// ahead of any batch, Poold parses it there first (<see cref="StatementRegistry.CatchUp"/>), and the batch's
    /// control hides the completions of those statements, which come among the replies after those of the client's
    /// earlier parts. A part that continues a COPY has no control; it is sent as it is.
    /// </summary>
    private async Task CatchUpLockedAsync(NodeLink locked, List<BatchMessage> messages, CancellationToken ct)
    {
        if (_lockedBatch is not { } control)
        {
            return;
        }

        // An earlier batch's statements of Poold's that may have been skipped: settled before this part relies on the records.
        SettleInjected();
        var frames = _catchUpFrames;
        _registry.CatchUp(locked, messages, _transactionMode, _services.Settings.Get(Params.MaxPreparedStatements), frames);
        if (frames.Count > 0)
        {
            foreach (var frame in frames)
            {
                control.InjectedNames.Add(StatementRegistry.StatementNameOf(frame));
            }

            // The records now count these statements as parsed (or closed) there. Should an earlier part fail, the server
            // skips them: SettleInjected puts the records right for this session, and the connection's statements count
            // as changed while bound (a Close-only catch-up too), so that, after that error, its next client in
            // transaction mode drops them all first rather than trust them (see ReturnSharedAsync).
            _injected = (control, locked);
            locked.ParsedSinceBound = true;

            // Before the frames are written: their replies may come at once.
            control.HideAfterClientCompletes(frames.Count);
            foreach (var frame in frames)
            {
                await locked.Connection.WriteAsync(frame, ct);
            }

            frames.Clear();
        }

        control.ClientCompletes += Completions(messages);
    }

    /// <summary>Statements put ahead of a batch that the server skipped (see <see cref="_skippedCatchUps"/>): not there, whatever the records say.</summary>
    private void SettleSkippedCatchUps()
    {
        var queue = Volatile.Read(ref _skippedCatchUps);
        while (queue is not null && queue.TryDequeue(out var skipped))
        {
            var (link, names) = skipped;
            var stillBound = _backends.TryGet(link.Connection.NodeId, out var bound) && bound == link;
            foreach (var name in names)
            {
                // Not made (or not closed) there: closed before that connection's next use, parsed again where bound.
                link.Statements.Remove(name);
                link.StaleStatements.Add(name);
                if (stillBound)
                {
                    link.Connection.Prepared.Remove(name);
                }
            }
        }
    }

    /// <summary>The last batch whose later part had statements of Poold's put ahead of it, and its link, until settled.</summary>
    private (BatchControl Control, NodeLink Link)? _injected;

    /// <summary>
    /// Before a new request: if the last batch with statements of Poold's in a later part has ended with an error, and
    /// the server skipped some of them, the session's records of those names are wrong. Each is then taken as absent
    /// from that connection, and closed there before its next use (a Close of a statement that does not exist is not an
    /// error), so it is parsed again where it is bound. The reply pump marks the batch ended before the client has its
    /// ReadyForQuery; a request the client pipelined ahead of that answer cannot know the outcome yet, and takes the
    /// names as absent all the same (a Close and a Parse more, on pipelined traffic only).
    /// </summary>
    private void SettleInjected()
    {
        SettleParses();
        SettleSkippedCatchUps();
        // The batch under way is left alone: a later part of it (CatchUpLockedAsync) adds to the same record.
        if (_injected is not { } injected || injected.Control == _lockedBatch)
        {
            return;
        }

        var (control, link) = injected;
        _injected = null;
        if ((control.Ended && !control.InjectionsSkipped) || !_backends.TryGet(link.Connection.NodeId, out var current) || current != link)
        {
            return;
        }

        foreach (var name in control.InjectedNames)
        {
            link.Statements.Remove(name);
            link.StaleStatements.Add(name);
            link.Connection.Prepared.Remove(name);
        }
    }

    /// <summary>How many ParseComplete/CloseComplete replies <paramref name="messages"/> bring when they all run: one per Parse and per Close.</summary>
    private static int Completions(List<BatchMessage> messages)
    {
        var count = 0;
        foreach (var m in messages)
        {
            if (m.Code is (byte)FrontendCode.Parse or (byte)FrontendCode.Close)
            {
                count++;
            }
        }

        return count;
    }

    /// <summary>Frames <see cref="StatementRegistry.CatchUp"/> puts ahead of a batch (reused: one batch at a time).</summary>
    private readonly List<byte[]> _catchUpFrames = [];

    private bool InTransactionNow()
    {
        lock (_routingLock)
        {
            return _router!.InTransaction;
        }
    }

    /// <summary>A transaction opened on a standby for reads: the client's isolation level, never READ WRITE or SERIALIZABLE.</summary>
    private static string StandbyBegin(string begin)
    {
        var upper = begin.ToUpperInvariant();
        return upper.Contains("REPEATABLE READ", StringComparison.Ordinal) ? "BEGIN ISOLATION LEVEL REPEATABLE READ"
            : upper.Contains("READ UNCOMMITTED", StringComparison.Ordinal) ? "BEGIN ISOLATION LEVEL READ UNCOMMITTED"
            : "BEGIN";
    }

    /// <summary>
    /// COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO: every other node in the transaction gets its own copy, read
    /// back silently; a SAVEPOINT also brings the primary into the transaction (the next statements go there). Returns
    /// the node whose answer the client gets: the primary when it takes part. A transaction that failed on one node ends
    /// as one: that node answers the client's COMMIT (with ROLLBACK, as PostgreSQL does), and the others roll back, so
    /// what the primary did before a standby's error is never committed.
    /// </summary>
    private async ValueTask<NodeLink?> FanOutTransactionControlAsync(Classification c, string sql, NodeLink main, bool sync, bool surelyRuns,
        CancellationToken ct)
    {
        if (IsRollbackTo(c))
        {
            ClearFailed(leaveTransaction: false);
        }
        else if (FailedLink() is { } failed)
        {
            return await EndFailedTransactionAsync(c, sql, failed, main, sync, ct);
        }

        if (c.Transaction == TransactionEffect.Savepoint)
        {
            // The primary first: binding it may give back a standby that ran nothing but BEGIN (GiveBackUnusedStandbyAsync),
            // which then takes no part.
            await PrimaryLinkAsync(ct);
        }

        // Reused: one batch is dispatched at a time, and this list is not kept past the call.
        var participants = _participants;
        participants.Clear();
        foreach (var link in _backends.Links)
        {
            if (link.TransactionOpen)
            {
                participants.Add(link);
            }
        }

        if (c.Transaction == TransactionEffect.Savepoint && !participants.Contains(_backends.Primary!))
        {
            participants.Add(_backends.Primary!);
        }

        if (_backends.Primary is { } primaryLink && participants.Contains(primaryLink))
        {
            main = primaryLink;
        }
        else if (participants.Count > 0 && !participants.Contains(main))
        {
            main = participants[0];
        }

        if (participants.Count <= 1 && (participants.Count == 0 || participants[0] == main))
        {
            // The common case (one node in the transaction, the one the client's statement goes to): nothing to copy.
            participants.Clear();
            return main;
        }

        if (c.Transaction == TransactionEffect.Savepoint && c.Verb == "RELEASE" && !surelyRuns)
        {
            // A RELEASE that the answering node may skip (an earlier statement can still fail there) is not copied: the
            // others keep a savepoint too many, as the joining nodes may (TransactionStatements), never one too few. A ROLLBACK TO
            // always is: it is what brings a node whose transaction failed back, and the failure mark is cleared above.
            participants.Clear();
            return main;
        }

        var query = QueryFrame(sql);
        var ends = c.Transaction == TransactionEffect.End && !c.AndChain;
        try
        {
            foreach (var link in participants)
            {
                if (link == main)
                {
                    continue;
                }

                await SendCopyAsync(link, query, ct);
                if (ends)
                {
                    // COMMIT AND CHAIN opens the next transaction at once: the node stays in one.
                    link.TransactionOpen = false;
                }
            }
        }
        finally
        {
            participants.Clear();
        }

        return main;
    }

    /// <summary>
    /// Poold's own copy of a transaction-control statement for another node of the transaction: the node is caught up
    /// first, and the answer is read back silently.
    /// </summary>
    private async Task SendCopyAsync(NodeLink link, byte[] query, CancellationToken ct)
    {
        await CatchUpAsync(link, NoMessages, ct);
        TakeCatchUpNames();
        Enqueue(link, relay: false, 0);
        await WriteAndFlushAsync(link.Connection, query, ct);
    }

    /// <summary>
    /// The rest of a batch under way on <paramref name="locked"/> (sent after a Flush) that binds a SAVEPOINT: it is copied
    /// to the transaction's other nodes, as <see cref="FanOutTransactionControlAsync"/> copies it for a batch of its own,
    /// so a later ROLLBACK TO finds the savepoint everywhere. Its RELEASE and ROLLBACK TO are not: the earlier part may
    /// still fail and the locked node skip them (the others then keep a savepoint too many, never one too few). Such a
    /// rest that ends a transaction open elsewhere is routed on its own (<see cref="RedirectFromLockedAsync"/>).
    /// </summary>
    private async Task CopySavepointControlAsync(NodeLink locked, List<BatchMessage> messages, CancellationToken ct)
    {
        if (FailedLink() is not null)
        {
            // The failed node refuses it; nothing to copy.
            return;
        }

        for (var i = 0; i < messages.Count; i++)
        {
            if (BoundTransactionControl(messages, i) is not { Transaction: TransactionEffect.Savepoint, Verb: "SAVEPOINT" } tc || tc.MultiStatement)
            {
                continue;
            }

            byte[]? query = null;
            foreach (var link in _backends.Links)
            {
                if (link != locked && link.TransactionOpen)
                {
                    query ??= QueryFrame(StatementText(messages, messages[i].StatementName, i));
                    await SendCopyAsync(link, query, ct);
                }
            }
        }
    }

    /// <summary>
    /// The transaction control an extended-protocol batch binds (COMMIT, SAVEPOINT …), copied to the transaction's other
    /// nodes before the batch goes out (<see cref="FanOutTransactionControlAsync"/>). Returns the node whose answer the
    /// client gets, or null when Poold answered the batch itself.
    /// </summary>
    private async ValueTask<NodeLink?> FanOutBoundControlAsync(List<BatchMessage> messages, NodeLink link, bool sync, Settledness settled,
        CancellationToken ct)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            if (BoundTransactionControl(messages, i) is { } tc)
            {
                if (await FanOutTransactionControlAsync(tc, StatementText(messages, messages[i].StatementName, i), link, sync,
                        SurelyRuns(messages, i, tc, settled), ct) is not { } main)
                {
                    return null;
                }

                link = main;
            }
        }

        return link;
    }

    /// <summary>
    /// Transaction control in a transaction that failed on <paramref name="failed"/> (ROLLBACK TO aside, which every node
    /// runs): the transaction behaves as one. A SAVEPOINT or RELEASE goes to that node alone, which refuses it (25P02), as
    /// PostgreSQL does. A COMMIT or ROLLBACK is answered by that node (a COMMIT with ROLLBACK), and every other node rolls
    /// back, so what the primary did before a standby's error is never committed. When that node's connection is gone,
    /// every node rolls back; a ROLLBACK then runs outside a transaction, a COMMIT gets 40000 from Poold (null: answered).
    /// </summary>
    private async ValueTask<NodeLink?> EndFailedTransactionAsync(Classification c, string sql, NodeLink failed, NodeLink main, bool sync,
        CancellationToken ct)
    {
        var answering = failed.TransactionOpen && _backends.Links.Contains(failed) ? failed : null;
        if (c.Transaction == TransactionEffect.Savepoint && answering is not null)
        {
            return answering;
        }

        var chained = answering is not null && c.Transaction == TransactionEffect.End && c.AndChain;
        if (c.Transaction == TransactionEffect.End)
        {
            // Whatever answers the COMMIT, the transaction rolls back: its SETs do not last.
            _transaction.ForgetSessionSettings();
        }

        await RollBackTransactionAsync(except: answering, chained, ct);
        if (answering is not null)
        {
            ClearFailed(leaveTransaction: false);
            return answering;
        }

        ClearFailed(leaveTransaction: true);
        if (c.Verb is "ROLLBACK" or "ABORT")
        {
            return main;
        }

        AnswerBatchWithError(SqlState.TransactionRollback,
            $"the transaction failed on backend node {failed.Connection.NodeId}, whose connection is gone: it was rolled back on every node",
            "Nothing of the transaction was committed; run it again.", sync);
        return null;
    }

    /// <summary>
    /// A multi-statement query that ends or rolls back to a savepoint a transaction which failed on one node. One that
    /// begins with COMMIT or ROLLBACK (<c>COMMIT; SELECT 1</c>): no node can answer its COMMIT for the others, so every
    /// node rolls back first and the text runs outside a transaction (its COMMIT draws PostgreSQL's "no transaction in
    /// progress" warning); nothing the transaction did is committed. One that begins with ROLLBACK TO, in a transaction
    /// open on more than one node, is refused (0A000): only the node it runs on would recover. Returns false when refused.
    /// </summary>
    private async ValueTask<bool> EndFailedTransactionInTextAsync(Classification c, CancellationToken ct)
    {
        if (FailedLink() is not { } failed)
        {
            return true;
        }

        if (c.Transaction == TransactionEffect.End)
        {
            _transaction.ForgetSessionSettings();
            await RollBackTransactionAsync(except: null, chained: false, ct);
            ClearFailed(leaveTransaction: true);
            return true;
        }

        if (!IsRollbackTo(c) || _backends.Links.Count(static link => link.TransactionOpen) <= 1)
        {
            return true;
        }

        AnswerBatchWithError(SqlState.FeatureNotSupported,
            $"ROLLBACK TO inside a multi-statement query, in a transaction that failed on backend node {failed.Connection.NodeId} and is open on several nodes",
            "Send ROLLBACK TO SAVEPOINT as a query of its own: Poold then runs it on every node of the transaction.", sync: true, TransactionStatus.Failed);
        return false;
    }

    /// <summary>Every node in the transaction but <paramref name="except"/> rolls back, silently (AND CHAIN: into a new one).</summary>
    private async ValueTask RollBackTransactionAsync(NodeLink? except, bool chained, CancellationToken ct)
    {
        var participants = _participants;
        participants.Clear();
        foreach (var link in _backends.Links)
        {
            if (link.TransactionOpen && link != except)
            {
                participants.Add(link);
            }
        }

        var rollback = QueryFrame(chained ? "ROLLBACK AND CHAIN" : "ROLLBACK");
        try
        {
            foreach (var link in participants)
            {
                await SendCopyAsync(link, rollback, ct);
                link.TransactionOpen = chained;
            }
        }
        finally
        {
            participants.Clear();
        }
    }

    private NodeLink? FailedLink()
    {
        lock (_routingLock)
        {
            return _failedLink;
        }
    }

    /// <summary>
    /// The failed transaction is over (or rolled back to a savepoint) as of the statement being dispatched: predicted, as
    /// the relayed ReadyForQuery of the session's last statement has the last word. <paramref name="leaveTransaction"/>:
    /// every node has rolled back already, so the statement runs outside a transaction (no BEGIN is caught up before it).
    /// </summary>
    private void ClearFailed(bool leaveTransaction)
    {
        lock (_routingLock)
        {
            _failedLink = null;
            if (leaveTransaction)
            {
                _router!.ReadyForQuery(false);
            }
        }
    }

    private static bool IsRollbackTo(Classification c) => c.Transaction == TransactionEffect.Savepoint && c.Verb == "ROLLBACK";

    /// <summary>The nodes a transaction-control statement is copied to (<see cref="FanOutTransactionControlAsync"/>).</summary>
    private readonly List<NodeLink> _participants = [];

    /// <summary>A transaction that ended on its main node (a multi-statement COMMIT, an error) may still be open on others: close it.</summary>
    private Task CloseLeftoverTransactionsAsync(CancellationToken ct)
    {
        bool inTransaction;
        lock (_routingLock)
        {
            inTransaction = _router!.InTransaction;
        }

        if (inTransaction || Volatile.Read(ref _outstanding) > 0)
        {
            return Task.CompletedTask;
        }

        foreach (var link in _backends.Links)
        {
            if (link.TransactionOpen)
            {
                return CloseLeftoverTransactionsNowAsync(ct);
            }
        }

        // The usual case, no transaction left open anywhere: no state machine.
        return Task.CompletedTask;
    }

    private async Task CloseLeftoverTransactionsNowAsync(CancellationToken ct)
    {
        foreach (var link in _backends.Links)
        {
            if (link.TransactionOpen)
            {
                Enqueue(link, relay: false, 0);
                await WriteAndFlushAsync(link.Connection, QueryFrame(link == _backends.Primary ? "COMMIT" : "ROLLBACK"), ct);
                link.TransactionOpen = false;
            }
        }
    }

    /// <summary>
    /// A statement goes out on <paramref name="link"/> (after the link's catch-up, once it is queued, before it is written): the router, the
    /// link's transaction flag and the transaction's statements (<paramref name="sql"/>: its text, needed for a SAVEPOINT;
    /// <paramref name="surelyRuns"/>: the server surely runs it, see <see cref="TransactionStatements.Dispatched"/>) take it in.
    /// </summary>
    private void Dispatched(NodeLink link, Classification c, string sql, bool surelyRuns, bool alone = false)
    {
        bool inTransaction, failed;
        lock (_routingLock)
        {
            inTransaction = _router!.InTransaction;
            failed = _failedLink is not null;
            _router.Dispatched(c);
        }

        if (inTransaction && (c is { Transaction: TransactionEffect.End, Commits: true } || c.PreparesTransaction) && !failed)
        {
            CommitSettings(link, c.PreparesTransaction, alone);
        }
        else if (inTransaction && c is { Transaction: TransactionEffect.End, Commits: true } && _transaction.FirstSessionSetting is > 0 and var first)
        {
            // A COMMIT of a transaction whose failure became known only after its copies went out: its SETs are
            // forgotten, but another node that ran them committed them. Those nodes get the history again.
            foreach (var other in _backends.Links)
            {
                if (other != link && other.TransactionSettingsSeen >= first)
                {
                    other.AppliedHistory = -1;
                }
            }
        }

        TrackTransaction(link, c);

        if (inTransaction ? c.Transaction is TransactionEffect.Savepoint or TransactionEffect.End : _transaction.Count > 0)
        {
            _transaction.Dispatched(c, sql, inTransaction, refused: failed, certain: surelyRuns);
        }
    }

    /// <summary>
    /// A COMMIT (or PREPARE TRANSACTION: <paramref name="prepares"/>), answered by <paramref name="main"/>: the
    /// session-level settings its transaction made join the session's history. A link that has run every setting of the
    /// transaction (it was in it: the COMMIT's copies were brought up to date first) and was up to date before stays so
    /// (in transaction mode the connections were marked for a reset when the SETs ran or were replayed there); after PREPARE TRANSACTION, which
    /// has no copies, only <paramref name="main"/> (the others' transactions are rolled back). Should the COMMIT fail,
    /// only <paramref name="main"/> is known to have rolled them back: the other nodes' copies may have committed, and
    /// they are given the restored history again. <paramref name="alone"/>: the COMMIT is its request's only statement.
    /// </summary>
    private void CommitSettings(NodeLink main, bool prepares, bool alone)
    {
        var committed = _transaction.TakeCommitted();
        if (committed.Count == 0)
        {
            return;
        }

        SettleStateUndo();
        var (saved, before) = (_state.Save(), _state.Version);
        foreach (var (c, sql) in committed)
        {
            _state.Record(c, sql);
        }

        var ran = new List<NodeLink>();
        foreach (var link in _backends.Links)
        {
            if (link.AppliedHistory == before && link.TransactionSettingsSeen == _transaction.LastSetting && (link == main || !prepares))
            {
                link.AppliedHistory = _state.Version;
                if (link == main)
                {
                    ran.Add(link);
                }
            }
        }

        // The COMMIT may still fail (a deferred constraint, a serialization failure) or roll back a transaction whose
        // failure was not known when it was sent (pipelined): the server then undoes the SETs, and so does the history.
        RememberUndo(saved, before, ran, commitAlone: alone && !prepares);
    }

    private static void TrackTransaction(NodeLink link, Classification c)
    {
        switch (c.Transaction)
        {
            case TransactionEffect.Begin or TransactionEffect.Serializable:
                link.TransactionOpen = true;
                break;
            case TransactionEffect.End:
                link.TransactionOpen = link.TransactionOpen && c.AndChain;
                break;
        }
    }

    /// <summary>
    /// Transaction mode: the transaction's settings were replayed on <paramref name="link"/> (<paramref name="replayed"/>):
    /// what its connection carries is no longer what its state text says (a SET that commits stays), so its next client
    /// resets it first, as for the node where the client's own SET ran (<see cref="MarkIfUncertain"/>).
    /// </summary>
    private void MarkForReset(NodeLink link, bool replayed)
    {
        if (_transactionMode && replayed)
        {
            link.Connection.AppliedState = ResetMark;
        }
    }

    /// <summary>
    /// Transaction mode: the client's RESET (or SET … TO DEFAULT) of a parameter its startup packet set has just run on a
    /// shared connection, which went back to the value it started with (the pool's): a SET of the client's own startup
    /// value follows at once, unseen, as if the client had a connection of its own (in a failed transaction both fail alike).
    /// </summary>
    private async Task RestoreStartupValueAsync(NodeLink link, HistoryEntry startup, CancellationToken ct)
    {
        Enqueue(link, relay: false, 0);
        await WriteAndFlushAsync(link.Connection, startup.Frame, ct);
    }

    /// <summary>
    /// Transaction mode, an extended batch just written: for each RESET (or SET … TO DEFAULT) of a startup parameter it
    /// binds, the client's startup value is SET after it (<paramref name="restore"/>: the batch is whole, with no
    /// transaction control or COPY, so the SET runs right after it and outside no transaction it could end). Otherwise the
    /// connection is marked for a reset before its next client instead, and this session's view of it may lag until then.
    /// A batch whose request then fails leaves the link with the startup value, which the restored history may not have:
    /// the link is no longer counted among those that ran the request (see <see cref="RestoreState"/>).
    /// </summary>
    private async Task RestoreStartupValuesAsync(NodeLink link, List<BatchMessage> messages, bool restore, CancellationToken ct)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i].Code != (byte)FrontendCode.Bind || FindStatement(messages, messages[i].StatementName, i) is not { } bound
                || _state.StartupValue(bound) is not { } startup || SetAgainLater(messages, i, bound.SettingKey!))
            {
                continue;
            }

            if (!restore)
            {
                link.Connection.AppliedState = ResetMark;
                continue;
            }

            lock (_routingLock)
            {
                if (_stateUndo is { } undo && _stateUndoSequence == _lastSequence)
                {
                    undo.Ran.Remove(link);
                }
            }

            await RestoreStartupValueAsync(link, startup, ct);
        }
    }

    /// <summary>Whether a statement bound after message <paramref name="after"/> sets <paramref name="key"/> again (or resets everything).</summary>
    private bool SetAgainLater(List<BatchMessage> messages, int after, string key)
    {
        for (var i = after + 1; i < messages.Count; i++)
        {
            if (messages[i].Code == (byte)FrontendCode.Bind && FindStatement(messages, messages[i].StatementName, i) is { Target: RouteTarget.SessionState } later
                && (later.SettingKey == key || later.ResetsSession))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// The request that last recorded session state outside a transaction has been answered: if it failed (a SET with a
    /// bad value, or any error in its implicit transaction, which the server rolls back with the SET), the history goes
    /// back to what it was before it, as the server's state did.
    /// </summary>
    private void SettleStateUndo()
    {
        if (_stateUndo is not { } undo)
        {
            return;
        }

        bool answered, failed;
        lock (_routingLock)
        {
            answered = _recordedSequence >= _stateUndoSequence;
            failed = _stateUndoFailed;
        }

        if (answered)
        {
            _stateUndo = null;
            if (failed)
            {
                RestoreState(undo);
            }
        }
    }

    /// <summary>
    /// A request changed the history (before it: <paramref name="saved"/>, at <paramref name="savedVersion"/>; the links in
    /// <paramref name="ran"/> ran the change themselves): undone if it fails. Every change of the history goes through
    /// here, so an undo never takes back a later change: a second change of the same request joins its undo, one of a
    /// later request replaces it (the earlier request's change then stays, even if it fails). Returns false when the
    /// request has failed already (a simple Query records after it is sent): the change is undone at once.
    /// </summary>
    private bool RememberUndo(SessionStateHistory.Saved saved, int savedVersion, List<NodeLink> ran, bool commitAlone = false)
    {
        bool failedAlready;
        lock (_routingLock)
        {
            failedAlready = _recordedSequence == _lastSequence && _recordedFailed;
            if (_recordedSequence >= _lastSequence)
            {
                // Answered already: nothing to wait for.
            }
            else if (_stateUndo is { } same && _stateUndoSequence == _lastSequence)
            {
                same.Ran.AddRange(ran);
            }
            else
            {
                _stateUndo = new StateUndo(saved, savedVersion, ran);
                _stateUndoSequence = _lastSequence;
                _stateUndoFailed = false;
                _stateUndoInheritsFailure = commitAlone;
            }
        }

        if (failedAlready)
        {
            RestoreState(new StateUndo(saved, savedVersion, ran));
        }

        return !failedAlready;
    }

    /// <summary>Undoes a failed request's change: the links that ran it or never took it stay up to date (no replay of the whole history there).</summary>
    private void RestoreState(StateUndo undo)
    {
        _state.Restore(undo.Saved);
        foreach (var link in _backends.Links)
        {
            if (link.AppliedHistory == undo.SavedVersion || undo.Ran.Contains(link))
            {
                link.AppliedHistory = _state.Version;
            }
        }
    }

    /// <summary>
    /// SET/RESET/DISCARD outside SET LOCAL, sent on <paramref name="link"/>: kept, one entry per parameter, to replay on
    /// nodes that join later; true when the session's history took it. Inside a transaction it waits for the COMMIT
    /// instead, with SET LOCAL and SET TRANSACTION, in <see cref="TransactionStatements"/> (a failed transaction refuses it).
    /// </summary>
    private bool RecordSessionState(NodeLink link, Classification c, string sql)
    {
        if (c.Target != RouteTarget.SessionState)
        {
            return false;
        }

        bool inTransaction, failed;
        lock (_routingLock)
        {
            inTransaction = _router!.InTransaction;
            failed = _failedLink is not null;
        }

        if (!inTransaction)
        {
            SettleStateUndo();
            var (before, version) = (_state.Save(), _state.Version);
            return _state.Record(c, sql) && RememberUndo(before, version, [link]);
        }

        var session = c.SettingKey is not null || c.ResetsSession;
        if (!failed && sql.Length > 0 && !c.MultiStatement && (session || c.SetsTransaction))
        {
            link.TransactionSettingsSeen = _transaction.AddSetting(_state.StartupValue(c)?.Sql ?? sql, session ? c : null, c.Characteristics);
        }

        return false;
    }

    private void Enqueue(NodeLink link, bool relay, int skip, BatchControl? control = null, WalPositionCapture? capture = null,
        string[]? leading = null)
    {
        link.OnlyBegun = false;
        if (relay && _transactionMode)
        {
            // A transaction block that goes on past its first request brings its connection to the client's event
            // thread. Requests outside a block (autocommit statements, a driver's DISCARD ALL ahead of its first
            // statement, a statement sent before the connection went back to the pool) count only themselves; a
            // pinned session keeps its connections, so its count runs on and they move once.
            if (!link.TransactionOpen && _pinnedBy is null)
            {
                link.Relayed = 0;
            }

            if (++link.Relayed == 2)
            {
                link.Connection.JoinEventThreadOf(_client.EventStream);
            }
        }

        Interlocked.Increment(ref _repliesInFlight);
        Interlocked.Increment(ref link.Pending);
        var now = link.LastUsed = _services.Time.GetTimestamp();
        long sequence;
        lock (_routingLock)
        {
            sequence = relay ? ++_lastSequence : _lastSequence;
        }

        if (relay)
        {
            Interlocked.Increment(ref _outstanding);
        }

        _replies.TryWrite(new ReplyEntry(link, relay, skip, sequence, Control: control, SentAt: now, Capture: capture, Leading: leading));
        if (Volatile.Read(ref _watchPrimary))
        {
            _backends.Primary!.Connection.Reader.CancelPendingRead();
        }
    }

    /// <summary>Writes and flushes; a write and flush the stream finished at once (the usual case) cost no state machine.</summary>
    private static Task WriteAndFlushAsync(BackendConnection connection, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var write = connection.WriteAsync(data, ct);
        if (!write.IsCompletedSuccessfully)
        {
            return FlushAfterAsync(connection, write, ct);
        }

        write.GetAwaiter().GetResult();
        var flush = connection.FlushAsync(ct);
        if (!flush.IsCompletedSuccessfully)
        {
            return flush.AsTask();
        }

        flush.GetAwaiter().GetResult();
        return Task.CompletedTask;

        static async Task FlushAfterAsync(BackendConnection connection, ValueTask write, CancellationToken ct)
        {
            await write;
            await connection.FlushAsync(ct);
        }
    }

    private static byte[] QueryFrame(string sql) => SessionStateHistory.QueryFrame(sql);

    private static string CString(ReadOnlySpan<byte> span, int start, out int next)
    {
        var end = span[start..].IndexOf((byte)0);
        if (end < 0)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, "invalid message format: missing string terminator");
        }

        next = start + end + 1;
        return Encoding.UTF8.GetString(span.Slice(start, end));
    }

    /// <summary>The query text of a Query or Parse body from <paramref name="start"/> up to its NUL.</summary>
    private static ReadOnlySpan<byte> QueryBytes(ReadOnlySpan<byte> span, int start)
    {
        var end = span[start..].IndexOf((byte)0);
        return end < 0 ? span[start..] : span.Slice(start, end);
    }
}
