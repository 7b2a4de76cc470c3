using System.Security.Cryptography;

namespace Poold.Auth;

/// <summary>
/// The ClientKey a client proved in a SCRAM exchange (ClientProof XOR HMAC(StoredKey, AuthMessage), checked against
/// H(ClientKey) = StoredKey), with the verifier it was proven against. It logs in to any server that stores the same
/// verifier, as PgBouncer's auth_query does, without the password. It lives in memory only, for the session that proved
/// it, and is zeroed when that session ends (<see cref="Dispose"/>); its <see cref="ToString"/> is <c>***</c>.
/// </summary>
internal sealed class ScramClientKey : IDisposable
{
    private readonly byte[] _key;
    private int _disposed;

    /// <exception cref="ArgumentException">The key does not hash to the verifier's StoredKey.</exception>
    public ScramClientKey(byte[] clientKey, ScramVerifier verifier)
    {
        if (!CryptographicOperations.FixedTimeEquals(ScramSha256.StoredKey(clientKey), verifier.StoredKey))
        {
            throw new ArgumentException("the client key does not match the verifier's StoredKey", nameof(clientKey));
        }

        _key = clientKey;
        Verifier = verifier;
    }

    /// <summary>Salt, iteration count, StoredKey and ServerKey the key belongs to.</summary>
    public ScramVerifier Verifier { get; }

    /// <summary>The key itself; throws once the session has ended.</summary>
    public ReadOnlySpan<byte> Key => Volatile.Read(ref _disposed) == 0 ? _key : throw new ObjectDisposedException(nameof(ScramClientKey));

    /// <summary>Zeroes the key.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            CryptographicOperations.ZeroMemory(_key);
        }
    }

    public override string ToString() => "***";
}
