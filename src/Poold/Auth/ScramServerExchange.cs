using System.Security.Cryptography;
using System.Text;

namespace Poold.Auth;

/// <summary>
/// The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802 §5, RFC 7677) as PostgreSQL runs it: the user
/// name in the client-first-message is ignored (the startup packet's counts), an authorization identity is refused,
/// and a client that could bind to the channel but saw no PLUS offer where one was made is refused (downgrade).
/// Nothing secret leaves this class except through <see cref="ClientKey"/>.
/// </summary>
internal sealed class ScramServerExchange
{
    private readonly ScramVerifier _verifier;
    private readonly byte[]? _channelBinding;
    private readonly string _serverNonce;
    private string? _gs2Header;
    private string? _clientFirstBare;
    private string? _serverFirst;
    private string? _nonce;
    private string _mechanism = "";
    private byte[] _proof = [];
    private byte[] _authMessage = [];

    /// <param name="channelBindingHash">Our certificate's tls-server-end-point hash when the client is on TLS (PLUS offered).</param>
    /// <param name="serverNonce">Tests only; otherwise 18 random bytes in base64.</param>
    public ScramServerExchange(ScramVerifier verifier, byte[]? channelBindingHash, string? serverNonce = null)
    {
        _verifier = verifier;
        _channelBinding = channelBindingHash;
        _serverNonce = serverNonce ?? Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));
    }

    /// <summary>What AuthenticationSASL offers, PLUS first when the channel allows it.</summary>
    public static IReadOnlyList<string> Mechanisms(bool plus) =>
        plus ? [ScramSha256.MechanismPlus, ScramSha256.Mechanism] : [ScramSha256.Mechanism];

    /// <summary>The client key proven by the client (available after a successful <see cref="HandleClientFinal"/>).</summary>
    public byte[]? ClientKey { get; private set; }

    /// <summary>The verifier <see cref="ClientKey"/> was proven against (the first one, or the one given to <see cref="RetryWith"/>).</summary>
    public ScramVerifier? ProvenVerifier { get; private set; }

    /// <summary>Reads the mechanism and client-first-message; returns server-first-message.</summary>
    public byte[] HandleClientFirst(string mechanism, ReadOnlySpan<byte> clientFirst)
    {
        _mechanism = mechanism;
        if (mechanism != ScramSha256.Mechanism && !(mechanism == ScramSha256.MechanismPlus && _channelBinding is not null))
        {
            throw new ScramException($"client selected an invalid SASL authentication mechanism \"{mechanism}\"");
        }

        var text = Encoding.UTF8.GetString(clientFirst);
        var first = text.IndexOf(',', StringComparison.Ordinal);
        var second = first < 0 ? -1 : text.IndexOf(',', first + 1);
        if (first < 0 || second < 0)
        {
            throw new ScramException("malformed SCRAM message: no GS2 header");
        }

        var flag = text[..first];
        var authzid = text[(first + 1)..second];
        if (authzid.Length > 0)
        {
            throw new ScramException("client uses authorization identity, but it is not supported");
        }

        switch (flag)
        {
            case "n":
                if (mechanism == ScramSha256.MechanismPlus)
                {
                    throw new ScramException("channel binding is required by SCRAM-SHA-256-PLUS but the client did not use it");
                }

                break;
            case "y":
                if (_channelBinding is not null)
                {
                    throw new ScramException("SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, and this server does (downgrade?)");
                }

                break;
            case "p=tls-server-end-point":
                if (mechanism != ScramSha256.MechanismPlus)
                {
                    throw new ScramException("the client requires channel binding but did not select SCRAM-SHA-256-PLUS");
                }

                break;
            default:
                throw new ScramException(flag.StartsWith("p=", StringComparison.Ordinal)
                    ? $"unsupported SCRAM channel-binding type \"{flag[2..]}\""
                    : "malformed SCRAM message: unexpected channel-binding flag");
        }

        _gs2Header = text[..(second + 1)];
        _clientFirstBare = text[(second + 1)..];
        string? clientNonce = null;
        foreach (var attribute in _clientFirstBare.Split(','))
        {
            if (attribute.StartsWith("r=", StringComparison.Ordinal))
            {
                clientNonce = attribute[2..];
            }
            else if (attribute.StartsWith("m=", StringComparison.Ordinal))
            {
                throw new ScramException("SCRAM mandatory extensions are not supported");
            }
        }

        if (!_clientFirstBare.StartsWith("n=", StringComparison.Ordinal) || string.IsNullOrEmpty(clientNonce)
            || clientNonce.Any(c => c is < '!' or > '~' || c == ','))
        {
            throw new ScramException("malformed SCRAM client-first-message");
        }

        _nonce = clientNonce + _serverNonce;
        _serverFirst = $"r={_nonce},s={Convert.ToBase64String(_verifier.Salt)},i={_verifier.Iterations}";
        return Encoding.UTF8.GetBytes(_serverFirst);
    }

    /// <summary>
    /// Checks channel binding, nonce and proof in client-final-message; returns server-final-message (<c>v=…</c>).
    /// A wrong password gives false: the caller answers 28P01 as PostgreSQL does.
    /// </summary>
    public bool HandleClientFinal(ReadOnlySpan<byte> clientFinal, out byte[] serverFinal)
    {
        serverFinal = [];
        if (_serverFirst is null)
        {
            throw new ScramException("SCRAM client-final-message before client-first-message");
        }

        var text = Encoding.UTF8.GetString(clientFinal);
        var proofAt = text.LastIndexOf(",p=", StringComparison.Ordinal);
        if (proofAt < 0)
        {
            throw new ScramException("malformed SCRAM client-final-message: no proof");
        }

        var withoutProof = text[..proofAt];
        string? binding = null, nonce = null;
        foreach (var attribute in withoutProof.Split(','))
        {
            if (attribute.StartsWith("c=", StringComparison.Ordinal))
            {
                binding = attribute[2..];
            }
            else if (attribute.StartsWith("r=", StringComparison.Ordinal))
            {
                nonce = attribute[2..];
            }
        }

        var expectedBinding = Encoding.UTF8.GetBytes(_gs2Header!);
        if (_gs2Header!.StartsWith('p'))
        {
            expectedBinding = [.. expectedBinding, .. _channelBinding!];
        }

        if (binding is null || !CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(binding),
                Encoding.ASCII.GetBytes(Convert.ToBase64String(expectedBinding))))
        {
            throw new ScramException(_gs2Header.StartsWith('p')
                ? "SCRAM channel binding check failed"
                : "unexpected SCRAM channel-binding attribute in client-final-message");
        }

        if (nonce != _nonce)
        {
            throw new ScramException("SCRAM nonce mismatch");
        }

        byte[] proof;
        try
        {
            proof = Convert.FromBase64String(text[(proofAt + 3)..]);
        }
        catch (FormatException)
        {
            throw new ScramException("malformed SCRAM proof");
        }

        if (proof.Length != 32)
        {
            throw new ScramException("malformed SCRAM proof: wrong length");
        }

        _proof = proof;
        _authMessage = Encoding.UTF8.GetBytes($"{_clientFirstBare},{_serverFirst},{withoutProof}");
        return Verify(_verifier, out serverFinal);
    }

    /// <summary>
    /// Checks the proof already received against <paramref name="fresh"/>, the user's verifier fetched again after the
    /// first did not match. Possible only when it has the salt and iteration count the client was challenged with (a
    /// new password gets a new salt: then the client must try again, against the new verifier).
    /// </summary>
    public bool RetryWith(ScramVerifier fresh, out byte[] serverFinal)
    {
        serverFinal = [];
        return _proof.Length > 0 && fresh.Iterations == _verifier.Iterations && fresh.Salt.AsSpan().SequenceEqual(_verifier.Salt)
               && Verify(fresh, out serverFinal);
    }

    /// <summary>ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage); the proof holds when H(ClientKey) = StoredKey.</summary>
    private bool Verify(ScramVerifier verifier, out byte[] serverFinal)
    {
        serverFinal = [];
        var clientSignature = ScramSha256.Hmac(verifier.StoredKey, _authMessage);
        var clientKey = ScramSha256.Xor(_proof, clientSignature);
        CryptographicOperations.ZeroMemory(clientSignature);
        if (!CryptographicOperations.FixedTimeEquals(ScramSha256.StoredKey(clientKey), verifier.StoredKey))
        {
            CryptographicOperations.ZeroMemory(clientKey);
            return false;
        }

        ClientKey = clientKey;
        ProvenVerifier = verifier;
        serverFinal = Encoding.UTF8.GetBytes("v=" + Convert.ToBase64String(ScramSha256.Hmac(verifier.ServerKey, _authMessage)));
        return true;
    }

    public override string ToString() => $"SCRAM server exchange ({_mechanism})";
}
