using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Npgsql;
using Poold.Config;
using Poold.Hosting;
using Poold.IntegrationTests.Cluster;

namespace Poold.IntegrationTests.Support;

/// <summary>
/// A Poold host running in the test process, on a free loopback port, in front of a <see cref="PgCluster"/>, with a
/// generated pgpool.conf and a self-signed TLS certificate. Its log is captured so tests can read it.
/// </summary>
internal sealed class PooldInstance : IAsyncDisposable
{
    private readonly StringWriter _log;
    private readonly Serilog.Core.Logger _logger;

    private PooldInstance(PooldHost host, string directory, int port, StringWriter log, Serilog.Core.Logger logger)
    {
        Host = host;
        Directory = directory;
        Port = port;
        _log = log;
        _logger = logger;
    }

    public PooldHost Host { get; }

    public string Directory { get; }

    public int Port { get; }

    /// <summary>Everything Poold logged so far.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Waits until the log (written asynchronously) contains <paramref name="text"/>.</summary>
    public async Task WaitForLogAsync(string text)
    {
        try
        {
            await Poll.UntilAsync(() => Task.FromResult(Log.Contains(text, StringComparison.Ordinal)), TimeSpan.FromSeconds(10),
                $"the log to contain \"{text}\"");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; the log:\n{Log}", e);
        }
    }

    /// <summary>Writes a config for <paramref name="cluster"/> (primary first), plus <paramref name="extra"/> lines, and starts Poold.</summary>
    public static async Task<PooldInstance> StartAsync(PgCluster cluster, string extra = "", bool ssl = true, int? onlyNode = null, bool debug = true)
    {
        return await StartAsync(BackendLines(cluster, onlyNode) + extra, ssl, debug: debug);
    }

    /// <summary>Starts Poold with <paramref name="backendsAndExtra"/>; <paramref name="debug"/> off logs as a production daemon (no debug lines).</summary>
    public static async Task<PooldInstance> StartAsync(string backendsAndExtra, bool ssl = true, IReadOnlyDictionary<string, string>? files = null,
        string? keyFile = null, bool debug = true)
    {
        var (dir, port, conf) = await WriteConfigAsync(backendsAndExtra, ssl);
        foreach (var (name, content) in files ?? new Dictionary<string, string>())
        {
            var path = Path.Combine(dir, name);
            await File.WriteAllTextAsync(path, content);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        var (settings, _) = PooldSettings.Load(conf);
        var log = new StringWriter(CultureInfo.InvariantCulture);
        var logger = Logging.Create(settings, debug, new SynchronizedWriter(log));
        var options = new HostOptions(HostCommand.Run, conf, null, null, keyFile is null ? null : Path.Combine(dir, keyFile), true, false, true,
            StopMode.Fast);
        try
        {
            var host = PooldHost.Start(settings, options, logger);
            return new PooldInstance(host, dir, port, log, logger);
        }
        catch
        {
            await logger.DisposeAsync();
            throw;
        }
    }

    /// <summary>Poold in front of one node of <paramref name="cluster"/> with pool_hba.conf, pool_passwd and a key file.</summary>
    public static Task<PooldInstance> StartWithAuthAsync(PgCluster cluster, string hba, string poolPasswd, string extra = "", bool ssl = true,
        string key = "poold-test-key\n") =>
        StartAsync(BackendLines(cluster, onlyNode: 0) + "enable_pool_hba = on\npool_passwd = 'pool_passwd'\n" + extra, ssl,
            new Dictionary<string, string> { ["pool_hba.conf"] = hba, ["pool_passwd"] = poolPasswd, ["pgpoolkey"] = key }, "pgpoolkey");

    /// <summary>The backend lines for <paramref name="cluster"/> (primary first), or for one node of it.</summary>
    public static string BackendLines(PgCluster cluster, int? onlyNode = null)
    {
        var backends = new StringBuilder();
        var nodes = onlyNode is { } n ? new[] { cluster.Nodes[n] } : cluster.Nodes.ToArray();
        for (var i = 0; i < nodes.Length; i++)
        {
            backends.Append(CultureInfo.InvariantCulture, $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {nodes[i].Port}\nbackend_weight{i} = 1\n");
        }

        return backends.ToString();
    }

    /// <summary>A fresh directory with a certificate and a poold.conf listening on a free port; returns where it all is.</summary>
    public static async Task<(string Directory, int Port, string ConfigFile)> WriteConfigAsync(string backendsAndExtra, bool ssl, int? port = null)
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("poold-it-").FullName;
        WriteCertificate(dir);
        port ??= FreePort.Get();
        var pcpPort = FreePort.Get();
        var conf = Path.Combine(dir, "poold.conf");
        await File.WriteAllTextAsync(conf, $"""
            listen_addresses = '127.0.0.1'
            port = {port}
            unix_socket_directories = '{dir}'
            pcp_socket_dir = '{dir}'
            pcp_listen_addresses = '127.0.0.1'
            pcp_port = {pcpPort}
            ssl = {(ssl ? "on" : "off")}
            ssl_cert = 'server.crt'
            ssl_key = 'server.key'
            allow_clear_text_frontend_auth = on
            num_init_children = 200
            pid_file_name = '{dir}/poold.pid'
            logdir = '{dir}'
            log_min_messages = debug1
            {backendsAndExtra}
            """);
        return (dir, port.Value, conf);
    }

    /// <summary>A self-signed certificate for CN=localhost, as PEM files next to the config.</summary>
    private static void WriteCertificate(string dir)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(Path.Combine(dir, "server.crt"), cert.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "server.key"), key.ExportPkcs8PrivateKeyPem());
    }

    public NpgsqlConnectionStringBuilder ConnectionString(string user, string password, string database = PgCluster.TestDatabase,
        SslMode sslMode = SslMode.Require) => new()
        {
            Host = "127.0.0.1",
            Port = Port,
            Username = user,
            Password = password,
            Database = database,
            SslMode = sslMode,
            Pooling = false,
            Timeout = 30,
            CommandTimeout = 60,
        };

    public async Task<NpgsqlConnection> OpenAsync(string user, string password, string database = PgCluster.TestDatabase,
        SslMode sslMode = SslMode.Require)
    {
        var connection = new NpgsqlConnection(ConnectionString(user, password, database, sslMode).ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public async ValueTask DisposeAsync()
    {
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
        {
            await TestContext.Out.WriteLineAsync("---- Poold log ----\n" + Log);
        }

        await Host.DisposeAsync();
        await _logger.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A socket file still closing: the temp directory is cleaned by the OS.
        }
    }

    private sealed class SynchronizedWriter(StringWriter inner) : TextWriter
    {
        public override Encoding Encoding => inner.Encoding;

        public override void Write(char value)
        {
            lock (inner)
            {
                inner.Write(value);
            }
        }

        public override void Write(string? value)
        {
            lock (inner)
            {
                inner.Write(value);
            }
        }
    }
}
