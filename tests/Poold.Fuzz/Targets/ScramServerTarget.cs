using Poold.Auth;

namespace Poold.Fuzz.Targets;

/// <summary>
/// Poold's SCRAM server against a client: input is a flags byte (bit 0: the client is on TLS, so PLUS is offered;
/// bit 1: the client selects SCRAM-SHA-256-PLUS), the client-first-message, a NUL, then the client-final-message.
/// The server nonce is fixed so that an input can echo it. Bad messages throw <see cref="ScramException"/>.
/// </summary>
internal static class ScramServerTarget
{
    public const string ServerNonce = "3rfcNHYJY1ZVvWVs7j";

    /// <summary>Derived once: PBKDF2 per input would leave the fuzzer a few executions a second.</summary>
    private static readonly ScramVerifier Verifier = ScramVerifier.Create("pencil", Convert.FromBase64String("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);

    private static readonly byte[] CertificateHash = [.. Enumerable.Range(0, 32).Select(i => (byte)i)];

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        var flags = input[0];
        var (first, final, hasFinal) = FuzzInput.SplitAtNul(input[1..]);
        var exchange = new ScramServerExchange(Verifier, (flags & 1) != 0 ? CertificateHash : null, ServerNonce);
        var mechanism = (flags & 2) != 0 ? ScramSha256.MechanismPlus : ScramSha256.Mechanism;
        try
        {
            var serverFirst = exchange.HandleClientFirst(mechanism, first.Span);
            if (serverFirst.Length == 0)
            {
                throw new FuzzInvariantException("empty server-first-message");
            }

            if (hasFinal && exchange.HandleClientFinal(final.Span, out var serverFinal) && (exchange.ClientKey is null || serverFinal.Length == 0))
            {
                throw new FuzzInvariantException("a proof was accepted without a client key or server signature");
            }
        }
        catch (ScramException)
        {
        }
    }
}
