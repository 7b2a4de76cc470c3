using System.Net.Sockets;

namespace Poold.Io;

/// <summary>The read side: readiness flag first, recv only when the socket is readable, park otherwise.</summary>
internal sealed partial class SocketStream
{
    private enum Outcome
    {
        Done,
        WouldBlock,
        Failed,
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        if (Volatile.Read(ref _readCancel) != 0 && Volatile.Read(ref _disposed) == 0 && Interlocked.Exchange(ref _readCancel, 0) != 0)
        {
            return ValueTask.FromException<int>(new OperationCanceledException());
        }

        if (buffer.IsEmpty)
        {
            return WaitReadableAsync(cancellationToken);
        }

        // EAGAIN clears Edge before its recv: the loop parks unless an edge came in between.
        while (Volatile.Read(ref _readiness) != 0)
        {
            switch (TryReceive(buffer.Span, out var count, out var error))
            {
                case Outcome.Done:
                    return new ValueTask<int>(count);
                case Outcome.Failed:
                    return ValueTask.FromException<int>(error!);
            }
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            return ValueTask.FromException<int>(Disposed());
        }

        return ParkRead(buffer, cancellationToken);
    }

    /// <summary>
    /// A zero-byte read: the caller holds no buffer while it waits (ContiguousPipeReader), so it must not be woken for
    /// input already taken. Edge may outlive what it announced — a read that filled its buffer exactly (a 5-byte
    /// header at login) sets it on a guess, and an event can be handled after the read that took its bytes — so a set
    /// flag is checked with a one-byte MSG_PEEK, Edge cleared first as before a recv: data or the end completes the
    /// read, EAGAIN parks it. A read parked here and resumed by an event is not checked again: that edge is new. Without
    /// the check an idle session woke once, took a 16 KB buffer and parked its real read holding it.
    /// </summary>
    private ValueTask<int> WaitReadableAsync(CancellationToken cancellationToken)
    {
        var flags = Volatile.Read(ref _readiness);
        if ((flags & Hangup) != 0 || Volatile.Read(ref _disposed) != 0)
        {
            return TryReceive(Span<byte>.Empty, out _, out var error) == Outcome.Failed
                ? ValueTask.FromException<int>(error!)
                : new ValueTask<int>(0);
        }

        if (flags != 0)
        {
            Interlocked.And(ref _readiness, ~Edge);
            Span<byte> probe = stackalloc byte[1];
            SocketError result;
            int count;
            try
            {
                do
                {
                    result = SocketNative.Peek(_handle, probe, out count);
                }
                while (result == SocketError.Interrupted);
            }
            catch (ObjectDisposedException)
            {
                return ValueTask.FromException<int>(Disposed());
            }

            if (result != SocketError.WouldBlock)
            {
                // Data, the end, or an error: readable. The read that follows takes the data or reports the end or error.
                Interlocked.Or(ref _readiness, result == SocketError.Success && count > 0 ? Edge : Edge | Hangup);
                return new ValueTask<int>(0);
            }
        }

        return ParkRead(Memory<byte>.Empty, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <summary>A blocking read (no caller on the hot path uses it): waits in poll(2) on the calling thread.</summary>
    public override int Read(Span<byte> buffer)
    {
        while (true)
        {
            if (!buffer.IsEmpty || Volatile.Read(ref _readiness) != 0)
            {
                switch (TryReceive(buffer, out var count, out var error))
                {
                    case Outcome.Done:
                        return count;
                    case Outcome.Failed:
                        throw error!;
                }
            }

            try
            {
                _socket.Poll(-1, SelectMode.SelectRead);
            }
            catch (ObjectDisposedException)
            {
                throw Disposed();
            }

            if (buffer.IsEmpty)
            {
                return 0;
            }
        }
    }

    /// <summary>
    /// One attempt at the kernel: a zero-byte read is done at once (the caller saw the stream readable); otherwise Edge
    /// is cleared, then recv. A full buffer sets Edge again, the end or an error sets Hangup.
    /// </summary>
    private Outcome TryReceive(Span<byte> buffer, out int count, out Exception? error)
    {
        error = null;
        count = 0;
        if (Volatile.Read(ref _disposed) != 0)
        {
            error = Disposed();
            return Outcome.Failed;
        }

        if (buffer.IsEmpty)
        {
            return Outcome.Done;
        }

        Interlocked.And(ref _readiness, ~Edge);
        SocketError result;
        while (true)
        {
            try
            {
                result = SocketNative.Receive(_handle, buffer, out count);
            }
            catch (ObjectDisposedException)
            {
                error = Disposed();
                return Outcome.Failed;
            }

            if (result != SocketError.Interrupted)
            {
                break;
            }
        }

        switch (result)
        {
            case SocketError.Success:
                if (count == buffer.Length)
                {
                    Interlocked.Or(ref _readiness, Edge);
                }
                else if (count == 0)
                {
                    Interlocked.Or(ref _readiness, Edge | Hangup);
                }

                return Outcome.Done;
            case SocketError.WouldBlock:
                return Outcome.WouldBlock;
            default:
                Interlocked.Or(ref _readiness, Edge | Hangup);
                error = Failure(result, reading: true);
                return Outcome.Failed;
        }
    }

    private ValueTask<int> ParkRead(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        _readCore.Reset();
        _readBuffer = buffer;
        _readToken = cancellationToken;
        Interlocked.Exchange(ref _readParked, 1);
        if (Volatile.Read(ref _readiness) != 0 && Interlocked.CompareExchange(ref _readParked, 0, 1) == 1)
        {
            // An edge (or a Dispose) came between the attempt and the parking: this caller owns the read again.
            ResumeRead();
        }
        else
        {
            CancelParkedIfAsked();
        }

        var version = _readCore.Version;
        if (cancellationToken.CanBeCanceled && _readCore.GetStatus(version) == System.Threading.Tasks.Sources.ValueTaskSourceStatus.Pending)
        {
            // Disposed in GetResult. A token already cancelled runs the callback here, which completes the read.
            _readRegistration = cancellationToken.UnsafeRegister(static s => ((SocketStream)s!).CancelRead(), this);
        }

        return new ValueTask<int>(this, version);
    }

    /// <summary>Runs by the owner of a parked read (see the hand-off invariant): completes it, or parks it again.</summary>
    private void ResumeRead()
    {
        while (true)
        {
            var outcome = TryReceive(_readBuffer.Span, out var count, out var error);
            if (outcome == Outcome.WouldBlock)
            {
                Interlocked.Exchange(ref _readParked, 1);
                if (Volatile.Read(ref _readiness) == 0 || Interlocked.CompareExchange(ref _readParked, 0, 1) != 1)
                {
                    CancelParkedIfAsked();
                    return;
                }

                continue;
            }

            _readBuffer = default;
            if (error is ObjectDisposedException)
            {
                // Closed under a waiting read: as NetworkStream says it (callers catch IOException for a gone peer).
                error = Aborted(reading: true);
            }

            if (outcome == Outcome.Done)
            {
                // Last: the reader's continuation runs here and may start the next read.
                _readCore.SetResult(count);
            }
            else
            {
                _readCore.SetException(error!);
            }

            return;
        }
    }

    /// <summary>
    /// Cancels the read parked now or, if none is (it is being completed, or not started yet), the next read this stream
    /// starts or parks. Thread-safe; the parking side checks the request after it parks (<see cref="CancelParkedIfAsked"/>),
    /// so a request made while the read was between an attempt and its parking is not lost.
    /// </summary>
    public void CancelPendingRead()
    {
        Interlocked.Exchange(ref _readCancel, 1);
        CancelParkedIfAsked();
    }

    /// <summary>Withdraws a request of <see cref="CancelPendingRead"/> no read has used (the reader that made it has completed).</summary>
    public void WithdrawReadCancel() => Interlocked.Exchange(ref _readCancel, 0);

    /// <summary>
    /// With a cancel asked for (<see cref="CancelPendingRead"/>, or the parked read's token), takes the parked read, if
    /// any, and ends it canceled. Called by the canceller and by every parking after it parks: whichever comes second
    /// sees the other. A request used up meanwhile by a read that started (ReadAsync) leaves the read it took parked
    /// again, not canceled: one request ends one read.
    /// </summary>
    private void CancelParkedIfAsked()
    {
        while (true)
        {
            var asked = Volatile.Read(ref _readCancel) != 0;
            if ((!asked && !_readToken.IsCancellationRequested) || Interlocked.CompareExchange(ref _readParked, 0, 1) != 1)
            {
                // Nothing asked, or no read parked: whoever owns the read checks again when it parks.
                return;
            }

            if (asked && Interlocked.Exchange(ref _readCancel, 0) != 0)
            {
                _readBuffer = default;
                _readCore.SetException(new OperationCanceledException());
                return;
            }

            if (_readToken.IsCancellationRequested)
            {
                // The token's callback found the read taken by the event thread, which parked it again (see ResumeRead).
                _readBuffer = default;
                _readCore.SetException(new OperationCanceledException(_readToken));
                return;
            }

            Interlocked.Exchange(ref _readParked, 1);
            if (Volatile.Read(ref _readiness) != 0 && Interlocked.CompareExchange(ref _readParked, 0, 1) == 1)
            {
                // An edge came while the read was taken: as after any parking.
                ResumeRead();
                return;
            }

            // Parked again: a request (or the token's callback) that came while it was taken found nothing to take.
        }
    }

    private void CancelRead()
    {
        if (Interlocked.CompareExchange(ref _readParked, 0, 1) == 1)
        {
            _readBuffer = default;
            _readCore.SetException(new OperationCanceledException(_readToken));
        }
    }
}
