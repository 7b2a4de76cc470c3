using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Proxy;

/// <summary>A raw-socket client sending what real drivers never send: Poold answers like PostgreSQL and stays up.</summary>
public class RawProtocolTests
{
    private PooldInstance _poold = null!;

    [OneTimeSetUp]
    public async Task StartPoold() => _poold = await PooldInstance.StartAsync(ClusterFixture.Cluster, ssl: false);

    [OneTimeTearDown]
    public async Task StopPoold() => await _poold.DisposeAsync();

    private static byte[] Packet(int code, params string[] pairs)
    {
        var body = new List<byte>();
        foreach (var s in pairs)
        {
            body.AddRange(Encoding.UTF8.GetBytes(s));
            body.Add(0);
        }

        if (pairs.Length > 0 || code >> 16 == 3)
        {
            body.Add(0);
        }

        var packet = new byte[8 + body.Count];
        BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), code);
        body.CopyTo(packet, 8);
        return packet;
    }

    /// <summary>Sends <paramref name="data"/> and reads until Poold closes the connection (or <paramref name="until"/> bytes came).</summary>
    private async Task<byte[]> ExchangeAsync(byte[] data, int until = int.MaxValue)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", _poold.Port);
        await socket.SendAsync(data);
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (received.Count < until)
        {
            var n = await socket.ReceiveAsync(buffer, timeout.Token);
            if (n == 0)
            {
                break;
            }

            received.AddRange(buffer.AsSpan(0, n).ToArray());
        }

        return [.. received];
    }

    private static (char Severity, string Code, string Message) Error(byte[] response)
    {
        Assert.That(response, Is.Not.Empty, "an ErrorResponse, not a silent close");
        Assert.That((char)response[0], Is.EqualTo('E'));
        var fields = Encoding.UTF8.GetString(response, 5, response.Length - 5).Split('\0');
        string Field(char c) => fields.First(f => f.Length > 0 && f[0] == c)[1..];
        return (Field('S')[0], Field('C'), Field('M'));
    }

    [Test]
    public async Task AbsurdStartupLength_GetsProtocolViolation_AndOtherSessionsGoOn()
    {
        await using var bystander = await _poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        await using var tx = await bystander.BeginTransactionAsync();
        await new NpgsqlCommand("SELECT 1", bystander, tx).ExecuteScalarAsync();

        foreach (var length in new[] { 0x7fffffff, -1, 4, 10_001 })
        {
            var bad = new byte[8];
            BinaryPrimitives.WriteInt32BigEndian(bad, length);
            BinaryPrimitives.WriteInt32BigEndian(bad.AsSpan(4), 196608);
            var (severity, code, message) = Error(await ExchangeAsync(bad));
            Assert.That((severity, code), Is.EqualTo(('F', "08P01")), message);
            Assert.That(message, Does.StartWith("invalid length of startup packet"));
        }

        Assert.That(await new NpgsqlCommand("SELECT 2", bystander, tx).ExecuteScalarAsync(), Is.EqualTo(2), "the open transaction is untouched");
    }

    [Test]
    public async Task GarbageAfterStartup_IsAProtocolViolation()
    {
        var (severity, code, _) = Error(await ExchangeAsync(Packet(196608, "user", "")));
        Assert.That((severity, code), Is.EqualTo(('F', "28000")), "no user name");
    }

    [Test]
    public async Task Protocol2_IsRefused() =>
        Assert.That(Error(await ExchangeAsync(Packet(2 << 16, "user", "x"))).Code, Is.EqualTo("0A000"));

    [Test]
    public async Task SslRequest_WithSslOff_IsAnsweredN()
    {
        var answer = await ExchangeAsync(Packet(80877103), until: 1);
        Assert.That(answer, Is.EqualTo("N"u8.ToArray()));
    }

    [Test]
    public async Task GssEncRequest_IsAnsweredN() =>
        Assert.That(await ExchangeAsync(Packet(80877104), until: 1), Is.EqualTo("N"u8.ToArray()));

    [Test]
    public async Task Protocol32_GetsNegotiateProtocolVersion()
    {
        var response = await ExchangeAsync(Packet((3 << 16) | 2, "user", TestRoles.TrustUser, "database", PgCluster.TestDatabase,
            "_pq_.some_option", "on"), until: 64);
        Assert.That((char)response[0], Is.EqualTo('v'));
        Assert.That(BinaryPrimitives.ReadInt32BigEndian(response.AsSpan(5)), Is.Zero, "newest minor version: 3.0");
        Assert.That(Encoding.UTF8.GetString(response, 13, 16), Is.EqualTo("_pq_.some_option"));
        Assert.That((char)response[30], Is.EqualTo('R'), "then authentication goes on as 3.0");
    }

    [Test]
    public async Task ReplicationConnection_ForARoleWithoutReplication_GetsTheServersRefusal()
    {
        // Replication connections are relayed to the primary, so the refusal is PostgreSQL's own, as if connected directly.
        var (_, code, message) = Error(await ExchangeAsync(Packet(196608, "user", TestRoles.TrustUser, "replication", "database")));
        Assert.That(code, Is.EqualTo("42501"));
        Assert.That(message, Does.Contain("replication role"));
    }

    [Test]
    public async Task CancelRequest_WithUnknownKey_IsClosedWithoutHarm()
    {
        var cancel = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(cancel, 16);
        BinaryPrimitives.WriteInt32BigEndian(cancel.AsSpan(4), 80877102);
        BinaryPrimitives.WriteInt32BigEndian(cancel.AsSpan(8), 12345);
        Assert.That(await ExchangeAsync(cancel), Is.Empty, "closed with no answer, as PostgreSQL does");
    }

    [Test]
    public async Task OversizedPasswordMessage_IsRefused()
    {
        var startup = Packet(196608, "user", TestRoles.ScramUser, "database", PgCluster.TestDatabase);
        var password = new byte[5 + 2000];
        password[0] = (byte)'p';
        BinaryPrimitives.WriteInt32BigEndian(password.AsSpan(1), 2004);
        var response = await ExchangeAsync([.. startup, .. password]);
        Assert.That((char)response[0], Is.EqualTo('R'), "asked for a cleartext password first");
        var (_, code, message) = Error(response[9..]);
        Assert.That(code, Is.EqualTo("08P01"));
        Assert.That(message, Does.Contain("invalid password packet size"));
    }

    [Test]
    public async Task UnixSocket_AcceptsClients()
    {
        var builder = _poold.ConnectionString(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        builder.Host = _poold.Directory;
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync(), Is.EqualTo(TestRoles.ScramUser));
    }

    [Test]
    public async Task FunctionCall_IsRelayed()
    {
        int oid;
        await using (var connection = await _poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable))
        {
            oid = (int)(uint)(await new NpgsqlCommand("SELECT 'int4abs'::regproc::oid", connection).ExecuteScalarAsync())!;
        }

        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", _poold.Port);
        await socket.SendAsync(Packet(3 << 16, "user", TestRoles.TrustUser, "database", PgCluster.TestDatabase));
        await ReadUntilReadyAsync(socket);

        // FunctionCall: oid, 1 argument format code (text), 1 argument "-5", result format text.
        var argument = Encoding.ASCII.GetBytes("-5");
        var body = new List<byte>();
        void Int32(int v) { var b = new byte[4]; BinaryPrimitives.WriteInt32BigEndian(b, v); body.AddRange(b); }
        void Int16(short v) { var b = new byte[2]; BinaryPrimitives.WriteInt16BigEndian(b, v); body.AddRange(b); }
        Int32(oid);
        Int16(1);
        Int16(0);
        Int16(1);
        Int32(argument.Length);
        body.AddRange(argument);
        Int16(0);
        var message = new byte[5 + body.Count];
        message[0] = (byte)'F';
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), 4 + body.Count);
        body.CopyTo(message, 5);
        await socket.SendAsync(message);

        var reply = await ReadUntilReadyAsync(socket);
        Assert.That((char)reply[0], Is.EqualTo('V'), "FunctionCallResponse");
        var length = BinaryPrimitives.ReadInt32BigEndian(reply.AsSpan(5));
        Assert.That(Encoding.ASCII.GetString(reply, 9, length), Is.EqualTo("5"));
        Assert.That((char)reply[^6], Is.EqualTo('Z'));
    }

    /// <summary>Reads messages until ReadyForQuery; returns everything read.</summary>
    private static async Task<byte[]> ReadUntilReadyAsync(Socket socket)
    {
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, timeout.Token);
            Assert.That(n, Is.Positive, "Poold closed the connection");
            received.AddRange(buffer.AsSpan(0, n).ToArray());
            for (var i = 0; i + 5 <= received.Count;)
            {
                var length = BinaryPrimitives.ReadInt32BigEndian(received.ToArray().AsSpan(i + 1, 4));
                if (i + 1 + length > received.Count)
                {
                    break;
                }

                if (received[i] == (byte)'Z')
                {
                    return [.. received];
                }

                i += 1 + length;
            }
        }
    }
}
