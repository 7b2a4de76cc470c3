using System.Net.Sockets;

namespace Poold.Io;

/// <summary>The write side: send at once on the caller's thread, park on EAGAIN until EPOLLOUT.</summary>
internal sealed partial class SocketStream
{
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        return TrySend(ref buffer, out var error) switch
        {
            Outcome.Done => default,
            Outcome.Failed => ValueTask.FromException(error!),
            _ => ParkWrite(buffer, cancellationToken),
        };
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <summary>A blocking write (no caller on the hot path uses it): waits in poll(2) on the calling thread.</summary>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            int sent;
            SocketError result;
            try
            {
                result = SocketNative.Send(_handle, buffer, out sent);
            }
            catch (ObjectDisposedException)
            {
                throw Disposed();
            }

            switch (result)
            {
                case SocketError.Success:
                    buffer = buffer[sent..];
                    break;
                case SocketError.WouldBlock:
                    _socket.Poll(-1, SelectMode.SelectWrite);
                    break;
                case SocketError.Interrupted:
                    break;
                default:
                    throw Failure(result, reading: false);
            }
        }
    }

    /// <summary>
    /// Sends until <paramref name="buffer"/> is empty (what is left stays in it). At the first EAGAIN, Edge is cleared
    /// and send tried once more, so an EPOLLOUT edge after that point is seen by the parking that follows a second EAGAIN.
    /// </summary>
    private Outcome TrySend(ref ReadOnlyMemory<byte> buffer, out Exception? error)
    {
        error = null;
        var cleared = false;
        while (!buffer.IsEmpty)
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                error = Disposed();
                return Outcome.Failed;
            }

            int sent;
            SocketError result;
            try
            {
                result = SocketNative.Send(_handle, buffer.Span, out sent);
            }
            catch (ObjectDisposedException)
            {
                error = Disposed();
                return Outcome.Failed;
            }

            switch (result)
            {
                case SocketError.Success:
                    buffer = buffer[sent..];
                    break;
                case SocketError.WouldBlock when !cleared:
                    Interlocked.And(ref _writability, ~Edge);
                    cleared = true;
                    break;
                case SocketError.WouldBlock:
                    return Outcome.WouldBlock;
                case SocketError.Interrupted:
                    break;
                default:
                    Interlocked.Or(ref _writability, Edge | Hangup);
                    error = Failure(result, reading: false);
                    return Outcome.Failed;
            }
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            // Only for a wait with nothing to send (a connect): a disposed stream never reports success.
            error = Disposed();
            return Outcome.Failed;
        }

        return Outcome.Done;
    }

    private ValueTask ParkWrite(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        _writeCore.Reset();
        _writeBuffer = buffer;
        _writeToken = cancellationToken;
        Interlocked.Exchange(ref _writeParked, 1);
        if (Volatile.Read(ref _writability) != 0 && Interlocked.CompareExchange(ref _writeParked, 0, 1) == 1)
        {
            ResumeWrite();
        }

        var version = _writeCore.Version;
        if (cancellationToken.CanBeCanceled && _writeCore.GetStatus(version) == System.Threading.Tasks.Sources.ValueTaskSourceStatus.Pending)
        {
            _writeRegistration = cancellationToken.UnsafeRegister(static s => ((SocketStream)s!).CancelWrite(), this);
        }

        return new ValueTask(this, version);
    }

    /// <summary>Runs by the owner of a parked write (see the hand-off invariant): completes it, or parks it again.</summary>
    private void ResumeWrite()
    {
        while (true)
        {
            var buffer = _writeBuffer;
            var outcome = TrySend(ref buffer, out var error);
            _writeBuffer = buffer;
            if (outcome == Outcome.WouldBlock)
            {
                Interlocked.Exchange(ref _writeParked, 1);
                if (Volatile.Read(ref _writability) == 0 || Interlocked.CompareExchange(ref _writeParked, 0, 1) != 1)
                {
                    return;
                }

                continue;
            }

            _writeBuffer = default;
            if (error is ObjectDisposedException)
            {
                error = Aborted(reading: false);
            }

            if (outcome == Outcome.Done)
            {
                _writeCore.SetResult(true);
            }
            else
            {
                _writeCore.SetException(error!);
            }

            return;
        }
    }

    private void CancelWrite()
    {
        if (Interlocked.CompareExchange(ref _writeParked, 0, 1) == 1)
        {
            _writeBuffer = default;
            _writeCore.SetException(new OperationCanceledException(_writeToken));
        }
    }
}
