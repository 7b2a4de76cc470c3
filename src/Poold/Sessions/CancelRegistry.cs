using System.Collections.Concurrent;

namespace Poold.Sessions;

/// <summary>
/// Maps the BackendKeyData Poold gave each client to its session, so a CancelRequest on a new connection can reach
/// the backends running that client's query. The process id is the real pid of the session's backend on the primary
/// (what <c>pg_backend_pid()</c> returns, so <c>pg_terminate_backend</c> and the server log match the driver's view);
/// the secret is Poold's own, drawn per session, and never a backend's.
/// </summary>
internal sealed class CancelRegistry
{
    private readonly ConcurrentDictionary<(int ProcessId, int Secret), ClientSession> _sessions = new();

    /// <summary>Registers a session's key; false when that exact key is taken (the caller draws another secret).</summary>
    public bool TryRegister(int processId, int secretKey, ClientSession session) => _sessions.TryAdd((processId, secretKey), session);

    public void Unregister(int processId, int secretKey) => _sessions.TryRemove((processId, secretKey), out _);

    /// <summary>The session with exactly this key, or null (a wrong secret finds nothing, as a wrong pid does).</summary>
    public ClientSession? Find(int processId, int secretKey) => _sessions.GetValueOrDefault((processId, secretKey));

    public int Count => _sessions.Count;

    /// <summary>The sessions past their startup, by id (for PCP process info and SHOW POOL_PROCESSES).</summary>
    public IReadOnlyList<ClientSession> Sessions => [.. _sessions.Values.OrderBy(s => s.Id)];
}
