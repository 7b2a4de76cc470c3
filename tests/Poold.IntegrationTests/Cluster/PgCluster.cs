using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Npgsql;
using Poold.Backends;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Cluster;

/// <summary>
/// A real PostgreSQL 15 primary and streaming replicas, started from the machine's binaries in a temporary directory,
/// each on a free loopback port. As root the servers run as the <c>postgres</c> user. Every external command has a
/// deadline, and failures carry the tail of the server's log.
/// </summary>
internal sealed partial class PgCluster : IAsyncDisposable
{
    public const string TestDatabase = "poold_test";
    public const string BinDirectory = "/usr/lib/postgresql/15/bin";

    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(120);
    private static readonly ConcurrentDictionary<PgCluster, bool> Live = new();
    private readonly List<PgNode> _nodes = [];
    private int _disposed;

    static PgCluster() => AppDomain.CurrentDomain.ProcessExit += (_, _) => StopAllImmediately();

    private PgCluster(string directory) => Directory = directory;

    public string Directory { get; }

    public IReadOnlyList<PgNode> Nodes => _nodes;

    private static bool AsRoot => Environment.IsPrivilegedProcess;

    /// <summary>Initialises, starts and fills a primary, then clones and starts <paramref name="replicas"/> standbys.</summary>
    public static async Task<PgCluster> StartAsync(int replicas = 2)
    {
        if (!File.Exists(Path.Combine(BinDirectory, "postgres")))
        {
            throw new InvalidOperationException(
                $"PostgreSQL 15 server binaries not found in {BinDirectory}: install Debian's postgresql-15 (scripts/test.sh does it as root)");
        }

        var dir = System.IO.Directory.CreateTempSubdirectory("poold-pg-").FullName;
        var cluster = new PgCluster(dir);
        Live[cluster] = true;
        try
        {
            await ChownAsync(dir);
            await cluster.InitPrimaryAsync();
            for (var i = 1; i <= replicas; i++)
            {
                await cluster.AddReplicaAsync(i);
            }

            await Poll.UntilAsync(async () => await cluster.StreamingReplicaCountAsync() == replicas, TimeSpan.FromSeconds(60),
                $"{replicas} replicas to stream from the primary");
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task InitPrimaryAsync()
    {
        var node = NewNode(0);
        await RunAsync(Bin("initdb"), ["-D", node.DataDirectory, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"], asPostgres: true);
        await WriteAsPostgresAsync(Path.Combine(node.DataDirectory, "pg_hba.conf"), TestRoles.HbaConf + "\n");
        WriteCertificate(node.DataDirectory);
        await AppendConfigAsync(node, $"""
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '{Directory}'
            max_connections = 300
            shared_buffers = 16MB
            fsync = off
            synchronous_commit = off
            full_page_writes = off
            wal_level = logical
            max_wal_senders = 10
            wal_keep_size = '512MB'
            hot_standby = on
            ssl = on
            ssl_cert_file = 'server.crt'
            ssl_key_file = 'server.key'
            log_min_messages = warning
            """);
        await StartWithFreePortAsync(node);
        string[] psql = ["-h", Directory, "-p", Port(node), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"];
        await RunAsync("psql", [.. psql, .. TestRoles.SetupStatements.SelectMany(sql => new[] { "-c", sql })], asPostgres: true);
        await RunAsync("psql", ["-h", Directory, "-p", Port(node), "-U", "postgres", "-d", TestDatabase, "-v", "ON_ERROR_STOP=1", "-q",
            "-c", "GRANT ALL ON SCHEMA public TO PUBLIC"], asPostgres: true);
    }

    private async Task AddReplicaAsync(int index)
    {
        var primary = _nodes[0];
        var node = NewNode(index);
        await RunAsync(Bin("pg_basebackup"), ["-h", primary.Host, "-p", Port(primary), "-U", "postgres", "-D", node.DataDirectory, "-R", "-X", "stream",
            "-c", "fast"], asPostgres: true);
        await AppendConfigAsync(node, $"primary_conninfo = 'host=127.0.0.1 port={primary.Port} user=postgres application_name={node.Name}'",
            "postgresql.auto.conf");
        await StartWithFreePortAsync(node);
    }

    private PgNode NewNode(int index)
    {
        var node = new PgNode(index, Path.Combine(Directory, $"node{index}"), Path.Combine(Directory, $"node{index}.log"));
        _nodes.Add(node);
        return node;
    }

    /// <summary>Starts on a free port; another process may take the port between the check and the bind, so retry.</summary>
    private async Task StartWithFreePortAsync(PgNode node)
    {
        for (var attempt = 1; ; attempt++)
        {
            node.Port = FreePort.Get();
            await AppendConfigAsync(node, $"port = {node.Port}");
            try
            {
                await StartNodeAsync(node.Index);
                return;
            }
            catch (InvalidOperationException) when (attempt < 5 && LogTail(node).Contains("could not bind", StringComparison.Ordinal))
            {
                // Port taken in the meantime: try another.
            }
        }
    }

    public async Task StartNodeAsync(int index)
    {
        var node = _nodes[index];
        await RunAsync(Bin("pg_ctl"), ["-D", node.DataDirectory, "-l", node.LogFile, "-w", "-t", "60", "start"], asPostgres: true, node);
        node.Running = true;
    }

    public async Task StopNodeAsync(int index, string mode = "fast")
    {
        var node = _nodes[index];
        await RunAsync(Bin("pg_ctl"), ["-D", node.DataDirectory, "-m", mode, "-w", "-t", "60", "stop"], asPostgres: true, node);
        node.Running = false;
    }

    /// <summary>SIGKILL to the postmaster, as a crash; waits until its processes are gone so the node can be restarted.</summary>
    public async Task KillNodeAsync(int index)
    {
        var node = _nodes[index];
        var pidLine = (await File.ReadAllLinesAsync(Path.Combine(node.DataDirectory, "postmaster.pid")))[0];
        using var postmaster = Process.GetProcessById(int.Parse(pidLine, CultureInfo.InvariantCulture));
        postmaster.Kill();
        await postmaster.WaitForExitAsync(new CancellationTokenSource(CommandTimeout).Token);
        node.Running = false;
        await Poll.UntilAsync(async () => !await AcceptsConnectionsAsync(node), TimeSpan.FromSeconds(30), $"{node} to stop accepting connections");
    }

    /// <summary>Promotes a standby and waits until it accepts writes.</summary>
    public async Task PromoteAsync(int index)
    {
        var node = _nodes[index];
        await RunAsync(Bin("pg_ctl"), ["-D", node.DataDirectory, "-w", "-t", "60", "promote"], asPostgres: true, node);
        await Poll.UntilAsync(async () => !(bool)(await ScalarAsync(index, "SELECT pg_is_in_recovery()"))!, TimeSpan.FromSeconds(60),
            $"{node} to leave recovery");
    }

    /// <summary>
    /// Waits until every running standby has replayed everything the primary has logged so far: the insert position,
    /// not the write position, which lags behind commits while synchronous_commit is off, taken back to the page boundary
    /// when it lies right after a page header (a standby that replayed the last record stops there).
    /// </summary>
    public async Task WaitForReplayAsync(TimeSpan? timeout = null)
    {
        var insert = ((string)(await ScalarAsync(0, "SELECT pg_current_wal_insert_lsn() || ' ' || current_setting('wal_block_size')"))!).Split(' ');
        var lsn = Poold.Routing.ReadYourWrites.Lsn(Poold.Routing.ReadYourWrites.EndOfWrites(NodeMonitor.ParseLsn(insert[0]), int.Parse(insert[1], CultureInfo.InvariantCulture)));
        foreach (var node in _nodes.Skip(1).Where(n => n.Running))
        {
            try
            {
                await Poll.UntilAsync(async () => (bool)(await ScalarAsync(node.Index,
                        $"SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)"))!,
                    timeout ?? TimeSpan.FromSeconds(30), $"{node} to replay up to {lsn}");
            }
            catch (TimeoutException e)
            {
                // Why: a stream that stopped (received = replayed, and the log's end says why), or a session on the standby
                // holding replay back (which one, and what it last ran).
                throw new TimeoutException($"{e.Message}; sessions on {node}: {await DescribeSessionsAsync(node.Index)}; its log ends: {LogTail(node)}", e);
            }
        }
    }

    /// <summary>The client sessions on a node, one line each (for a failure message): pid, user, application, state, transaction age, wait, query.</summary>
    private async Task<string> DescribeSessionsAsync(int index)
    {
        try
        {
            await using var connection = new NpgsqlConnection(ConnectionString(index).ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(
                """
                SELECT format('replay paused=%s received=%s replayed=%s; ', pg_is_wal_replay_paused(), pg_last_wal_receive_lsn(),
                       pg_last_wal_replay_lsn())
                    || coalesce(string_agg(format('[pid %s %s app=%s %s xact=%ss wait=%s:%s query=%s]', pid, usename, application_name,
                       state, round(extract(epoch FROM now() - xact_start)::numeric, 1), wait_event_type, wait_event, left(query, 200)), ' '),
                       'no client sessions')
                FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                """, connection);
            return (await command.ExecuteScalarAsync()) as string ?? "none";
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            return $"(could not list them: {e.Message})";
        }
    }

    public NpgsqlConnectionStringBuilder ConnectionString(int index, string user = TestRoles.Admin, string? password = null,
        string database = TestDatabase) => new()
        {
            Host = _nodes[index].Host,
            Port = _nodes[index].Port,
            Username = user,
            Password = password ?? TestRoles.Password(user),
            Database = database,
            Pooling = false,
            Timeout = 15,
            SslMode = SslMode.Disable,
        };

    public async Task<object?> ScalarAsync(int index, string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString(index).ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }

    public async Task<int> StreamingReplicaCountAsync() =>
        (int)(long)(await ScalarAsync(0, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))!;

    private async Task<bool> AcceptsConnectionsAsync(PgNode node)
    {
        try
        {
            await ScalarAsync(node.Index, "SELECT 1");
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
        {
            return false;
        }
    }

    private static string Port(PgNode node) => node.Port.ToString(CultureInfo.InvariantCulture);

    private static string Bin(string name) => Path.Combine(BinDirectory, name);

    /// <summary>A self-signed certificate so the servers accept TLS (for hostssl roles and backend TLS tests).</summary>
    private static void WriteCertificate(string dataDirectory)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(2));
        var certPath = Path.Combine(dataDirectory, "server.crt");
        var keyPath = Path.Combine(dataDirectory, "server.key");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        File.SetUnixFileMode(keyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (AsRoot)
        {
            RunSync("chown", ["postgres:postgres", certPath, keyPath]);
        }
    }

    private static async Task AppendConfigAsync(PgNode node, string text, string file = "postgresql.conf") =>
        await File.AppendAllTextAsync(Path.Combine(node.DataDirectory, file), "\n" + text + "\n");

    private static async Task WriteAsPostgresAsync(string path, string text) => await File.WriteAllTextAsync(path, text);

    private static async Task ChownAsync(string path)
    {
        if (AsRoot)
        {
            await RunAsync("chown", ["postgres:postgres", path], asPostgres: false);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
                | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var node in _nodes.Where(n => File.Exists(Path.Combine(n.DataDirectory, "postmaster.pid"))).Reverse())
        {
            try
            {
                await RunAsync(Bin("pg_ctl"), ["-D", node.DataDirectory, "-m", "immediate", "-w", "-t", "30", "stop"], asPostgres: true);
            }
            catch (InvalidOperationException)
            {
                // Already stopped (killed by a test).
            }
        }

        Live.TryRemove(this, out _);
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Leftover files in /tmp are harmless.
        }
    }

    /// <summary>For process exit and Ctrl-C: no server may outlive the test run.</summary>
    public static void StopAllImmediately()
    {
        foreach (var cluster in Live.Keys)
        {
            foreach (var node in cluster._nodes)
            {
                if (File.Exists(Path.Combine(node.DataDirectory, "postmaster.pid")))
                {
                    RunSync(AsRoot ? "runuser" : Bin("pg_ctl"),
                        AsRoot ? ["-u", "postgres", "--", Bin("pg_ctl"), "-D", node.DataDirectory, "-m", "immediate", "stop"]
                               : ["-D", node.DataDirectory, "-m", "immediate", "stop"]);
                }
            }
        }
    }
}
