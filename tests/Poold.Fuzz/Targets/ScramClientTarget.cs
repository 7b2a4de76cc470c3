using System.Globalization;
using System.Text;
using Poold.Auth;

namespace Poold.Fuzz.Targets;

/// <summary>
/// Poold's SCRAM client (logging in to a backend) against a server: input is a flags byte (bit 0: the backend
/// connection is TLS; bit 1: the server offers SCRAM-SHA-256-PLUS), the server-first-message, a NUL, then the
/// server-final-message. The client nonce is fixed so that an input can extend it. Bad messages throw
/// <see cref="ScramException"/>.
/// </summary>
internal static class ScramClientTarget
{
    public const string ClientNonce = "rOprNGfwEbeRWgbNEkqO";

    /// <summary>
    /// Inputs asking for more PBKDF2 iterations than this are skipped: the client computes up to
    /// ScramClientExchange.MaxIterations (a million), which is slow by design, not a defect, and would starve the fuzzer.
    /// </summary>
    private const int MaxIterations = 4096;

    private static readonly byte[] CertificateHash = [.. Enumerable.Range(0, 32).Select(i => (byte)(255 - i))];

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        var flags = input[0];
        var (first, final, hasFinal) = FuzzInput.SplitAtNul(input[1..]);
        if (AsksTooManyIterations(first.Span))
        {
            return;
        }

        var exchange = new ScramClientExchange("pencil", (flags & 1) != 0 ? CertificateHash : null, ClientNonce);
        try
        {
            exchange.ChooseMechanism((flags & 2) != 0 ? [ScramSha256.MechanismPlus, ScramSha256.Mechanism] : [ScramSha256.Mechanism]);
            _ = exchange.ClientFirstMessage();
            var clientFinal = exchange.HandleServerFirst(first.Span);
            if (clientFinal.Length == 0)
            {
                throw new FuzzInvariantException("empty client-final-message");
            }

            if (hasFinal)
            {
                exchange.VerifyServerFinal(final.Span);
            }
        }
        catch (ScramException)
        {
        }
    }

    private static bool AsksTooManyIterations(ReadOnlySpan<byte> serverFirst)
    {
        foreach (var attribute in Encoding.UTF8.GetString(serverFirst).Split(','))
        {
            if (attribute.StartsWith("i=", StringComparison.Ordinal)
                && int.TryParse(attribute.AsSpan(2), NumberStyles.None, CultureInfo.InvariantCulture, out var iterations) && iterations > MaxIterations)
            {
                return true;
            }
        }

        return false;
    }
}
