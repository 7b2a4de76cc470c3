using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Npgsql;
using Poold.Auth;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;
using Poold.Tests.Tls;

namespace Poold.IntegrationTests.Proxy;

/// <summary>What operators see of Poold: systemd's notify protocol, certificate rotation, revocation lists, encrypted keys.</summary>
public class OperationsTests
{
    private const string TestKey = "poold-test-key";
    private const string Passphrase = "pki pass";
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private string _pki = "";

    [OneTimeSetUp]
    public void CreatePki()
    {
        _pki = Directory.CreateTempSubdirectory("poold-pki-").FullName;
        OpenSslPki.Create(_pki, TestRoles.SslUser, Passphrase);
    }

    [OneTimeTearDown]
    public void DeletePki() => Directory.Delete(_pki, recursive: true);

    private string Pki(string name) => File.ReadAllText(Path.Combine(_pki, name));

    /// <summary>Datagrams a fake systemd receives on the notify socket.</summary>
    private sealed class FakeSystemd : IDisposable
    {
        private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        private readonly Task _receiving;

        public FakeSystemd(string name, Action<string>? onMessage = null)
        {
            _socket.Bind(new UnixDomainSocketEndPoint(name.StartsWith('@') ? "\0" + name[1..] : name));
            _receiving = Task.Run(async () =>
            {
                var buffer = new byte[4096];
                while (true)
                {
                    int n;
                    try
                    {
                        n = await _socket.ReceiveAsync(buffer);
                    }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException)
                    {
                        return;
                    }

                    var message = Encoding.UTF8.GetString(buffer, 0, n);
                    onMessage?.Invoke(message);
                    Messages.Enqueue(message);
                }
            });
        }

        public ConcurrentQueue<string> Messages { get; } = new();

        public string All => string.Join("\n---\n", Messages);

        public void Dispose()
        {
            _socket.Dispose();
            _receiving.Wait(TimeSpan.FromSeconds(5));
        }
    }

    [Test]
    public async Task NotifySocket_GetsReadyAfterTheListeners_ReloadingAroundReload_StatusWatchdogAndStopping()
    {
        var name = $"@poold-notify-{Guid.NewGuid():N}";
        HashSet<int>? listeningAtReady = null;
        using var systemd = new FakeSystemd(name, message =>
        {
            if (message.StartsWith("READY=1", StringComparison.Ordinal))
            {
                listeningAtReady ??= ListeningTcpPorts();
            }
        });
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0), environment:
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = name, ["WATCHDOG_USEC"] = "400000" });
        await Poll.UntilAsync(() => Task.FromResult(listeningAtReady is not null), TimeSpan.FromSeconds(10), "READY=1");
        Assert.That(listeningAtReady, Does.Contain(poold.Port), "READY=1 only once the port listens");
        Assert.That(systemd.Messages.First(), Does.Match("^READY=1\nSTATUS=0 clients, [0-9]+ connecting; 1 of 1 nodes up, primary node 0$"),
            "the start-up probes may still be connecting");

        await Poll.UntilAsync(() => Task.FromResult(systemd.Messages.Count(m => m.StartsWith("WATCHDOG=1\nSTATUS=", StringComparison.Ordinal)) >= 3),
            TimeSpan.FromSeconds(10), "watchdog keep-alives at half of WATCHDOG_USEC");

        var reload = await poold.RunCommandAsync("reload");
        Assert.That(reload.ExitCode, Is.Zero, reload.Output);
        await poold.WaitForSignalEffectAsync(() => systemd.Messages.Any(m => m.StartsWith("RELOADING=1", StringComparison.Ordinal)), TimeSpan.FromSeconds(10),
            "RELOADING=1");
        var sequence = systemd.Messages.Where(m => !m.StartsWith("WATCHDOG", StringComparison.Ordinal)).ToList();
        var reloading = sequence.FindIndex(m => m.StartsWith("RELOADING=1", StringComparison.Ordinal));
        var lines = sequence[reloading].Split('\n');
        Assert.That(lines[1], Does.StartWith("MONOTONIC_USEC="), systemd.All);
        var usec = long.Parse(lines[1]["MONOTONIC_USEC=".Length..], CultureInfo.InvariantCulture);
        var now = (long)(Stopwatch.GetTimestamp() * (1_000_000.0 / Stopwatch.Frequency));
        Assert.That(now - usec, Is.InRange(0, 60_000_000), "CLOCK_MONOTONIC, the clock systemd compares with");
        await Poll.UntilAsync(() => Task.FromResult(systemd.Messages.Where(m => !m.StartsWith("WATCHDOG", StringComparison.Ordinal))
            .Skip(reloading + 1).Any(m => m.StartsWith("READY=1", StringComparison.Ordinal))), TimeSpan.FromSeconds(10), "READY=1 after the reload");

        var stop = await poold.RunCommandAsync("stop", "-m", "fast");
        Assert.That(stop.ExitCode, Is.Zero, stop.Output);
        await Poll.UntilAsync(() => Task.FromResult(systemd.Messages.Contains("STOPPING=1")), TimeSpan.FromSeconds(10), "STOPPING=1");
    }

    /// <summary>The TCP ports in LISTEN state on this machine (IPv4 and IPv6), from /proc.</summary>
    private static HashSet<int> ListeningTcpPorts()
    {
        var ports = new HashSet<int>();
        foreach (var file in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            foreach (var line in File.ReadLines(file).Skip(1))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 3 && fields[3] == "0A")
                {
                    ports.Add(int.Parse(fields[1][(fields[1].LastIndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                }
            }
        }

        return ports;
    }

    private static string Aes(string role) => $"{role}:{PoolPasswdCipher.Encrypt(TestRoles.Password(role), new Secret(TestKey))}";

    private Task<PooldInstance> StartCertPooldAsync(string extra, Dictionary<string, string>? more = null)
    {
        var files = new Dictionary<string, string>
        {
            ["pool_hba.conf"] = "hostssl all all 127.0.0.1/32 cert\nhostnossl all all 127.0.0.1/32 reject\n",
            ["pool_passwd"] = Aes(TestRoles.SslUser) + "\n",
            ["pgpoolkey"] = TestKey + "\n",
            ["ca.crt"] = Pki("ca.crt"),
            ["crl.pem"] = Pki("empty-crl.pem"),
            ["good.crt"] = Pki("good.crt"),
            ["good.key"] = Pki("good.key"),
            ["revoked.crt"] = Pki("revoked.crt"),
            ["revoked.key"] = Pki("revoked.key"),
        };
        foreach (var (k, v) in more ?? [])
        {
            files[k] = v;
        }

        return PooldInstance.StartAsync(PooldInstance.BackendLines(Cluster, 0)
            + "enable_pool_hba = on\npool_passwd = 'pool_passwd'\nssl_ca_cert = 'ca.crt'\nssl_crl_file = 'crl.pem'\n" + extra, ssl: true, files,
            "pgpoolkey");
    }

    private static NpgsqlConnection Connect(PooldInstance poold, string certificate)
    {
        var builder = poold.ConnectionString(TestRoles.SslUser, "", sslMode: SslMode.Require);
        builder.SslCertificate = Path.Combine(poold.Directory, certificate + ".crt");
        builder.SslKey = Path.Combine(poold.Directory, certificate + ".key");
        builder.Pooling = false;
        return new NpgsqlConnection(builder.ConnectionString);
    }

    /// <summary>The certificate Poold presents to a new TLS handshake.</summary>
    private static async Task<X509Certificate2> ServerCertificateAsync(int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", port);
        var request = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(request, 8);
        BinaryPrimitives.WriteInt32BigEndian(request.AsSpan(4), 80877103);
        await socket.SendAsync(request);
        var answer = new byte[1];
        Assert.That(await socket.ReceiveAsync(answer), Is.EqualTo(1));
        Assert.That((char)answer[0], Is.EqualTo('S'));
        await using var ssl = new SslStream(new NetworkStream(socket), false, (_, certificate, _, _) => certificate is not null); // the test only reads it
        await ssl.AuthenticateAsClientAsync("localhost");
        return new X509Certificate2(ssl.RemoteCertificate!);
    }

    [Test]
    public async Task RevokedClientCertificate_IsRefusedWith28000_OnceAReloadBringsTheNewCrl()
    {
        await using var poold = await StartCertPooldAsync("");
        await using (var before = Connect(poold, "revoked"))
        {
            await before.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT current_user", before).ExecuteScalarAsync(), Is.EqualTo(TestRoles.SslUser),
                "the list in force does not name it yet");
        }

        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "crl.pem"), Pki("crl.pem"));
        poold.Host.Reload();
        await using var revoked = Connect(poold, "revoked");
        var refused = Assert.ThrowsAsync<PostgresException>(async () => await revoked.OpenAsync());
        Assert.That((refused!.SqlState, refused.MessageText),
            Is.EqualTo(("28000", $"certificate authentication failed for user \"{TestRoles.SslUser}\": the certificate has been revoked")));
        await using var good = Connect(poold, "good");
        await good.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT current_user", good).ExecuteScalarAsync(), Is.EqualTo(TestRoles.SslUser));
    }

    [Test]
    public async Task ExpiredCrl_RefusesClientCertificatesWith28000_WarnsAtStart_AndACurrentListOnReloadLetsThemIn()
    {
        await using var poold = await StartCertPooldAsync("", new Dictionary<string, string> { ["crl.pem"] = Pki("expired-crl.pem") });
        var crlPath = Path.Combine(poold.Directory, "crl.pem");
        await poold.WaitForLogAsync($"WARNING: the revocation list {crlPath} of \"CN=Poold Test CA\" expired at");
        await using (var good = Connect(poold, "good"))
        {
            var refused = Assert.ThrowsAsync<PostgresException>(async () => await good.OpenAsync());
            Assert.That((refused!.SqlState, refused.MessageText),
                Is.EqualTo(("28000", $"certificate authentication failed for user \"{TestRoles.SslUser}\": the certificate revocation list has expired")),
                "OpenSSL's CRL check fails with X509_V_ERR_CRL_HAS_EXPIRED: a list past its nextUpdate is not trusted");
        }

        await poold.WaitForLogAsync($"refused: the revocation list {crlPath} expired at");
        await File.WriteAllTextAsync(crlPath, Pki("crl.pem"));
        poold.Host.Reload();
        await using var after = Connect(poold, "good");
        await after.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT current_user", after).ExecuteScalarAsync(), Is.EqualTo(TestRoles.SslUser));
    }

    [Test]
    public async Task Reload_RotatesTheServerCertificate_ForNewHandshakesOnly_AndKeepsItWhenTheNewFilesDoNotLoad()
    {
        await using var poold = await StartCertPooldAsync("", new Dictionary<string, string>
        {
            ["server.crt"] = Pki("server.crt"),
            ["server.key"] = Pki("server.key"),
        });
        using var first = X509Certificate2.CreateFromPem(Pki("server.crt"));
        using var second = X509Certificate2.CreateFromPem(Pki("server2.crt"));
        using (var presented = await ServerCertificateAsync(poold.Port))
        {
            Assert.That(presented.Thumbprint, Is.EqualTo(first.Thumbprint));
        }

        await using var open = Connect(poold, "good");
        await open.OpenAsync();
        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "server.crt"), Pki("server2.crt"));
        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "server.key"), Pki("server2.key"));
        poold.Host.Reload();
        using (var presented = await ServerCertificateAsync(poold.Port))
        {
            Assert.That(presented.Thumbprint, Is.EqualTo(second.Thumbprint), "new handshakes use the new files");
        }

        Assert.That(await new NpgsqlCommand("SELECT 1", open).ExecuteScalarAsync(), Is.EqualTo(1), "the open session goes on");

        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "server.key"), Pki("server.key")); // does not match server2.crt
        poold.Host.Reload();
        await poold.WaitForLogAsync("keeping the TLS files loaded before");
        using (var presented = await ServerCertificateAsync(poold.Port))
        {
            Assert.That(presented.Thumbprint, Is.EqualTo(second.Thumbprint), "a key that does not load keeps the old pair");
        }

        await using var fresh = Connect(poold, "good");
        await fresh.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT 1", fresh).ExecuteScalarAsync(), Is.EqualTo(1));
    }

    [TestCase("server.trad.key")]
    [TestCase("server.p8.key")]
    public async Task EncryptedServerKey_WithPassphraseCommand_ServesTls(string key)
    {
        await using var poold = await StartCertPooldAsync($"ssl_passphrase_command = 'echo \"{Passphrase}\"'\n", new Dictionary<string, string>
        {
            ["server.crt"] = Pki("server.crt"),
            ["server.key"] = Pki(key),
        });
        Assert.That(poold.Log, Does.Not.Contain(Passphrase));
        await using var good = Connect(poold, "good");
        await good.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT current_user", good).ExecuteScalarAsync(), Is.EqualTo(TestRoles.SslUser));
    }

    [Test]
    public async Task ConnectionLogLines_CarryThePrefixEscapes_TheSessionTime_AndNoPassword()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster,
            "log_connections = on\nlog_disconnections = on\nlog_line_prefix = '<%a|%u|%d|%h> '\n", ssl: false, onlyNode: 0);
        var builder = poold.ConnectionString(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        builder.ApplicationName = "opsx-app";
        builder.Pooling = false;
        await using (var connection = new NpgsqlConnection(builder.ConnectionString))
        {
            await connection.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
        }

        await poold.WaitForLogAsync("disconnection: session time: ");
        var prefix = $"<opsx-app|{TestRoles.ScramUser}|{PgCluster.TestDatabase}|127.0.0.1> ";
        Assert.That(poold.Log, Does.Match(
            $"(?m)^{System.Text.RegularExpressions.Regex.Escape(prefix)}INFORMATION: session [0-9]+: connection received: host=127.0.0.1 port=[0-9]+ user="));
        Assert.That(poold.Log, Does.Match(
            $"(?m)^{System.Text.RegularExpressions.Regex.Escape(prefix)}INFORMATION: session [0-9]+: disconnection: session time: 0:00:[0-9]{{2}}\\.[0-9]{{3}} user="));
        Assert.That(poold.Log, Does.Match("(?m)^<poold\\|\\|\\|> INFORMATION: listening on"), "lines outside sessions");
        Assert.That(poold.Log, Does.Not.Contain(TestRoles.Password(TestRoles.ScramUser)));
    }
}
