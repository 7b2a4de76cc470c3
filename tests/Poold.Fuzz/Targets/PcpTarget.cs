using Poold.Pcp;

namespace Poold.Fuzz.Targets;

/// <summary>
/// The bytes a PCP client sends, read packet by packet with the server's length limit as PcpServer reads them, each
/// body split into its strings (the request arguments) and error fields. A bad length throws
/// <see cref="PcpProtocolException"/>; a stream cut inside a packet, <see cref="EndOfStreamException"/>.
/// </summary>
internal static class PcpTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        using var stream = new MemoryStream(input.ToArray(), writable: false);
        try
        {
            while (PcpPacket.ReadAsync(stream, PcpPacket.MaxRequestLength, CancellationToken.None).GetAwaiter().GetResult() is var (tag, body))
            {
                if (body.Length >= PcpPacket.MaxRequestLength)
                {
                    throw new FuzzInvariantException($"a '{(char)tag}' packet of {body.Length} bytes passed the length limit");
                }

                _ = PcpPacket.SplitStrings(body);
                _ = PcpPacket.ErrorFields(body);
            }
        }
        catch (Exception e) when (e is PcpProtocolException or EndOfStreamException)
        {
        }
    }
}
