using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;

namespace Poold.Auth;

/// <summary>
/// A SCRAM-SHA-256 verifier as PostgreSQL stores it: <c>SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey</c>
/// (salt and keys in base64). Enough to check a client's proof; not enough to log in anywhere.
/// </summary>
internal sealed class ScramVerifier
{
    public const int DefaultIterations = 4096;
    private const int MaxIterations = 1 << 20;

    /// <summary>Verifiers made from passwords, by user and password hash, so a connection storm pays PBKDF2 once.</summary>
    private static readonly ConcurrentDictionary<string, ScramVerifier> Derived = new(StringComparer.Ordinal);
    private const int MaxDerived = 4096;

    /// <summary>
    /// This process's secret for salts (PostgreSQL's <c>mock_auth_nonce</c>): drawn once, never shown. A salt derived from
    /// it and the user name is the same on every attempt, for users with a stored password and for unknown users alike.
    /// </summary>
    private static readonly byte[] SaltSecret = RandomNumberGenerator.GetBytes(32);

    private ScramVerifier(int iterations, byte[] salt, byte[] storedKey, byte[] serverKey)
    {
        Iterations = iterations;
        Salt = salt;
        StoredKey = storedKey;
        ServerKey = serverKey;
    }

    public int Iterations { get; }

    public byte[] Salt { get; }

    public byte[] StoredKey { get; }

    public byte[] ServerKey { get; }

    public static bool TryParse(string text, out ScramVerifier verifier)
    {
        verifier = null!;
        var parts = text.Split('$');
        if (parts.Length != 3 || parts[0] != ScramSha256.Mechanism)
        {
            return false;
        }

        var head = parts[1].Split(':');
        var keys = parts[2].Split(':');
        if (head.Length != 2 || keys.Length != 2
            || !int.TryParse(head[0], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations) || iterations is < 1 or > MaxIterations)
        {
            return false;
        }

        try
        {
            var salt = Convert.FromBase64String(head[1]);
            var stored = Convert.FromBase64String(keys[0]);
            var server = Convert.FromBase64String(keys[1]);
            if (salt.Length == 0 || stored.Length != 32 || server.Length != 32)
            {
                return false;
            }

            verifier = new ScramVerifier(iterations, salt, stored, server);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>A verifier for <paramref name="password"/> with the given salt (SASLprep applied as PostgreSQL does).</summary>
    public static ScramVerifier Create(string password, byte[] salt, int iterations)
    {
        var salted = ScramSha256.SaltedPassword(SaslPrep.Prepare(password), salt, iterations);
        try
        {
            return new ScramVerifier(iterations, salt, ScramSha256.StoredKey(ScramSha256.ClientKey(salted)), ScramSha256.ServerKey(salted));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(salted);
        }
    }

    /// <summary>
    /// A verifier for a stored password, salted with <see cref="SaltFor"/>: the same salt on every login, as for a
    /// verifier PostgreSQL stores, and the same as <see cref="Mock"/> gives a user without one. Cached per user and
    /// password, so a storm of logins costs one PBKDF2.
    /// </summary>
    public static ScramVerifier ForPassword(string user, Secret password, int iterations = DefaultIterations)
    {
        var cacheKey = user + "\0" + Convert.ToBase64String(SHA256.HashData(ScramSha256.Utf8(password.Reveal()))) + "\0"
                       + iterations.ToString(CultureInfo.InvariantCulture);
        if (Derived.TryGetValue(cacheKey, out var cached))
        {
            return cached;
        }

        var verifier = Create(password.Reveal(), SaltFor(user), iterations);
        if (Derived.Count >= MaxDerived)
        {
            Derived.Clear();
        }

        Derived[cacheKey] = verifier;
        return verifier;
    }

    /// <summary>The iteration count of the last verifier auth_query returned (PostgreSQL's default until one is seen).</summary>
    private static int _authQueryIterations = DefaultIterations;

    /// <summary>auth_query returned a verifier with <paramref name="iterations"/>: unknown users are offered the same count.</summary>
    public static void NoteAuthQueryIterations(int iterations) => Volatile.Write(ref _authQueryIterations, iterations);

    /// <summary>
    /// PostgreSQL's mock verifier: what a user without a usable stored password is challenged with, so that the exchange
    /// looks like a real one (same salt on each attempt) and fails only at the proof; no proof matches it. It also costs
    /// what a known user's verifier costs, so the time to the 28P01 says nothing either:
    /// <list type="bullet">
    /// <item>like a pool_passwd password (<paramref name="likeAuthQuery"/> false): the default iteration count, and one
    /// PBKDF2 per user name, cached as <see cref="ForPassword"/> caches a stored password's;</item>
    /// <item>like an auth_query verifier: no PBKDF2 (the database stores the keys), and the iteration count the database's
    /// verifiers have (the last one seen).</item>
    /// </list>
    /// </summary>
    public static ScramVerifier Mock(string user, bool likeAuthQuery = false)
    {
        if (likeAuthQuery)
        {
            return new(Volatile.Read(ref _authQueryIterations), SaltFor(user), RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));
        }

        // A password nobody knows (it is never shown, and differs per process), derived like a real one.
        var password = Convert.ToBase64String(HMACSHA256.HashData(SaltSecret, ScramSha256.Utf8("SCRAM mock password\0" + user)));
        return ForPassword(user, new Secret(password));
    }

    /// <summary>A 16-byte salt for <paramref name="user"/>: HMAC-SHA-256 of the name under this process's secret.</summary>
    public static byte[] SaltFor(string user) =>
        HMACSHA256.HashData(SaltSecret, ScramSha256.Utf8("SCRAM salt\0" + user)).AsSpan(0, 16).ToArray();

    /// <summary>Checks a cleartext password against the verifier.</summary>
    public bool Matches(string password)
    {
        var candidate = Create(password, Salt, Iterations);
        return CryptographicOperations.FixedTimeEquals(candidate.StoredKey, StoredKey)
               && CryptographicOperations.FixedTimeEquals(candidate.ServerKey, ServerKey);
    }

    public override string ToString() => $"SCRAM-SHA-256$verifier(i={Iterations})";
}
