using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Npgsql;
using Poold.Auth;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Auth;

/// <summary>
/// What an unauthenticated client can and cannot do: take or destroy cached connections, learn which users exist, or
/// get a connection opened with someone else's password; and what Poold refuses from backends (weak methods,
/// certificates that do not verify).
/// </summary>
public class AuthHardeningTests
{
    private const string TestKey = "poold-test-key";

    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static string Aes(string role) => $"{role}:{PoolPasswdCipher.Encrypt(TestRoles.Password(role), new Secret(TestKey))}";

    private static string StandardPoolPasswd => string.Join('\n', Aes(TestRoles.ScramUser), Aes(TestRoles.Md5User)) + "\n";

    private static Dictionary<string, string> AuthFiles(string poolPasswd) => new() { ["pool_passwd"] = poolPasswd, ["pgpoolkey"] = TestKey + "\n" };

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, string sql) =>
        await new NpgsqlCommand(sql, connection).ExecuteScalarAsync();

    /// <summary>Backend pids of <paramref name="user"/>'s sessions on the primary, seen from the admin role.</summary>
    private static async Task<List<int>> BackendPidsAsync(string user)
    {
        await using var admin = new NpgsqlConnection(Cluster.ConnectionString(0).ConnectionString);
        await admin.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pid FROM pg_stat_activity WHERE usename = $1 ORDER BY pid", admin);
        command.Parameters.AddWithValue(user);
        var pids = new List<int>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            pids.Add(reader.GetInt32(0));
        }

        return pids;
    }

    private static Task WaitIdleAsync(PooldInstance poold, int idle) =>
        Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0 && poold.Host.Pool.IdleCount == idle), TimeSpan.FromSeconds(10),
            $"no session and {idle} cached connection(s)");

    // ---- item 9: cached connections ----

    /// <summary>
    /// enable_pool_hba = off, the backend's method drives: a client with a wrong password, and one that walks away in the
    /// middle of the challenge, must leave the cached connection where it is (same backend pid reused afterwards).
    /// </summary>
    [TestCase(true, TestName = "CachedConnection_SurvivesAWrongPasswordAndAnAbandonedLogin_WithAPoolPasswdEntry")]
    [TestCase(false, TestName = "CachedConnection_SurvivesAWrongPasswordAndAnAbandonedLogin_InPassThrough")]
    public async Task CachedConnection_SurvivesFailedLogins(bool withEntry)
    {
        var user = TestRoles.ScramUser;
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(Cluster, 0) + "pool_passwd = 'pool_passwd'\n", ssl: false,
            AuthFiles(withEntry ? StandardPoolPasswd : Aes(TestRoles.Md5User) + "\n"), "pgpoolkey");
        int pid;
        await using (var first = await poold.OpenAsync(user, TestRoles.Password(user), sslMode: SslMode.Disable))
        {
            pid = (int)(await ScalarAsync(first, "SELECT pg_backend_pid()"))!;
        }

        await WaitIdleAsync(poold, 1);
        Assert.That(await BackendPidsAsync(user), Is.EqualTo(new[] { pid }));

        var wrong = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(user, "not-the-password", sslMode: SslMode.Disable));
        Assert.That(wrong!.SqlState, Is.EqualTo("28P01"));

        using (var abandoned = await RawLogin.StartAsync(poold.Port, user))
        {
            var request = await abandoned.ReadFrameAsync();
            Assert.That(request.Code, Is.EqualTo((byte)'R'), "the client was challenged");
        }

        await WaitIdleAsync(poold, 1);
        Assert.That(await BackendPidsAsync(user), Is.EqualTo(new[] { pid }), "the cached connection is the only one, and still open");
        await using var again = await poold.OpenAsync(user, TestRoles.Password(user), sslMode: SslMode.Disable);
        Assert.That(await ScalarAsync(again, "SELECT pg_backend_pid()"), Is.EqualTo(pid), "and it is reused");
    }

    /// <summary>
    /// pool_hba trust (or cert) for a user without a pool_passwd entry: a fresh login to a password backend fails, so
    /// a connection another client opened with its password must not be handed out either.
    /// </summary>
    [Test]
    public async Task TrustWithoutEntry_DoesNotGetAConnectionOpenedWithAnotherClientsPassword()
    {
        var user = TestRoles.ScramUser;
        const string hba = "hostssl all all 127.0.0.1/32 password\nhostnossl all all 127.0.0.1/32 trust\n";
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, hba, Aes(TestRoles.Md5User) + "\n");
        await using (var withPassword = await poold.OpenAsync(user, TestRoles.Password(user), sslMode: SslMode.Require))
        {
            Assert.That(await ScalarAsync(withPassword, "SELECT current_user"), Is.EqualTo(user), "pass-through with the right password");
        }

        await WaitIdleAsync(poold, 1);
        var trusted = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(user, "", sslMode: SslMode.Disable));
        Assert.That(trusted!.MessageText, Does.Contain("Poold has none to give"), "what a fresh login says");
        await WaitIdleAsync(poold, 1);
    }

    // ---- item 10: nothing to learn before authentication ----

    /// <summary>
    /// A known user with a wrong proof and an unknown user see the same flow: AuthenticationSASL, a server-first-message
    /// with a 16-byte salt and 4096 iterations (the same salt on every attempt), then the same FATAL 28P01.
    /// </summary>
    [Test]
    public async Task Scram_UnknownUserAndWrongPassword_LookTheSame()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 scram-sha-256\n", StandardPoolPasswd,
            ssl: false);
        const string unknown = "ghost_user"; // as long as scram_user, so the frames can be compared byte for byte

        var known1 = await ScramAttemptAsync(poold.Port, TestRoles.ScramUser);
        var known2 = await ScramAttemptAsync(poold.Port, TestRoles.ScramUser);
        var ghost1 = await ScramAttemptAsync(poold.Port, unknown);
        var ghost2 = await ScramAttemptAsync(poold.Port, unknown);

        Assert.That(ghost1.Sasl, Is.EqualTo(known1.Sasl), "the same AuthenticationSASL");
        Assert.That((ghost1.SaltLength, ghost1.Iterations), Is.EqualTo((known1.SaltLength, known1.Iterations)));
        Assert.That((ghost1.SaltLength, ghost1.Iterations), Is.EqualTo((16, 4096)));
        Assert.That((known2.Salt, ghost2.Salt), Is.EqualTo((known1.Salt, ghost1.Salt)), "repeated attempts look identical");
        Assert.That(Encoding.UTF8.GetString(ghost1.Error).Replace(unknown, TestRoles.ScramUser, StringComparison.Ordinal),
            Is.EqualTo(Encoding.UTF8.GetString(known1.Error)), "the same ErrorResponse");
        Assert.That(Encoding.UTF8.GetString(known1.Error), Does.Contain("28P01").And.Contain("password authentication failed for user"));
        await poold.WaitForLogAsync("has no entry in pool_passwd");
    }

    [Test]
    public async Task Md5_UnknownUserAndWrongPassword_LookTheSame()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 md5\n", StandardPoolPasswd, ssl: false);
        const string unknown = "ghost_us"; // as long as md5_user

        async Task<(byte Code, int Length, int Request, byte[] Error)> AttemptAsync(string user)
        {
            using var login = await RawLogin.StartAsync(poold.Port, user);
            var (code, body) = await login.ReadFrameAsync();
            await login.SendAsync('p', Encoding.ASCII.GetBytes("md5" + new string('0', 32) + "\0"));
            var (errorCode, error) = await login.ReadFrameAsync();
            Assert.That(errorCode, Is.EqualTo((byte)'E'));
            return (code, body.Length, BinaryPrimitives.ReadInt32BigEndian(body), error);
        }

        var known = await AttemptAsync(TestRoles.Md5User);
        var ghost = await AttemptAsync(unknown);
        Assert.That((ghost.Code, ghost.Length, ghost.Request), Is.EqualTo((known.Code, known.Length, known.Request)));
        Assert.That((known.Code, known.Request), Is.EqualTo(((byte)'R', 5)), "AuthenticationMD5Password");
        Assert.That(Encoding.UTF8.GetString(ghost.Error).Replace(unknown, TestRoles.Md5User, StringComparison.Ordinal),
            Is.EqualTo(Encoding.UTF8.GetString(known.Error)));
        Assert.That(Encoding.UTF8.GetString(known.Error), Does.Contain("28P01"));
    }

    private sealed record ScramAttempt(byte[] Sasl, string Salt, int SaltLength, int Iterations, byte[] Error);

    /// <summary>A SCRAM login with a random proof, by hand: what the server sends at each step.</summary>
    private static async Task<ScramAttempt> ScramAttemptAsync(int port, string user)
    {
        using var login = await RawLogin.StartAsync(port, user);
        var (code, sasl) = await login.ReadFrameAsync();
        Assert.That((code, BinaryPrimitives.ReadInt32BigEndian(sasl)), Is.EqualTo(((byte)'R', 10)), "AuthenticationSASL");

        var nonce = Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));
        var clientFirst = Encoding.UTF8.GetBytes($"n,,n=,r={nonce}");
        var initial = new List<byte>();
        initial.AddRange("SCRAM-SHA-256\0"u8.ToArray());
        initial.AddRange(BigEndian(clientFirst.Length));
        initial.AddRange(clientFirst);
        await login.SendAsync('p', [.. initial]);

        var (continueCode, serverFirstBody) = await login.ReadFrameAsync();
        Assert.That((continueCode, BinaryPrimitives.ReadInt32BigEndian(serverFirstBody)), Is.EqualTo(((byte)'R', 11)), "AuthenticationSASLContinue");
        var serverFirst = Encoding.UTF8.GetString(serverFirstBody, 4, serverFirstBody.Length - 4);
        var fields = serverFirst.Split(',').ToDictionary(f => f[0], f => f[2..]);
        var proof = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        await login.SendAsync('p', Encoding.UTF8.GetBytes($"c=biws,r={fields['r']},p={proof}"));

        var (errorCode, error) = await login.ReadFrameAsync();
        Assert.That(errorCode, Is.EqualTo((byte)'E'));
        return new ScramAttempt(sasl, fields['s'], Convert.FromBase64String(fields['s']).Length, int.Parse(fields['i'], System.Globalization.CultureInfo.InvariantCulture),
            error);
    }

    private static byte[] BigEndian(int value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(bytes, value);
        return bytes;
    }

    // ---- item 11: backends ----

    [Test]
    public async Task BackendRequireAuth_Scram_RefusesAnMd5Backend_AndAllowsAScramOne()
    {
        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(Cluster, 0)
            + "pool_passwd = 'pool_passwd'\nbackend_require_auth0 = 'scram-sha-256'\n", ssl: false, AuthFiles(StandardPoolPasswd), "pgpoolkey");
        await using (var scram = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable))
        {
            Assert.That(await ScalarAsync(scram, "SELECT current_user"), Is.EqualTo(TestRoles.ScramUser));
        }

        var md5 = Assert.ThrowsAsync<PostgresException>(async () =>
            await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User), sslMode: SslMode.Disable));
        Assert.That(md5!.MessageText, Does.Contain("backend node 0").And.Contain("asks for md5 authentication")
            .And.Contain("backend_require_auth0 = 'scram-sha-256' does not allow it"));
        var trust = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.TrustUser, "", sslMode: SslMode.Disable));
        Assert.That(trust!.MessageText, Does.Contain("without authentication"), "a server that asks nothing is refused too, unless 'none' is allowed");
    }

    [Test]
    public async Task BackendSslModeVerifyFull_WrongCaFails_RightCaSucceeds_WrongNameFails()
    {
        using var otherKey = RSA.Create(2048);
        using var other = new CertificateRequest("CN=localhost", otherKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var files = new Dictionary<string, string>
        {
            ["wrong-ca.crt"] = other.ExportCertificatePem(),
            ["right-ca.crt"] = await File.ReadAllTextAsync(Path.Combine(Cluster.Nodes[0].DataDirectory, "server.crt")),
        };
        string Backend(string host, string ca) =>
            $"backend_hostname0 = '{host}'\nbackend_port0 = {Cluster.Nodes[0].Port}\nbackend_weight0 = 1\nbackend_sslmode0 = 'verify-full'\nbackend_ssl_ca_cert0 = '{ca}'\n";
        var user = TestRoles.TrustUser;

        await using (var wrongCa = await PooldInstance.StartAsync(Backend("localhost", "wrong-ca.crt"), ssl: false, files))
        {
            var e = Assert.ThrowsAsync<PostgresException>(async () => await wrongCa.OpenAsync(user, "", sslMode: SslMode.Disable));
            Assert.That(e!.MessageText, Does.Contain("backend node 0 (localhost:").And.Contain("failed TLS certificate verification")
                .And.Contain("does not chain to backend_ssl_ca_cert0 = 'wrong-ca.crt'"));
        }

        await using (var wrongName = await PooldInstance.StartAsync(Backend("127.0.0.1", "right-ca.crt"), ssl: false, files))
        {
            var e = Assert.ThrowsAsync<PostgresException>(async () => await wrongName.OpenAsync(user, "", sslMode: SslMode.Disable));
            Assert.That(e!.MessageText, Does.Contain("does not name host \"127.0.0.1\""));
        }

        await using var right = await PooldInstance.StartAsync(Backend("localhost", "right-ca.crt"), ssl: false, files);
        await using var connection = await right.OpenAsync(user, "", sslMode: SslMode.Disable);
        Assert.That(await ScalarAsync(connection, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), Is.True,
            "TLS to the backend although ssl = off on the client side");
    }

    /// <summary>A raw client: a StartupMessage, then frames read and written by hand.</summary>
    private sealed class RawLogin : IDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;

        private RawLogin(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
        }

        public static async Task<RawLogin> StartAsync(int port, string user)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync("127.0.0.1", port);
            var login = new RawLogin(socket);
            var body = Encoding.UTF8.GetBytes($"user\0{user}\0database\0{PgCluster.TestDatabase}\0\0");
            var startup = new byte[8 + body.Length];
            BinaryPrimitives.WriteInt32BigEndian(startup, startup.Length);
            BinaryPrimitives.WriteInt32BigEndian(startup.AsSpan(4), 3 << 16);
            body.CopyTo(startup, 8);
            await login._stream.WriteAsync(startup);
            return login;
        }

        public async Task SendAsync(char code, byte[] body)
        {
            var frame = new byte[5 + body.Length];
            frame[0] = (byte)code;
            BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), body.Length + 4);
            body.CopyTo(frame, 5);
            await _stream.WriteAsync(frame);
        }

        public async Task<(byte Code, byte[] Body)> ReadFrameAsync()
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            var header = new byte[5];
            await _stream.ReadExactlyAsync(header, deadline.Token);
            var body = new byte[BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1)) - 4];
            await _stream.ReadExactlyAsync(body, deadline.Token);
            return (header[0], body);
        }

        public void Dispose()
        {
            _stream.Dispose();
            _socket.Dispose();
        }
    }
}
