namespace Poold.Sessions;

/// <summary>
/// Counts the cancel requests a session is forwarding, so its backend connections are released only after every
/// cancel sent for them has been delivered. Once closed, it admits no more: a cancel that comes later finds nothing
/// to cancel, as if the session had already ended. Cancels are rare; one small lock keeps the count exact.
/// <para>
/// A cancel still on its way when a wait gave up (<see cref="CancelsSince.Undelivered"/>) is written off: the
/// connections it was sent for are closed, so it can harm nothing, and the session's later releases do not wait for it
/// again. Each admitted cancel carries the gate's generation, which a write-off moves on.
/// </para>
/// </summary>
internal sealed class CancelGate
{
    private readonly Lock _lock = new();
    private TaskCompletionSource? _idle;
    private int _inFlight;
    private int _generation;
    private bool _closed;
    private bool _used;
    private bool _paused;

    /// <summary>
    /// Admits one cancel, or returns false once the session is releasing its connections. <paramref name="ticket"/> goes
    /// back to <see cref="Exit"/> when the cancel has been delivered (or has failed for good).
    /// </summary>
    public bool TryEnter(out int ticket)
    {
        lock (_lock)
        {
            ticket = _generation;
            if (_closed || _paused)
            {
                return false;
            }

            _inFlight++;
            _used = true;
            return true;
        }
    }

    public void Exit(int ticket)
    {
        lock (_lock)
        {
            // A cancel written off (see the type's summary) is no longer counted.
            if (ticket == _generation && --_inFlight == 0)
            {
                _idle?.TrySetResult();
            }
        }
    }

    /// <summary>
    /// Transaction mode, the reply pump releasing the connections: true when no cancel is in flight and none came since
    /// the last release, and then admits none until <see cref="Resume"/>. A cancel that comes in between finds the
    /// session between transactions, where there is nothing to cancel, as a server would.
    /// </summary>
    public bool TryPause()
    {
        lock (_lock)
        {
            if (_closed || _inFlight > 0 || _used)
            {
                return false;
            }

            _paused = true;
            return true;
        }
    }

    public void Resume()
    {
        lock (_lock)
        {
            _paused = false;
        }
    }

    /// <summary>
    /// Transaction mode, between transactions: waits (at most <paramref name="timeout"/>) for the cancels in flight, which
    /// read the connections the session is giving back, and says what came of the cancels since the last call. The
    /// gate stays open: later cancels find the session's new (empty) list of connections.
    /// </summary>
    public Task<CancelsSince> QuiesceAsync(TimeSpan timeout) => WaitForInFlightAsync(close: false, timeout);

    /// <summary>
    /// Admits no more cancels and waits (at most <paramref name="timeout"/>) for those in flight. Says what came of the
    /// cancels forwarded for this session since the last <see cref="QuiesceAsync"/>.
    /// </summary>
    public Task<CancelsSince> CloseAsync(TimeSpan timeout) => WaitForInFlightAsync(close: true, timeout);

    private async Task<CancelsSince> WaitForInFlightAsync(bool close, TimeSpan timeout)
    {
        Task wait;
        lock (_lock)
        {
            _closed |= close;
            var used = _used;
            _used = false;
            if (_inFlight == 0)
            {
                return used ? CancelsSince.Delivered : CancelsSince.None;
            }

            _idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            wait = _idle.Task;
        }

        try
        {
            await wait.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            // Still on its way (a slow connect to the postmaster may take up to twice connect_timeout): it could land
            // after any check, on the next owner's statement. Its connections are closed, and it is written off.
            lock (_lock)
            {
                _generation++;
                _inFlight = 0;
                _idle = null;
            }

            return CancelsSince.Undelivered;
        }

        return CancelsSince.Delivered;
    }
}

/// <summary>What became of the cancels forwarded for a session since the gate was last asked.</summary>
internal enum CancelsSince
{
    /// <summary>None was forwarded.</summary>
    None,

    /// <summary>Every one reached its server (or failed for good): a round trip on the connection then shows it is idle.</summary>
    Delivered,

    /// <summary>One was still on its way when the wait ended: its connections are closed, never handed to another client.</summary>
    Undelivered,
}
