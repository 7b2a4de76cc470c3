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
/// enable_pool_hba = on: clients prove themselves to Poold against pool_passwd (never sending the password), and Poold
/// logs in to the backends with the decrypted password, whatever method each backend asks for.
/// </summary>
public class DualAuthTests
{
    private const string TestKey = "poold-test-key";

    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static string Aes(string role) => $"{role}:{PoolPasswdCipher.Encrypt(TestRoles.Password(role), new Secret(TestKey))}";

    /// <summary>AES entries for the SCRAM and md5 backend roles, an md5-hash entry for md5 and clear, TEXT for trust.</summary>
    private static string StandardPoolPasswd => string.Join('\n',
        Aes(TestRoles.ScramUser), Aes(TestRoles.Md5User), Aes(TestRoles.SslUser),
        $"{TestRoles.ClearUser}:{Md5Password.Hash(TestRoles.Password(TestRoles.ClearUser), TestRoles.ClearUser)}",
        $"{TestRoles.TrustUser}:TEXTtrust_pw") + "\n";

    private const string ScramEverywhere = """
        host all reject_user 127.0.0.1/32 reject
        host all all 127.0.0.1/32 scram-sha-256
        """;

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, string sql) =>
        await new NpgsqlCommand(sql, connection).ExecuteScalarAsync();

    [TestCase(TestRoles.ScramUser, SslMode.Require)]
    [TestCase(TestRoles.Md5User, SslMode.Require)]
    [TestCase(TestRoles.ScramUser, SslMode.Disable)]
    [TestCase(TestRoles.Md5User, SslMode.Disable)]
    public async Task ScramClient_LogsInToScramAndMd5Backends(string role, SslMode sslMode)
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd,
            "allow_clear_text_frontend_auth = off\n");
        var builder = poold.ConnectionString(role, TestRoles.Password(role), sslMode: sslMode);
        builder.ChannelBinding = sslMode == SslMode.Disable ? ChannelBinding.Disable : ChannelBinding.Require;
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        Assert.That(await ScalarAsync(connection, "SELECT current_user"), Is.EqualTo(role));
        await poold.WaitForLogAsync("client authenticated with SCRAM-SHA-256");
        Assert.That(poold.Log, sslMode == SslMode.Disable ? Does.Not.Contain("SCRAM-SHA-256-PLUS") : Does.Contain("with SCRAM-SHA-256-PLUS"));
    }

    [Test]
    public async Task WrongPassword_Gets28P01_AndOtherSessionsGoOn()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd);
        await using var good = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser));
        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.ScramUser, "not-the-password"));
        Assert.That((e!.SqlState, e.Severity, e.MessageText),
            Is.EqualTo(("28P01", "FATAL", $"password authentication failed for user \"{TestRoles.ScramUser}\"")));
        Assert.That(await ScalarAsync(good, "SELECT 42"), Is.EqualTo(42));
        Assert.That(poold.Log, Does.Not.Contain("not-the-password").And.Not.Contain(TestRoles.Password(TestRoles.ScramUser)));
    }

    [Test]
    public async Task CachedBackendConnection_IsNotHandedToAWrongPassword()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd);
        await using (var first = await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)))
        {
            await ScalarAsync(first, "SELECT 1");
        }

        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0 && poold.Host.Pool.IdleCount == 1),
            TimeSpan.FromSeconds(10), "the connection to be cached");
        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.Md5User, "guess"));
        Assert.That(e!.SqlState, Is.EqualTo("28P01"));
        await using var again = await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User));
        Assert.That(await ScalarAsync(again, "SELECT current_user"), Is.EqualTo(TestRoles.Md5User));
    }

    [Test]
    public async Task UserMissingFromPoolPasswd_GetsThePlain28P01_AndTheLogNamesTheFile()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, Aes(TestRoles.Md5User) + "\n");
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
            await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)));
        Assert.That((e!.Severity, e.SqlState, e.MessageText, e.Detail),
            Is.EqualTo(("FATAL", "28P01", $"password authentication failed for user \"{TestRoles.ScramUser}\"", (string?)null)));
        await poold.WaitForLogAsync($"has no entry in pool_passwd file \"{Path.Combine(poold.Directory, "pool_passwd")}\"");
    }

    [Test]
    public async Task NoMatchingRecordAndReject_Get28000WithPostgresWording()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere + "\n", StandardPoolPasswd);
        var rejected = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.RejectUser, "x", sslMode: SslMode.Disable));
        Assert.That((rejected!.SqlState, rejected.MessageText), Is.EqualTo(("28000",
            $"pool_hba.conf rejects connection for host \"127.0.0.1\", user \"{TestRoles.RejectUser}\", database \"{PgCluster.TestDatabase}\", SSL off")));

        await using var localOnly = await PooldInstance.StartWithAuthAsync(Cluster, "local all all trust\n", StandardPoolPasswd);
        var unmatched = Assert.ThrowsAsync<PostgresException>(async () => await localOnly.OpenAsync(TestRoles.ScramUser, "x"));
        Assert.That((unmatched!.SqlState, unmatched.MessageText), Is.EqualTo(("28000",
            $"no pool_hba.conf entry for host \"127.0.0.1\", user \"{TestRoles.ScramUser}\", database \"{PgCluster.TestDatabase}\", SSL on")));
    }

    [Test]
    public async Task Md5Method_WorksWithAesAndMd5Entries_AndAnMd5EntryCannotServeAScramBackend()
    {
        var passwd = StandardPoolPasswd + $"{TestRoles.ScramUser}x:unused\n";
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 md5\n",
            passwd.Replace(Aes(TestRoles.Md5User), $"{TestRoles.Md5User}:{Md5Password.Hash(TestRoles.Password(TestRoles.Md5User), TestRoles.Md5User)}",
                StringComparison.Ordinal));
        await using (var md5Hash = await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)))
        {
            Assert.That(await ScalarAsync(md5Hash, "SELECT current_user"), Is.EqualTo(TestRoles.Md5User), "md5 entry, md5 backend");
        }

        await using (var aes = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)))
        {
            Assert.That(await ScalarAsync(aes, "SELECT current_user"), Is.EqualTo(TestRoles.ScramUser), "AES entry, SCRAM backend");
        }

        var wrong = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.Md5User, "wrong"));
        Assert.That(wrong!.SqlState, Is.EqualTo("28P01"));
    }

    [Test]
    public async Task ScramMethod_WithAnMd5Entry_SaysTheEntryIsNotValidForScram()
    {
        var passwd = $"{TestRoles.Md5User}:{Md5Password.Hash(TestRoles.Password(TestRoles.Md5User), TestRoles.Md5User)}\n";
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, passwd);
        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)));
        Assert.That((e!.SqlState, e.MessageText), Is.EqualTo(("28P01", $"password authentication failed for user \"{TestRoles.Md5User}\"")));
        await poold.WaitForLogAsync("is an md5 hash, which cannot check SCRAM");
    }

    [Test]
    public async Task PasswordMethod_PassesThroughWithoutAnEntry_AndChecksOneWhenPresent()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 password\n", StandardPoolPasswd);
        await using (var passThrough = await poold.OpenAsync(TestRoles.Admin, TestRoles.Password(TestRoles.Admin)))
        {
            Assert.That(await ScalarAsync(passThrough, "SELECT current_user"), Is.EqualTo(TestRoles.Admin), "no entry: the client's password is used");
        }

        await using (var clear = await poold.OpenAsync(TestRoles.ClearUser, TestRoles.Password(TestRoles.ClearUser)))
        {
            Assert.That(await ScalarAsync(clear, "SELECT current_user"), Is.EqualTo(TestRoles.ClearUser), "checked against an md5 entry");
        }

        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.ClearUser, "wrong"));
        Assert.That(e!.SqlState, Is.EqualTo("28P01"));
    }

    [Test]
    public async Task TrustMethod_LogsInToAPasswordBackendWithTheStoredPassword()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 trust\n", StandardPoolPasswd);
        await using var connection = await poold.OpenAsync(TestRoles.ScramUser, "ignored");
        Assert.That(await ScalarAsync(connection, "SELECT current_user"), Is.EqualTo(TestRoles.ScramUser));
        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.Admin, "x"));
        Assert.That(e!.MessageText, Does.Contain("Poold has none to give"), "no entry and a SCRAM backend: nothing to log in with");
    }

    [Test]
    public async Task ScramClient_NeverSendsThePassword_OnTheWire()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd, ssl: false);
        await using var relay = new CapturingRelay(poold.Port);
        var builder = poold.ConnectionString(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        builder.Port = relay.Port;
        await using (var connection = new NpgsqlConnection(builder.ConnectionString))
        {
            await connection.OpenAsync();
            Assert.That(await ScalarAsync(connection, "SELECT 'visible marker'"), Is.EqualTo("visible marker"));
        }

        var wire = Encoding.UTF8.GetString(relay.Captured);
        Assert.That(wire, Does.Contain("visible marker"), "the capture sees the plaintext session");
        Assert.That(wire, Does.Contain("SCRAM-SHA-256"));
        Assert.That(wire, Does.Not.Contain(TestRoles.Password(TestRoles.ScramUser)));
    }

    [Test]
    public async Task Psql_LogsInWithScramAndChannelBinding()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd);
        var (code, output) = await Poold.IntegrationTests.Proxy.ProxyTests.Run("psql",
            $"\"host=127.0.0.1 port={poold.Port} user={TestRoles.Md5User} dbname={PgCluster.TestDatabase} sslmode=require channel_binding=require\" -Atc \"SELECT current_user\"",
            ("PGPASSWORD", TestRoles.Password(TestRoles.Md5User)));
        Assert.That((code, output.Trim()), Is.EqualTo((0, TestRoles.Md5User)));
        await poold.WaitForLogAsync("client authenticated with SCRAM-SHA-256-PLUS");
    }

    [Test]
    public async Task Reload_RereadsPoolHbaAndPoolPasswd()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 reject\n", StandardPoolPasswd);
        Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)));

        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "pool_hba.conf"), ScramEverywhere);
        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "pool_passwd"), Aes(TestRoles.Md5User) + "\n");
        poold.Host.Reload();
        await using (var md5 = await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)))
        {
            Assert.That(await ScalarAsync(md5, "SELECT current_user"), Is.EqualTo(TestRoles.Md5User));
        }

        var gone = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)));
        Assert.That(gone!.SqlState, Is.EqualTo("28P01"), "the reloaded pool_passwd no longer has scram_user");
        await poold.WaitForLogAsync("has no entry in pool_passwd");

        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "pool_hba.conf"), "host all all 1.2.3.4/33 trust\n");
        poold.Host.Reload();
        await poold.WaitForLogAsync("pool_hba.conf:1: invalid CIDR mask");
        await using var still = await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User));
        Assert.That(await ScalarAsync(still, "SELECT 1"), Is.EqualTo(1), "a bad reload keeps the previous files");
    }

    [Test]
    public void KeyFileMissingOrReadableByOthers_StopsTheStart()
    {
        var e = Assert.ThrowsAsync<Poold.Config.ConfigException>(async () =>
        {
            var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(Cluster, 0) + "pool_passwd = 'pool_passwd'\n", ssl: false,
                new Dictionary<string, string> { ["pool_passwd"] = StandardPoolPasswd, ["pgpoolkey"] = TestKey }, keyFile: "pgpoolkey.open");
            await poold.DisposeAsync();
        });
        Assert.That(e!.Message, Does.Contain("does not exist"));

        var f = Assert.ThrowsAsync<Poold.Config.ConfigException>(async () =>
        {
            var dir = Directory.CreateTempSubdirectory("poold-key-").FullName;
            var key = Path.Combine(dir, "key");
            await File.WriteAllTextAsync(key, TestKey);
            File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
            var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(Cluster, 0) + "pool_passwd = 'pool_passwd'\n", ssl: false,
                new Dictionary<string, string> { ["pool_passwd"] = StandardPoolPasswd }, keyFile: key);
            await poold.DisposeAsync();
        });
        Assert.That(f!.Message, Does.Contain("chmod 600"));
    }

    [Test]
    public async Task WrongKey_Gives28P01_AndAClearErrorInTheLog()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd, key: "another key\n");
        var e = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)));
        Assert.That((e!.SqlState, e.MessageText), Is.EqualTo(("28P01", $"password authentication failed for user \"{TestRoles.ScramUser}\"")),
            "the client learns nothing about pool_passwd or the key");
        await poold.WaitForLogAsync("wrong key file");
        Assert.That(poold.Log, Does.Contain("pool_passwd:1"));
        Assert.That(poold.Log, Does.Not.Contain("another key"));
    }

    [Test]
    public async Task HbaOff_TheBackendsMethodDrives_AndTheClientIsCheckedAgainstPoolPasswd()
    {
        await using var poold = await PooldInstance.StartAsync(
            PooldInstance.BackendLines(Cluster, 0) + "pool_passwd = 'pool_passwd'\nallow_clear_text_frontend_auth = off\n", ssl: true,
            new Dictionary<string, string> { ["pool_passwd"] = StandardPoolPasswd, ["pgpoolkey"] = TestKey + "\n" }, "pgpoolkey");
        await using (var scram = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser)))
        {
            Assert.That(await ScalarAsync(scram, "SELECT current_user"), Is.EqualTo(TestRoles.ScramUser));
        }

        await poold.WaitForLogAsync("client authenticated with SCRAM-SHA-256-PLUS");
        await using (var md5 = await poold.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)))
        {
            Assert.That(await ScalarAsync(md5, "SELECT current_user"), Is.EqualTo(TestRoles.Md5User), "md5 challenge from Poold, md5 to the backend");
        }

        var wrong = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.Md5User, "wrong"));
        Assert.That(wrong!.SqlState, Is.EqualTo("28P01"));
        var unknown = Assert.ThrowsAsync<PostgresException>(async () => await poold.OpenAsync(TestRoles.Admin, TestRoles.Password(TestRoles.Admin)));
        Assert.That((unknown!.SqlState, unknown.MessageText), Is.EqualTo(("28P01", $"password authentication failed for user \"{TestRoles.Admin}\"")));
        await poold.WaitForLogAsync("allow_clear_text_frontend_auth is off");
    }

    [Test]
    public async Task CertMethod_AcceptsOnlyACertificateWhoseCommonNameIsTheUser_NotAnEmailFallback()
    {
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=Poold Test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-10), DateTimeOffset.UtcNow.AddDays(2));
        var files = new Dictionary<string, string>
        {
            ["pool_hba.conf"] = "hostssl all all 127.0.0.1/32 cert\nhostnossl all all 127.0.0.1/32 reject\n",
            ["pool_passwd"] = StandardPoolPasswd,
            ["pgpoolkey"] = TestKey + "\n",
            ["ca.crt"] = ca.ExportCertificatePem(),
        };
        foreach (var (name, subject) in new[] { ("good", $"CN={TestRoles.SslUser}"), ("other", "CN=someone_else"), ("email", "O=Poold Test") })
        {
            using var key = RSA.Create(2048);
            var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            if (name == "email")
            {
                // No CN, and an e-mail equal to the user name: .NET's "simple name" would fall back to it.
                var san = new SubjectAlternativeNameBuilder();
                san.AddEmailAddress(TestRoles.SslUser);
                request.CertificateExtensions.Add(san.Build());
            }

            using var cert = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
            files[$"{name}.crt"] = cert.ExportCertificatePem();
            files[$"{name}.key"] = key.ExportPkcs8PrivateKeyPem();
        }

        await using var poold = await PooldInstance.StartAsync(PooldInstance.BackendLines(Cluster, 0)
            + "enable_pool_hba = on\npool_passwd = 'pool_passwd'\nssl_ca_cert = 'ca.crt'\n", ssl: true, files, "pgpoolkey");
        NpgsqlConnection Connect(string? certificate)
        {
            var builder = poold.ConnectionString(TestRoles.SslUser, "", sslMode: SslMode.Require);
            if (certificate is not null)
            {
                builder.SslCertificate = Path.Combine(poold.Directory, certificate + ".crt");
                builder.SslKey = Path.Combine(poold.Directory, certificate + ".key");
            }

            return new NpgsqlConnection(builder.ConnectionString);
        }

        await using (var good = Connect("good"))
        {
            await good.OpenAsync();
            Assert.That(await ScalarAsync(good, "SELECT current_user"), Is.EqualTo(TestRoles.SslUser));
        }

        await using var other = Connect("other");
        var mismatch = Assert.ThrowsAsync<PostgresException>(async () => await other.OpenAsync());
        Assert.That((mismatch!.SqlState, mismatch.MessageText), Is.EqualTo(("28000", $"certificate authentication failed for user \"{TestRoles.SslUser}\"")));
        await using var email = Connect("email");
        var noCn = Assert.ThrowsAsync<PostgresException>(async () => await email.OpenAsync());
        Assert.That((noCn!.SqlState, noCn.MessageText), Is.EqualTo(("28000", $"certificate authentication failed for user \"{TestRoles.SslUser}\"")),
            "the CN attribute and only it is the user");
        await using var none = Connect(null);
        var missing = Assert.ThrowsAsync<PostgresException>(async () => await none.OpenAsync());
        Assert.That(missing!.MessageText, Is.EqualTo("connection requires a valid client certificate"));
    }

    [Test]
    public async Task ClientStallingInTheScramExchange_IsCutOffByAuthenticationTimeout()
    {
        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, ScramEverywhere, StandardPoolPasswd, "authentication_timeout = 1\n",
            ssl: false);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", poold.Port);
        var body = Encoding.UTF8.GetBytes($"user\0{TestRoles.ScramUser}\0database\0{PgCluster.TestDatabase}\0\0");
        var startup = new byte[8 + body.Length];
        BinaryPrimitives.WriteInt32BigEndian(startup, startup.Length);
        BinaryPrimitives.WriteInt32BigEndian(startup.AsSpan(4), 3 << 16);
        body.CopyTo(startup, 8);
        await socket.SendAsync(startup);

        var received = new List<byte>();
        var buffer = new byte[1024];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        int n;
        while ((n = await socket.ReceiveAsync(buffer, deadline.Token)) > 0)
        {
            received.AddRange(buffer.AsSpan(0, n).ToArray());
        }

        var text = Encoding.UTF8.GetString([.. received]);
        Assert.That(text, Does.Contain("SCRAM-SHA-256"), "the SASL exchange had started");
        Assert.That(text, Does.Contain("canceling authentication due to timeout"));
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(5), "the slot to be freed");
    }
}
