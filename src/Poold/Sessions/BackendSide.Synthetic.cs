using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>Poold's own answers (pool commands, errors of Poold's) among the replies, in their place.</summary>
internal sealed partial class BackendSide
{
    /// <summary>The transaction status a pool command's ReadyForQuery reports: what the client's transaction is now.</summary>
    public TransactionStatus VisibleStatus()
    {
        lock (_routingLock)
        {
            return _failedLink is not null ? TransactionStatus.Failed
                : _router!.InTransaction ? TransactionStatus.InTransaction
                : TransactionStatus.Idle;
        }
    }

    /// <summary>Queues Poold's own answer behind the replies already queued; the reply pump writes it in its turn.</summary>
    public void EnqueueSynthetic(byte[] answer)
    {
        Interlocked.Increment(ref _outstanding);
        _replies.TryWrite(new ReplyEntry(_backends.Primary!, Relay: true, 0, _lastSequence, answer));
        if (Volatile.Read(ref _watchPrimary))
        {
            _backends.Primary!.Connection.Reader.CancelPendingRead();
        }
    }
}
