using System.Buffers.Binary;
using System.Text;

namespace Poold.Protocol;

internal enum StartupKind
{
    Startup,
    SslRequest,
    GssEncRequest,
    CancelRequest,
}

/// <summary>
/// The untyped first packet of a connection: <c>int32 length</c> (itself included), <c>int32 code</c>, then for a
/// StartupMessage name/value C-string pairs ended by an empty name, for a CancelRequest <c>int32 pid, int32 key</c>.
/// </summary>
internal sealed record StartupPacket(StartupKind Kind, int ProtocolVersion, IReadOnlyList<KeyValuePair<string, string>> Parameters,
    int CancelProcessId = 0, int CancelSecretKey = 0)
{
    /// <summary>PostgreSQL's MAX_STARTUP_PACKET_LENGTH: checked before the body is read.</summary>
    public const int MaxLength = 10_000;

    public int MajorVersion => ProtocolVersion >> 16;

    public int MinorVersion => ProtocolVersion & 0xFFFF;

    public string? this[string name]
    {
        get
        {
            foreach (var (key, value) in Parameters)
            {
                if (key == name)
                {
                    return value;
                }
            }

            return null;
        }
    }

    /// <summary>Validates the 4-byte length read first; throws <see cref="PgProtocolException"/> when it is absurd.</summary>
    public static int CheckLength(ReadOnlySpan<byte> header)
    {
        var length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length < 8 || length > MaxLength)
        {
            throw new PgProtocolException(SqlState.ProtocolViolation, $"invalid length of startup packet: {length}");
        }

        return length;
    }

    /// <summary>Parses the packet after its length word: <paramref name="body"/> starts with the request code.</summary>
    public static StartupPacket Parse(ReadOnlySpan<byte> body)
    {
        var code = BinaryPrimitives.ReadInt32BigEndian(body);
        switch (code)
        {
            case StartupCode.SslRequest:
                return ExactLength(body, 4, new StartupPacket(StartupKind.SslRequest, code, []));
            case StartupCode.GssEncRequest:
                return ExactLength(body, 4, new StartupPacket(StartupKind.GssEncRequest, code, []));
            case StartupCode.CancelRequest:
                var cancel = ExactLength(body, 12, new StartupPacket(StartupKind.CancelRequest, code, []));
                return cancel with
                {
                    CancelProcessId = BinaryPrimitives.ReadInt32BigEndian(body[4..]),
                    CancelSecretKey = BinaryPrimitives.ReadInt32BigEndian(body[8..]),
                };
        }

        if (code >> 16 != 3)
        {
            throw new PgProtocolException(SqlState.FeatureNotSupported,
                $"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0 to 3.0");
        }

        return new StartupPacket(StartupKind.Startup, code, ParseParameters(body[4..]));
    }

    private static StartupPacket ExactLength(ReadOnlySpan<byte> body, int expected, StartupPacket packet) =>
        body.Length == expected
            ? packet
            : throw new PgProtocolException(SqlState.ProtocolViolation, $"invalid length of {packet.Kind} packet: {body.Length + 4}");

    private static List<KeyValuePair<string, string>> ParseParameters(ReadOnlySpan<byte> s)
    {
        var result = new List<KeyValuePair<string, string>>();
        while (true)
        {
            var nameEnd = s.IndexOf((byte)0);
            if (nameEnd < 0)
            {
                throw new PgProtocolException(SqlState.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte");
            }

            if (nameEnd == 0)
            {
                if (s.Length != 1)
                {
                    throw new PgProtocolException(SqlState.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte");
                }

                return result;
            }

            var name = StringInterner.Intern(Encoding.UTF8.GetString(s[..nameEnd]));
            s = s[(nameEnd + 1)..];
            var valueEnd = s.IndexOf((byte)0);
            if (valueEnd < 0)
            {
                throw new PgProtocolException(SqlState.ProtocolViolation, $"invalid startup packet layout: no value for \"{name}\"");
            }

            var value = StringInterner.Intern(Encoding.UTF8.GetString(s[..valueEnd]));
            s = s[(valueEnd + 1)..];
            var existing = result.FindIndex(p => p.Key == name);
            if (existing >= 0)
            {
                result[existing] = new(name, value);
            }
            else
            {
                result.Add(new(name, value));
            }
        }
    }
}
