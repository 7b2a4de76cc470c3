namespace Poold.Sessions;

/// <summary>
/// The host's num_init_children session slots, as a session sees them. A session asks for one once the client is
/// authenticated (with pool_hba) and before any backend connection is touched (without pool_hba the backend's own
/// challenge authenticates the client, so the slot comes first there). Connections that have not reached that point
/// hold no slot: they have their own cap and deadline in the host (max_unauthenticated_connections,
/// unauthenticated_timeout).
/// </summary>
internal interface ISessionAdmission
{
    /// <summary>
    /// Takes a slot for <paramref name="session"/>: true when it has one (the host releases it when the session ends),
    /// false when the client is to be refused with 53300 (slots full and reserved_connections &gt; 0, or the wait ended
    /// with <paramref name="cancellationToken"/>). A <paramref name="transactionMode"/> session holds no such slot but
    /// counts against max_client_conn, and is refused at once past it.
    /// </summary>
    public ValueTask<bool> TryEnterAsync(ClientSession session, bool transactionMode, CancellationToken cancellationToken);

    /// <summary>The session has ended, admitted or not (called once, by the session, last): what it held is the host's again.</summary>
    public void Ended(ClientSession session);
}
