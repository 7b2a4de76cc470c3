using System.Collections.Concurrent;

namespace Poold.Pooling;

/// <summary>
/// Transaction mode: what a client logging in to one pool with one startup state was told by the server it logged in
/// through — the ParameterStatus values after its startup parameters were applied — and with which credential. The next
/// client of that pool, with the same startup state and a credential the server has accepted, is told the same without
/// taking a server connection at login (as PgBouncer answers a login from its pool's cached parameters), so a login
/// never waits behind busy transactions. Valid while the primary stays the one it came from.
/// </summary>
internal sealed class LoginWelcome(KeyValuePair<string, string>[] parameters, CredentialTag? openedWith, BackendAuthMethod authMethod, long primaryGeneration)
{
    public IReadOnlyList<KeyValuePair<string, string>> Parameters { get; } = parameters;

    public long PrimaryGeneration { get; } = primaryGeneration;

    public BackendAuthMethod AuthMethod { get; } = authMethod;

    /// <summary>Whether a client whose backend login would use <paramref name="tag"/> logs in as this one did (see <see cref="BackendConnection.WasOpenedWith"/>).</summary>
    public bool Admits(CredentialTag? tag) =>
        AuthMethod == BackendAuthMethod.Trust || (tag is not null && openedWith is not null && openedWith.Matches(tag));
}

/// <summary>
/// The <see cref="LoginWelcome"/> of every transaction-mode pool and startup state, replaced by each login that does go
/// through a server. Bounded: past <see cref="MaxEntries"/> distinct states it starts over (a fleet has a handful).
/// </summary>
internal sealed class LoginWelcomes
{
    private const int MaxEntries = 4096;

    private readonly ConcurrentDictionary<(PoolKey Key, string State), LoginWelcome> _entries = new();

    /// <summary>Remembers what <paramref name="connection"/>, carrying the client state <paramref name="state"/>, reports.</summary>
    public void Remember(BackendConnection connection, string state, long primaryGeneration)
    {
        if (_entries.Count >= MaxEntries)
        {
            _entries.Clear();
        }

        _entries[(connection.Key, state)] = new LoginWelcome([.. connection.Parameters], connection.OpenedWith, connection.AuthMethod, primaryGeneration);
    }

    /// <summary>The welcome for a client of <paramref name="key"/> with <paramref name="state"/> and <paramref name="credential"/>, or null when a server must answer.</summary>
    public LoginWelcome? Find(PoolKey key, string state, CredentialTag? credential, long primaryGeneration) =>
        _entries.TryGetValue((key, state), out var welcome) && welcome.PrimaryGeneration == primaryGeneration && welcome.Admits(credential)
            ? welcome
            : null;

    /// <summary>Forgets everything (a node's pool flushed: its server may have changed).</summary>
    public void Clear() => _entries.Clear();
}
