using System.Buffers;
using System.IO.Pipelines;
using Poold.Config;
using Poold.Pooling;
using Poold.Protocol;

namespace Poold.Sessions;

internal sealed partial class ClientSession
{
    /// <summary>Frames Poold reads whole on the relay path (ReadyForQuery, ParameterStatus, ErrorResponse) stay below this.</summary>
    private const int MaxInspectedFrame = 1 << 20;

    /// <summary>How long a leaving client's unfinished requests may take before its backend connection is closed instead of reused.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Requests sent (Query, Sync, FunctionCall) minus ReadyForQuery received: 0 when the backend is idle.</summary>
    private int _outstanding;

    /// <summary>Timestamp of the client's last data or of the backend's last answer to it, for <c>client_idle_limit</c>.</summary>
    private long _idleSince;

    /// <summary>
    /// Two pumps over the one backend connection: client → backend until Terminate or end of stream, and backend →
    /// client until stopped. Only frame headers are parsed; ReadyForQuery (transaction status) and ParameterStatus
    /// are the only bodies read. Both directions stream, so COPY, huge rows and notifications flow at any time.
    /// </summary>
    private async Task<SessionEnd> RelayAsync(CancellationToken shutdown)
    {
        var backend = _backend!;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        var fromBackend = PumpBackendToClientAsync(backend, stop.Token);
        var clientReader = PipeReader.Create(_client, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4096,
            leaveOpen: true, useZeroByteReads: true));
        SessionEnd end;
        try
        {
            var toBackend = PumpClientToBackendAsync(clientReader, backend, shutdown);
            var first = await Task.WhenAny(toBackend, fromBackend);
            if (first == fromBackend)
            {
                // The backend side ended first: it failed (the error surfaces here) or the connection closed.
                await fromBackend;
                throw new BackendException(backend.NodeId, SqlState.ConnectionFailure,
                    $"backend node {backend.NodeId} closed the connection unexpectedly");
            }

            end = await toBackend;
        }
        finally
        {
            backend.Reader.CancelPendingRead();
            await stop.CancelAsync();
            await SwallowAsync(fromBackend);
            await clientReader.CompleteAsync();
        }

        return end;
    }

    private async Task<SessionEnd> PumpClientToBackendAsync(PipeReader reader, BackendConnection backend, CancellationToken shutdown)
    {
        var scanner = new RelayScanner();
        var observer = new ClientFrames(this);
        var idleLimit = _services.Settings.Get(Params.ClientIdleLimit);
        await using var onShutdown = shutdown.Register(static r => ((PipeReader)r!).CancelPendingRead(), reader);

        // client_idle_limit: a timer wakes the pending read now and then; the read gives up once the backend has had
        // nothing to answer and the client has sent nothing for the whole limit. Waits end with CancelPendingRead,
        // which also interrupts an idle zero-byte read (a token would not).
        using var idleTimer = idleLimit > TimeSpan.Zero
            ? _services.Time.CreateTimer(static r => ((PipeReader)r!).CancelPendingRead(), reader, IdleCheckPeriod(idleLimit),
                IdleCheckPeriod(idleLimit))
            : null;
        Volatile.Write(ref _idleSince, _services.Time.GetTimestamp());
        while (true)
        {
            var result = await reader.ReadAsync(shutdown);
            if (result.IsCanceled)
            {
                shutdown.ThrowIfCancellationRequested();
                ThrowIfIdleTooLong(idleLimit);
                continue;
            }

            Volatile.Write(ref _idleSince, _services.Time.GetTimestamp());
            var buffer = result.Buffer;
            var end = scanner.Scan(buffer, ref observer, MaxInspectedFrame, out var stopped);
            var forward = buffer.Slice(0, end);
            if (!forward.IsEmpty)
            {
                await backend.WriteAsync(forward, shutdown);
                await backend.FlushAsync(shutdown);
            }

            if (stopped)
            {
                reader.AdvanceTo(end);
                return SessionEnd.Terminated;
            }

            reader.AdvanceTo(end, buffer.End);
            if (result.IsCompleted)
            {
                return SessionEnd.ClientClosed;
            }
        }
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

    private async Task PumpBackendToClientAsync(BackendConnection backend, CancellationToken stop)
    {
        await Task.Yield();
        var scanner = new RelayScanner();
        var observer = new BackendFrames(this, backend);
        while (true)
        {
            var result = await backend.Reader.ReadAsync(stop);
            if (result.IsCanceled)
            {
                return;
            }

            var buffer = result.Buffer;
            var end = scanner.Scan(buffer, ref observer, MaxInspectedFrame, out _);
            var forward = buffer.Slice(0, end);
            if (!forward.IsEmpty)
            {
                foreach (var segment in forward)
                {
                    await _client.WriteAsync(segment, stop);
                }

                await _client.FlushAsync(stop);
            }

            backend.Reader.AdvanceTo(end, buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private static async Task SwallowAsync(Task task)
    {
        try
        {
            await task;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException
                                      or ObjectDisposedException or PgProtocolException or InvalidOperationException)
        {
            // The pump is being stopped; its error, if any, was reported by whoever ended the relay.
        }
    }

    /// <summary>
    /// Gives the backend connection back: reset and pooled when it is idle (every request answered, or answered within
    /// <see cref="DrainTimeout"/>), otherwise closed.
    /// </summary>
    private async Task ReleaseBackendAsync(SessionEnd end)
    {
        var backend = Interlocked.Exchange(ref _backend, null);
        if (backend is null)
        {
            return;
        }

        var pool = _services.Pool;
        var keep = end != SessionEnd.Failed && ConnectionPool.IsCacheable(backend.Key.Database) && _services.Settings.Get(Params.ConnectionCache);
        if (keep)
        {
            try
            {
                using var cts = new CancellationTokenSource(DrainTimeout);
                await DrainAsync(backend, cts.Token);
                keep = await backend.ResetAsync(_services.Settings.Get(Params.ResetQueryList), cts.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException
                                          or PgProtocolException or BackendException or ObjectDisposedException)
            {
                keep = false;
            }
        }

        if (keep && pool.TryReturn(backend))
        {
            return;
        }

        pool.Forget(backend.NodeId);
        await backend.DisposeAsync();
    }

    /// <summary>Reads and discards the answers to requests the client left behind.</summary>
    private async Task DrainAsync(BackendConnection backend, CancellationToken cancellationToken)
    {
        var scanner = new RelayScanner();
        var observer = new BackendFrames(this, backend);
        while (Volatile.Read(ref _outstanding) > 0)
        {
            var result = await backend.Reader.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                continue;
            }

            var buffer = result.Buffer;
            var end = scanner.Scan(buffer, ref observer, MaxInspectedFrame, out _);
            backend.Reader.AdvanceTo(end, buffer.End);
            if (result.IsCompleted)
            {
                throw new IOException("backend closed the connection while draining");
            }
        }

        if (scanner.Remaining > 0)
        {
            throw new IOException("backend connection left in the middle of a message");
        }
    }

    /// <summary>Client → backend: counts requests that will be answered by ReadyForQuery; stops at Terminate.</summary>
    private readonly struct ClientFrames(ClientSession session) : IFrameObserver
    {
        public FrameAction Classify(byte code) => code == (byte)FrontendCode.Terminate ? FrameAction.Stop : FrameAction.Stream;

        public void OnFrame(byte code, int length, in ReadOnlySequence<byte> body)
        {
            if (code is (byte)FrontendCode.Query or (byte)FrontendCode.Sync or (byte)FrontendCode.FunctionCall)
            {
                Interlocked.Increment(ref session._outstanding);
            }
        }
    }

    /// <summary>Backend → client: tracks transaction status and parameter values; everything else streams.</summary>
    private readonly struct BackendFrames(ClientSession session, BackendConnection backend) : IFrameObserver
    {
        public FrameAction Classify(byte code) =>
            code is (byte)BackendCode.ReadyForQuery or (byte)BackendCode.ParameterStatus ? FrameAction.Inspect : FrameAction.Stream;

        public void OnFrame(byte code, int length, in ReadOnlySequence<byte> body)
        {
            if (code == (byte)BackendCode.ReadyForQuery && body.Length == 1)
            {
                backend.TransactionStatus = (TransactionStatus)body.FirstSpan[0];
                if (Interlocked.Decrement(ref session._outstanding) == 0)
                {
                    Volatile.Write(ref session._idleSince, session._services.Time.GetTimestamp());
                }
            }
            else if (code == (byte)BackendCode.ParameterStatus)
            {
                var (name, value) = BackendConnection.ParseParameterStatus(body);
                backend.UpdateParameter(name, value);
            }
        }
    }
}
