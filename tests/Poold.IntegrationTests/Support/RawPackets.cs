using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Poold.IntegrationTests.Support;

/// <summary>Bytes of the PostgreSQL protocol for raw-socket clients, and reading what comes back.</summary>
internal static class RawPackets
{
    public const int ProtocolVersion3 = 196608;
    public const int SslRequestCode = 80877103;

    public static byte[] Startup(string user, string database)
    {
        var body = new List<byte>();
        foreach (var s in new[] { "user", user, "database", database })
        {
            body.AddRange(Encoding.UTF8.GetBytes(s));
            body.Add(0);
        }

        body.Add(0);
        var packet = new byte[8 + body.Count];
        BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), ProtocolVersion3);
        body.CopyTo(packet, 8);
        return packet;
    }

    public static byte[] SslRequest()
    {
        var packet = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(packet, 8);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), SslRequestCode);
        return packet;
    }

    /// <summary>A simple Query message.</summary>
    public static byte[] Query(string sql)
    {
        var text = Encoding.UTF8.GetBytes(sql);
        var message = new byte[1 + 4 + text.Length + 1];
        message[0] = (byte)'Q';
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + text.Length + 1);
        text.CopyTo(message, 5);
        return message;
    }

    public static readonly byte[] Terminate = [(byte)'X', 0, 0, 0, 4];

    /// <summary>
    /// Reads messages until ReadyForQuery ("Z") or an ErrorResponse ("E:" + SQLSTATE), or "EOF" when the server closed
    /// first; throws OperationCanceledException at the deadline.
    /// </summary>
    public static async Task<string> ReadOutcomeAsync(Socket socket, CancellationToken cancellationToken)
    {
        var header = new byte[5];
        while (true)
        {
            if (!await ReadExactlyAsync(socket, header, cancellationToken))
            {
                return "EOF";
            }

            var body = new byte[BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1)) - 4];
            if (!await ReadExactlyAsync(socket, body, cancellationToken))
            {
                return "EOF";
            }

            switch ((char)header[0])
            {
                case 'Z':
                    return "Z";
                case 'E':
                    return "E:" + ErrorField(body, 'C');
            }
        }
    }

    /// <summary>One field of an ErrorResponse body ('C' SQLSTATE, 'M' message).</summary>
    public static string ErrorField(byte[] body, char field)
    {
        for (var i = 0; i < body.Length && body[i] != 0;)
        {
            var end = Array.IndexOf(body, (byte)0, i + 1);
            if ((char)body[i] == field)
            {
                return Encoding.UTF8.GetString(body, i + 1, end - i - 1);
            }

            i = end + 1;
        }

        return "";
    }

    /// <summary>False when the peer closed before <paramref name="buffer"/> was filled.</summary>
    public static async Task<bool> ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer[read..], cancellationToken);
            }
            catch (SocketException)
            {
                return false;
            }

            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return true;
    }

    /// <summary>True when the server closes the connection (EOF or reset) before the deadline; false when it is still open then.</summary>
    public static async Task<bool> IsClosedByServerAsync(Socket socket, TimeSpan within)
    {
        using var deadline = new CancellationTokenSource(within);
        var buffer = new byte[1024];
        try
        {
            while (await socket.ReceiveAsync(buffer, deadline.Token) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
