using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Poold.Sessions;

/// <summary>
/// Maps the BackendKeyData Poold gave each client to its session, so a CancelRequest on a new connection can reach
/// the backends running that client's query. Keys are Poold's own: clients never see a backend's pid or secret.
/// </summary>
internal sealed class CancelRegistry
{
    private readonly ConcurrentDictionary<int, (int Secret, ClientSession Session)> _sessions = new();

    public void Register(int processId, int secretKey, ClientSession session) => _sessions[processId] = (secretKey, session);

    public void Unregister(int processId) => _sessions.TryRemove(processId, out _);

    /// <summary>The session with this key, if the secret matches (compared in constant time).</summary>
    public ClientSession? Find(int processId, int secretKey)
    {
        if (!_sessions.TryGetValue(processId, out var entry))
        {
            return null;
        }

        Span<byte> given = stackalloc byte[4];
        Span<byte> expected = stackalloc byte[4];
        BitConverter.TryWriteBytes(given, secretKey);
        BitConverter.TryWriteBytes(expected, entry.Secret);
        return CryptographicOperations.FixedTimeEquals(given, expected) ? entry.Session : null;
    }

    public int Count => _sessions.Count;

    /// <summary>The sessions past their startup, by id (for PCP process info and SHOW POOL_PROCESSES).</summary>
    public IReadOnlyList<ClientSession> Sessions => [.. _sessions.Values.Select(v => v.Session).OrderBy(s => s.Id)];
}
