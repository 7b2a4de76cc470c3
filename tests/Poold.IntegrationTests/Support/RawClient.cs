using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Poold.IntegrationTests.Support;

/// <summary>
/// A PostgreSQL client at the byte level, for sequences real drivers send but cannot be made to send on demand
/// (libpq's second Sync after COPY in extended mode, pipelines with Flush, leaving in the middle of a result).
/// </summary>
internal sealed class RawClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly List<byte> _pending = [];

    private RawClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
    }

    /// <summary>Connects without TLS and logs in as a trust user; returns after the first ReadyForQuery.</summary>
    public static async Task<RawClient> ConnectAsync(int port, string user, string database, string applicationName)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync("127.0.0.1", port);
        var client = new RawClient(socket);
        var body = new List<byte>();
        foreach (var s in new[] { "user", user, "database", database, "application_name", applicationName })
        {
            body.AddRange(Encoding.UTF8.GetBytes(s));
            body.Add(0);
        }

        body.Add(0);
        var packet = new byte[8 + body.Count];
        BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), 196608);
        body.CopyTo(packet, 8);
        await client.SendAsync(packet);
        var login = await client.ReadUntilReadyAsync();
        client.Login = login;
        if (login.Any(m => m.Code == 'E'))
        {
            throw new InvalidOperationException("login failed: " + login.First(m => m.Code == 'E').Text);
        }

        if (login.FirstOrDefault(m => m.Code == 'K') is { Body.Length: 8 } key)
        {
            client.BackendKey = (BinaryPrimitives.ReadInt32BigEndian(key.Body), BinaryPrimitives.ReadInt32BigEndian(key.Body.AsSpan(4)));
        }

        return client;
    }

    public Socket Socket => _socket;

    /// <summary>What the server sent at login, up to its first ReadyForQuery (AuthenticationOk, ParameterStatus …).</summary>
    public IReadOnlyList<BackendMessage> Login { get; private set; } = [];

    /// <summary>The ParameterStatus values of the login, by name.</summary>
    public IReadOnlyDictionary<string, string> LoginParameters =>
        Login.Where(m => m.Code == 'S').Select(m => m.Text.Split('|')).ToDictionary(f => f[0], f => f[1]);

    /// <summary>The BackendKeyData of the login: the process id and secret a CancelRequest for this session carries.</summary>
    public (int ProcessId, int Secret) BackendKey { get; private set; }

    /// <summary>Sends a CancelRequest for this session to <paramref name="port"/> (any Poold) and waits until that one closes.</summary>
    public async Task CancelThroughAsync(int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", port);
        var packet = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(packet, 16);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), 80877102);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(8), BackendKey.ProcessId);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(12), BackendKey.Secret);
        await socket.SendAsync(packet);
        var sink = new byte[16];
        while (await socket.ReceiveAsync(sink) > 0)
        {
        }
    }

    public async Task SendAsync(params byte[][] messages)
    {
        foreach (var m in messages)
        {
            await _stream.WriteAsync(m);
        }

        await _stream.FlushAsync();
    }

    public static byte[] Message(char code, params byte[][] parts)
    {
        var length = 4 + parts.Sum(p => p.Length);
        var frame = new byte[1 + length];
        frame[0] = (byte)code;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), length);
        var at = 5;
        foreach (var p in parts)
        {
            p.CopyTo(frame, at);
            at += p.Length;
        }

        return frame;
    }

    public static byte[] CString(string s) => [.. Encoding.UTF8.GetBytes(s), 0];

    public static byte[] Int16(short v)
    {
        var b = new byte[2];
        BinaryPrimitives.WriteInt16BigEndian(b, v);
        return b;
    }

    public static byte[] Query(string sql) => Message('Q', CString(sql));

    public static byte[] Parse(string name, string sql) => Message('P', CString(name), CString(sql), Int16(0));

    /// <summary>Bind with no parameters; <paramref name="binaryResults"/> asks for every column in binary.</summary>
    public static byte[] Bind(string portal, string statement, bool binaryResults = false) =>
        Message('B', CString(portal), CString(statement), Int16(0), Int16(0), binaryResults ? [.. Int16(1), .. Int16(1)] : Int16(0));

    public static byte[] DescribePortal(string portal) => Message('D', [(byte)'P'], CString(portal));

    public static byte[] Execute(string portal) => Message('E', CString(portal), [0, 0, 0, 0]);

    public static byte[] Sync() => Message('S');

    public static byte[] Flush() => Message('H');

    public static byte[] CopyData(string text) => Message('d', Encoding.UTF8.GetBytes(text));

    public static byte[] CopyDone() => Message('c');

    /// <summary>Reads whole messages until one of <paramref name="codes"/> arrives (included), within <paramref name="timeout"/>.</summary>
    public async Task<List<BackendMessage>> ReadUntilAsync(string codes, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        var messages = new List<BackendMessage>();
        var buffer = new byte[65536];
        while (true)
        {
            while (TryTake(out var message))
            {
                messages.Add(message);
                if (codes.Contains(message.Code, StringComparison.Ordinal))
                {
                    return messages;
                }
            }

            int n;
            try
            {
                n = await _stream.ReadAsync(buffer, cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"no '{codes}' within the time limit; got: {string.Join(", ", messages.Select(m => m.ToString()))}");
            }

            if (n == 0)
            {
                throw new EndOfStreamException($"Poold closed the connection; got: {string.Join(", ", messages.Select(m => m.ToString()))}");
            }

            _pending.AddRange(buffer.AsSpan(0, n).ToArray());
        }
    }

    public Task<List<BackendMessage>> ReadUntilReadyAsync(TimeSpan? timeout = null) => ReadUntilAsync("Z", timeout);

    /// <summary>Reads raw bytes until at least <paramref name="count"/> have come (the rest of a result, unparsed).</summary>
    public async Task ReadBytesAsync(int count)
    {
        var buffer = new byte[65536];
        var total = _pending.Count;
        _pending.Clear();
        while (total < count)
        {
            var n = await _stream.ReadAsync(buffer);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            total += n;
        }
    }

    /// <summary>Closes the connection at once (RST), as a killed client would.</summary>
    public void Abort()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    private bool TryTake(out BackendMessage message)
    {
        message = default;
        if (_pending.Count < 5)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadInt32BigEndian([.. _pending.GetRange(1, 4)]);
        if (_pending.Count < 1 + length)
        {
            return false;
        }

        message = new BackendMessage((char)_pending[0], [.. _pending.GetRange(5, length - 4)]);
        _pending.RemoveRange(0, 1 + length);
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}

/// <summary>One message from Poold: its type and body.</summary>
internal readonly record struct BackendMessage(char Code, byte[] Body)
{
    /// <summary>The body as text (error fields joined, NULs as '|').</summary>
    public string Text => Encoding.UTF8.GetString(Body).Replace('\0', '|');

    /// <summary>A DataRow's first column as text.</summary>
    public string FirstColumn => Encoding.UTF8.GetString(Body, 6, BinaryPrimitives.ReadInt32BigEndian(Body.AsSpan(2)));

    /// <summary>An ErrorResponse's SQLSTATE.</summary>
    public string SqlState => Text.Split('|').First(f => f.StartsWith('C'))[1..];

    public override string ToString() => Code is 'E' or 'C' or 'N' ? $"{Code}({Text})" : Code.ToString();
}
