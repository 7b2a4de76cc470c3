using System.Security.Cryptography;
using System.Text;
using Poold.Auth;

namespace Poold.Pooling;

/// <summary>
/// Names the credential a backend login used — the password, else the md5 hash, else the SCRAM verifier a client
/// proved its key against (the key is H⁻¹ of its StoredKey, so the verifier names it), each in its own domain —
/// without holding it: an HMAC under a key drawn once per process. A connection keeps the tag of the login that opened
/// it; a client's tag, computed once per session, must match before the client is given that connection.
/// </summary>
internal sealed class CredentialTag
{
    private static readonly byte[] ProcessKey = RandomNumberGenerator.GetBytes(32);

    private readonly byte[] _mac;

    private CredentialTag(byte[] mac) => _mac = mac;

    /// <summary>The tag of <paramref name="credential"/>; null when there is nothing to name (no credential: a trust login).</summary>
    public static CredentialTag? Of(StoredCredential? credential)
    {
        var text = credential switch
        {
            { Password: { } password } => "password\0" + password.Reveal(),
            { Md5Hash: { } hash } => "md5 hash\0" + hash.Reveal(),
            { ClientKey: { } key } => "scram key\0" + key.Verifier.Iterations.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\0"
                                      + Convert.ToBase64String(key.Verifier.Salt) + "\0" + Convert.ToBase64String(key.Verifier.StoredKey),
            _ => null,
        };
        if (text is null)
        {
            return null;
        }

        var bytes = Encoding.UTF8.GetBytes(text);
        try
        {
            return new CredentialTag(HMACSHA256.HashData(ProcessKey, bytes));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    /// <summary>Whether both name the same credential (compared in constant time).</summary>
    public bool Matches(CredentialTag other) => CryptographicOperations.FixedTimeEquals(_mac, other._mac);

    public override string ToString() => "***";
}
