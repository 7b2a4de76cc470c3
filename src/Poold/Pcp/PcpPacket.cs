using System.Buffers.Binary;
using System.Text;

namespace Poold.Pcp;

/// <summary>
/// PCP framing, both directions (compat §4.1): one tag byte, an Int32 big-endian length that counts itself and the
/// body but not the tag, then the body — NUL-terminated ASCII strings, except the binary count of the pool-status
/// reply. Shared by the server and the pcp_* tools.
/// </summary>
internal static class PcpPacket
{
    /// <summary>pgpool-II's server refuses requests of this length or more.</summary>
    public const int MaxRequestLength = 260;

    public const string CommandComplete = "CommandComplete";

    /// <summary>A packet of NUL-terminated strings.</summary>
    public static byte[] Strings(byte tag, params string?[] values)
    {
        var body = new List<byte>();
        foreach (var value in values)
        {
            body.AddRange(Encoding.UTF8.GetBytes(value ?? ""));
            body.Add(0);
        }

        return Frame(tag, [.. body]);
    }

    public static byte[] Frame(byte tag, ReadOnlySpan<byte> body)
    {
        var packet = new byte[5 + body.Length];
        packet[0] = tag;
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(1), 4 + body.Length);
        body.CopyTo(packet.AsSpan(5));
        return packet;
    }

    /// <summary>The pool-status header: "ArraySize\0" then the count as a binary Int32.</summary>
    public static byte[] BinaryArraySize(byte tag, int count)
    {
        var body = new byte[10 + 4];
        Encoding.ASCII.GetBytes("ArraySize").CopyTo(body, 0);
        BinaryPrimitives.WriteInt32BigEndian(body.AsSpan(10), count);
        return Frame(tag, body);
    }

    /// <summary>An error or notice: PostgreSQL-style fields S, C (always XX000), M, D, then a final NUL.</summary>
    public static byte[] Error(string severity, string message, string? detail = null, byte tag = (byte)'E')
    {
        var body = new List<byte>();
        void Field(char code, string value)
        {
            body.Add((byte)code);
            body.AddRange(Encoding.UTF8.GetBytes(value));
            body.Add(0);
        }

        Field('S', severity);
        Field('C', "XX000");
        Field('M', message);
        if (detail is not null)
        {
            Field('D', detail);
        }

        body.Add(0);
        return Frame(tag, [.. body]);
    }

    /// <summary>Splits a body into its NUL-terminated strings (a trailing part without NUL counts as one).</summary>
    public static List<string> SplitStrings(ReadOnlySpan<byte> body)
    {
        var values = new List<string>();
        while (body.Length > 0)
        {
            var end = body.IndexOf((byte)0);
            if (end < 0)
            {
                values.Add(Encoding.UTF8.GetString(body));
                break;
            }

            values.Add(Encoding.UTF8.GetString(body[..end]));
            body = body[(end + 1)..];
        }

        return values;
    }

    /// <summary>Error fields of an 'E' or 'N' body by code.</summary>
    public static Dictionary<char, string> ErrorFields(ReadOnlySpan<byte> body)
    {
        var fields = new Dictionary<char, string>();
        foreach (var field in SplitStrings(body))
        {
            if (field.Length > 0)
            {
                fields[field[0]] = field[1..];
            }
        }

        return fields;
    }

    /// <summary>Reads one packet from a stream; null at a clean end of stream.</summary>
    public static async Task<(byte Tag, byte[] Body)?> ReadAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        var header = new byte[5];
        var read = 0;
        while (read < header.Length)
        {
            var n = await stream.ReadAsync(header.AsMemory(read), cancellationToken);
            if (n == 0)
            {
                return read == 0 ? null : throw new EndOfStreamException("connection closed in the middle of a PCP packet");
            }

            read += n;
        }

        var length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
        if (length < 4 || length >= maxLength)
        {
            throw new PcpProtocolException(length);
        }

        var body = new byte[length - 4];
        await stream.ReadExactlyAsync(body, cancellationToken);
        return (header[0], body);
    }
}

/// <summary>A packet whose length is out of bounds (pgpool: "invalid PCP packet / incorrect packet length").</summary>
internal sealed class PcpProtocolException(int length) : Exception($"incorrect packet length ({length})")
{
    public int Length { get; } = length;
}
