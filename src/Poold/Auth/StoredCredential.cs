namespace Poold.Auth;

/// <summary>
/// What Poold knows about a user's password from pool_passwd: the password itself (AES or TEXT entries), its md5 hash,
/// or a SCRAM verifier (from pool_passwd or auth_query), and, once a client has proven it, the SCRAM ClientKey. Each
/// form can verify some client methods and answer some backend methods (compat §1.2).
/// </summary>
internal sealed class StoredCredential
{
    private StoredCredential(Secret? password, Secret? md5Hash, ScramVerifier? verifier, ScramClientKey? clientKey = null)
    {
        Password = password;
        Md5Hash = md5Hash;
        Verifier = verifier;
        ClientKey = clientKey;
    }

    /// <summary>The password itself: serves every method both ways.</summary>
    public Secret? Password { get; }

    /// <summary><c>md5</c> + hex(md5(password ‖ user)): verifies md5 and cleartext clients, answers md5 backends.</summary>
    public Secret? Md5Hash { get; }

    /// <summary>A SCRAM-SHA-256 verifier: verifies SCRAM and cleartext clients only.</summary>
    public ScramVerifier? Verifier { get; }

    /// <summary>The ClientKey a client proved against <see cref="Verifier"/>: answers SCRAM backends that store that verifier, nothing else.</summary>
    public ScramClientKey? ClientKey { get; }

    public static StoredCredential FromPassword(Secret password) => new(password, null, null);

    public static StoredCredential FromMd5Hash(string hash) => new(null, new Secret(hash), null);

    public static StoredCredential FromScramVerifier(ScramVerifier verifier) => new(null, null, verifier);

    public static StoredCredential FromScramClientKey(ScramClientKey key) => new(null, null, key.Verifier, key);

    /// <summary>The md5 hash for <paramref name="user"/>, from the password or the stored hash.</summary>
    public string? Md5For(string user) => Password is not null ? Md5Password.Hash(Password.Reveal(), user) : Md5Hash?.Reveal();

    /// <summary>Checks a cleartext password given by a client, in constant time.</summary>
    public bool Matches(string password, string user)
    {
        if (Password is not null)
        {
            return FixedTime.Equals(Password.Reveal(), password);
        }

        if (Md5Hash is not null)
        {
            return FixedTime.Equals(Md5Hash.Reveal(), Md5Password.Hash(password, user));
        }

        return Verifier is not null && Verifier.Matches(password);
    }
}
