using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace Poold.Auth;

/// <summary>
/// The client side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802 §5, RFC 7677), as Poold uses it to log in to a
/// backend. With TLS, <c>tls-server-end-point</c> channel binding ties the proof to the server's certificate, so a
/// relay in the middle is detected even though backend certificates are not verified. It logs in either with the
/// password, or with a <see cref="ScramClientKey"/> a client proved to Poold: then the server must store the verifier the
/// key belongs to (same salt and iteration count), and its signature is checked with that verifier's ServerKey.
/// </summary>
internal sealed class ScramClientExchange
{
    /// <summary>PBKDF2 results by SHA-256(password ‖ salt ‖ iterations): a connection storm costs one derivation.</summary>
    private static readonly ConcurrentDictionary<string, byte[]> SaltedPasswords = new();
    private const int MaxCachedPasswords = 1024;

    /// <summary>
    /// The most PBKDF2 iterations a server may ask for (PostgreSQL's default is 4096). Each costs two HMACs on a socket
    /// thread before the server has proven anything, so an impostor asking for 2^31 would stall Poold for minutes.
    /// </summary>
    public const int MaxIterations = 1_000_000;

    private readonly string? _password;
    private readonly ScramClientKey? _key;
    private readonly byte[]? _channelBinding;
    private readonly string _clientNonce;
    private readonly string _user;
    private string _gs2Header = "n,,";
    private string? _clientFirstBare;
    private byte[]? _expectedServerSignature;

    /// <param name="channelBindingHash">The tls-server-end-point hash of the server certificate; null without TLS.</param>
    /// <param name="clientNonce">Tests only; otherwise 18 random bytes in base64.</param>
    /// <param name="user">PostgreSQL clients send an empty name (the server uses the startup user); tests use RFC values.</param>
    public ScramClientExchange(string password, byte[]? channelBindingHash, string? clientNonce = null, string user = "")
        : this(channelBindingHash, clientNonce, user)
    {
        _password = password;
    }

    /// <summary>Logs in with a key a client proved, never knowing the password.</summary>
    public ScramClientExchange(ScramClientKey key, byte[]? channelBindingHash, string? clientNonce = null, string user = "")
        : this(channelBindingHash, clientNonce, user)
    {
        _key = key;
    }

    private ScramClientExchange(byte[]? channelBindingHash, string? clientNonce, string user)
    {
        _channelBinding = channelBindingHash;
        _clientNonce = clientNonce ?? Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));
        _user = user;
    }

    public string ChooseMechanism(IReadOnlyList<string> offered)
    {
        if (_channelBinding is not null && offered.Contains(ScramSha256.MechanismPlus))
        {
            _gs2Header = "p=tls-server-end-point,,";
            return ScramSha256.MechanismPlus;
        }

        if (offered.Contains(ScramSha256.Mechanism))
        {
            // "y": the client could bind but the server did not offer it (RFC 5802 §6).
            _gs2Header = _channelBinding is not null ? "y,," : "n,,";
            return ScramSha256.Mechanism;
        }

        throw new ScramException($"the server offers no SASL mechanism Poold supports ({string.Join(", ", offered)})");
    }

    /// <summary>client-first-message: gs2-header, then <c>n=user,r=nonce</c>.</summary>
    public byte[] ClientFirstMessage()
    {
        _clientFirstBare = $"n={_user},r={_clientNonce}";
        return Encoding.UTF8.GetBytes(_gs2Header + _clientFirstBare);
    }

    /// <summary>Reads server-first-message (<c>r=…,s=…,i=…</c>) and returns client-final-message with the proof.</summary>
    public byte[] HandleServerFirst(ReadOnlySpan<byte> serverFirst)
    {
        var text = Encoding.UTF8.GetString(serverFirst);
        string? nonce = null, salt = null, iterations = null;
        foreach (var attribute in text.Split(','))
        {
            if (attribute.Length < 2 || attribute[1] != '=')
            {
                throw new ScramException("malformed SCRAM server-first-message");
            }

            switch (attribute[0])
            {
                case 'r':
                    nonce = attribute[2..];
                    break;
                case 's':
                    salt = attribute[2..];
                    break;
                case 'i':
                    iterations = attribute[2..];
                    break;
                case 'm':
                    throw new ScramException("SCRAM server-first-message has a mandatory extension Poold does not know");
            }
        }

        if (nonce is null || salt is null || iterations is null)
        {
            throw new ScramException("SCRAM server-first-message lacks r=, s= or i=");
        }

        if (!nonce.StartsWith(_clientNonce, StringComparison.Ordinal) || nonce.Length == _clientNonce.Length)
        {
            throw new ScramException("SCRAM server nonce does not extend the client nonce");
        }

        if (!int.TryParse(iterations, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i) || i < 1)
        {
            throw new ScramException($"invalid SCRAM iteration count \"{iterations}\"");
        }

        if (i > MaxIterations)
        {
            throw new ScramException(
                $"the server asks for {i} SCRAM iterations, more than the {MaxIterations} Poold computes (lower scram_iterations on the server and reset the password)");
        }

        byte[] saltBytes;
        try
        {
            saltBytes = Convert.FromBase64String(salt);
        }
        catch (FormatException)
        {
            throw new ScramException("SCRAM salt is not valid base64");
        }

        byte[] clientKey, storedKey, serverKey;
        if (_key is not null)
        {
            // The key is only good for the verifier it was proven against; another salt means another password.
            if (i != _key.Verifier.Iterations || !saltBytes.AsSpan().SequenceEqual(_key.Verifier.Salt))
            {
                throw new ScramException(
                    "the server's SCRAM salt or iteration count is not the one of the verifier the client proved its key against (was the password changed, and has this node replayed it yet?)");
            }

            clientKey = _key.Key.ToArray();
            storedKey = _key.Verifier.StoredKey;
            serverKey = _key.Verifier.ServerKey;
        }
        else
        {
            var salted = Salted(saltBytes, i);
            clientKey = ScramSha256.ClientKey(salted);
            storedKey = ScramSha256.StoredKey(clientKey);
            serverKey = ScramSha256.ServerKey(salted);
        }

        var binding = Encoding.UTF8.GetBytes(_gs2Header);
        if (_gs2Header.StartsWith('p'))
        {
            binding = [.. binding, .. _channelBinding!];
        }

        var clientFinalWithoutProof = $"c={Convert.ToBase64String(binding)},r={nonce}";
        var authMessage = Encoding.UTF8.GetBytes($"{_clientFirstBare},{text},{clientFinalWithoutProof}");
        var clientSignature = ScramSha256.Hmac(storedKey, authMessage);
        var proof = ScramSha256.Xor(clientKey, clientSignature);
        CryptographicOperations.ZeroMemory(clientKey);
        _expectedServerSignature = ScramSha256.Hmac(serverKey, authMessage);
        return Encoding.UTF8.GetBytes($"{clientFinalWithoutProof},p={Convert.ToBase64String(proof)}");
    }

    /// <summary>Checks server-final-message (<c>v=signature</c>, or <c>e=error</c>) in constant time.</summary>
    public void VerifyServerFinal(ReadOnlySpan<byte> serverFinal)
    {
        var text = Encoding.UTF8.GetString(serverFinal);
        if (text.StartsWith("e=", StringComparison.Ordinal))
        {
            throw new ScramException($"the server rejected the SCRAM exchange: {text[2..]}");
        }

        if (_expectedServerSignature is null || !text.StartsWith("v=", StringComparison.Ordinal))
        {
            throw new ScramException("malformed SCRAM server-final-message");
        }

        byte[] signature;
        try
        {
            signature = Convert.FromBase64String(text[2..].Split(',')[0]);
        }
        catch (FormatException)
        {
            throw new ScramException("SCRAM server signature is not valid base64");
        }

        if (!CryptographicOperations.FixedTimeEquals(signature, _expectedServerSignature))
        {
            throw new ScramException(
                "server signature does not match: the server does not know the password, or the connection is being intercepted");
        }
    }

    private byte[] Salted(byte[] salt, int iterations)
    {
        var prepared = SaslPrep.Prepare(_password!);
        var keyInput = new byte[prepared.Length + salt.Length + 4];
        prepared.CopyTo(keyInput, 0);
        salt.CopyTo(keyInput, prepared.Length);
        BitConverter.TryWriteBytes(keyInput.AsSpan(prepared.Length + salt.Length), iterations);
        var key = Convert.ToBase64String(SHA256.HashData(keyInput));
        CryptographicOperations.ZeroMemory(keyInput);
        if (SaltedPasswords.TryGetValue(key, out var cached))
        {
            return cached;
        }

        var salted = ScramSha256.SaltedPassword(prepared, salt, iterations);
        CryptographicOperations.ZeroMemory(prepared);
        if (SaltedPasswords.Count >= MaxCachedPasswords)
        {
            SaltedPasswords.Clear();
        }

        SaltedPasswords[key] = salted;
        return salted;
    }
}
