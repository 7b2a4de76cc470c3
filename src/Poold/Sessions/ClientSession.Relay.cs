using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>
/// The client side's relay: the client pump reads the client's messages and hands each to the backend side, which routes
/// and sends it; the backend side's reply pump streams the replies back. This file holds the client pump and the
/// session's two pumps' start and end.
/// </summary>
internal sealed partial class ClientSession
{
    /// <summary>How long a leaving client's unfinished requests may take before the session stops waiting for their replies.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Timestamp of the client's last data, for <c>client_idle_limit</c> (the backend side keeps its last answer's).</summary>
    private long _idleSince;

    /// <summary>The client pump's reader: the backend side wakes it when the session goes quiet (<see cref="ISessionClient.WakeClientPump"/>).</summary>
    private ContiguousPipeReader? _clientReader;

    /// <summary>
    /// Two pumps: client → backends (message by message, handed to <see cref="BackendSide.OnClientMessageAsync"/>) until
    /// Terminate or end of stream, and backends → client (<see cref="BackendSide.PumpRepliesAsync"/>), which reads each
    /// batch's replies from the node that runs it, in order, and in between passes on the primary's asynchronous messages.
    /// </summary>
    private async Task<SessionEnd> RelayAsync(CancellationToken shutdown)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        var fromBackends = _backendSide.PumpRepliesAsync(stop.Token);
        var clientReader = new ContiguousPipeReader(_client, bufferSize: 16 * 1024, minimumReadSize: 4096, transport: _eventStream);
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
                var primary = _backendSide.PrimaryNodeId;
                throw new BackendException(primary, SqlState.ConnectionFailure, $"backend node {primary} closed the connection unexpectedly");
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
                _backendSide.CompleteReplies();
                await Task.WhenAny(fromBackends, Task.Delay(DrainTimeout, _services.Time, shutdown));
            }
        }
        finally
        {
            _backendSide.StopReplies();

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
        var transactionMode = _backendSide.TransactionMode;
        try
        {
            while (true)
            {
                if (transactionMode)
                {
                    // Connections the reply pump could not give back (a cancel to wait for, one to close) go back now; then,
                    // while this pump waits for the client, the reply pump may release them itself.
                    await _backendSide.ReleaseBindingAsync(shutdown);
                    if (!_backendSide.Park())
                    {
                        continue;
                    }
                }

                // No token: the registration above ends this wait (one registration per session, not one per read).
                var result = await reader.ReadAsync(CancellationToken.None);
                if (transactionMode)
                {
                    _backendSide.Unpark();
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
            _backendSide.Unpark();
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
                await _backendSide.FlushBatchAsync(shutdown);
                reader.AdvanceTo(buffer.Start);
                return SessionEnd.Terminated;
            }

            await _backendSide.OnClientMessageAsync(code, frame, body, shutdown);
        }

        await _backendSide.FlushBatchIfStreamingAsync(shutdown);
        reader.AdvanceTo(buffer.Start, buffer.End);
        return result.IsCompleted ? SessionEnd.ClientClosed : null;
    }

    /// <summary>A whole client message, or false for more bytes; a header announcing more than max_packet_size ends the session (54000).</summary>
    private static bool TryReadClientFrame(ref ReadOnlySequence<byte> buffer, int maxMessage, out byte code, out ReadOnlySequence<byte> frame,
        out ReadOnlySequence<byte> body)
    {
        if (buffer.First.Span is [var type, ..] && !IsFrontendType(type))
        {
            // As PostgreSQL does, at the type byte: a body may never come (a second startup packet has none to frame).
            throw new ClientFatalException(SqlState.ProtocolViolation, $"invalid frontend message type {type}");
        }

        frame = body = default;
        if (!FrameReader.TryReadHeader(buffer, int.MaxValue, out code, out var length))
        {
            return false;
        }

        if (length > maxMessage)
        {
            throw new ClientFatalException(SqlState.ProgramLimitExceeded,
                $"message of type '{(char)code}' is {length} bytes, more than max_packet_size ({maxMessage} bytes)",
                "Raise max_packet_size in the Poold configuration to accept larger messages.");
        }

        if (buffer.Length < 1 + length)
        {
            return false;
        }

        // The header is read once: the frame and its body are slices of the buffer.
        frame = buffer.Slice(0, 1 + length);
        body = frame.Slice(FrameReader.HeaderLength);
        buffer = buffer.Slice(frame.End);
        return true;
    }

    /// <summary>The message types a logged-in session may send (PostgreSQL's PostgresMain accepts these and no other).</summary>
    private static bool IsFrontendType(byte type) =>
        (FrontendCode)type is FrontendCode.Query or FrontendCode.Parse or FrontendCode.Bind or FrontendCode.Execute or FrontendCode.Describe
            or FrontendCode.Close or FrontendCode.Sync or FrontendCode.Flush or FrontendCode.FunctionCall or FrontendCode.Terminate
            or FrontendCode.CopyData or FrontendCode.CopyDone or FrontendCode.CopyFail;

    private static TimeSpan IdleCheckPeriod(TimeSpan idleLimit) =>
        TimeSpan.FromTicks(Math.Clamp(idleLimit.Ticks / 4, TimeSpan.TicksPerMillisecond * 100, TimeSpan.TicksPerSecond * 5));

    private void ThrowIfIdleTooLong(TimeSpan idleLimit)
    {
        if (idleLimit > TimeSpan.Zero && _backendSide.Outstanding == 0
            && _services.Time.GetElapsedTime(Math.Max(Volatile.Read(ref _idleSince), _backendSide.AnsweredAt)) >= idleLimit)
        {
            throw new ClientFatalException(SqlState.IdleSessionTimeout,
                $"terminating connection because the client was idle for client_idle_limit ({idleLimit.TotalSeconds:0}s)");
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
}
