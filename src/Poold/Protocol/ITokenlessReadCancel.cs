namespace Poold.Protocol;

/// <summary>
/// A stream whose pending read can be cancelled without a token: <see cref="CancelPendingRead"/> ends the read waiting
/// now, or the next one the stream starts if none is waiting, with <see cref="OperationCanceledException"/>, as a token
/// passed to that read and cancelled would. <see cref="ContiguousPipeReader"/> uses it instead of a
/// <see cref="CancellationTokenSource"/> of its own: none to keep per connection, no registration per read that waits.
/// </summary>
internal interface ITokenlessReadCancel
{
    public void CancelPendingRead();

    /// <summary>Withdraws a request no read has used: its reader is done, and the stream's next reader is another.</summary>
    public void WithdrawReadCancel();
}
