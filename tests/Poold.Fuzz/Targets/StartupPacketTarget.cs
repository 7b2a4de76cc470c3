using Poold.Protocol;

namespace Poold.Fuzz.Targets;

/// <summary>
/// The untyped packets before a session starts, read as ClientSession.NegotiateAsync reads them: a 4-byte length
/// checked first, then exactly that many bytes parsed. Several packets may follow one another (SSLRequest, then the
/// StartupMessage). Bad packets throw <see cref="PgProtocolException"/>.
/// </summary>
internal static class StartupPacketTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        try
        {
            while (input.Length >= 4)
            {
                var length = StartupPacket.CheckLength(input[..4]);
                if (input.Length < length)
                {
                    return; // the client stopped sending: ReadExactlyAsync ends the session
                }

                var packet = StartupPacket.Parse(input[4..length]);
                input = input[length..];
                if (packet.Kind == StartupKind.Startup)
                {
                    _ = (packet["user"], packet["database"], packet.MajorVersion, packet.MinorVersion, packet.Parameters.Count);
                    return;
                }
            }
        }
        catch (PgProtocolException)
        {
        }
    }
}
