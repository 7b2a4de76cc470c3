using System.Diagnostics;
using System.Globalization;
using Npgsql;
using Poold.Config;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Pcp;

/// <summary>
/// The PCP port as operators use it: pgpool-II's own pcp_* tools (Debian's pgpool2) and Poold's, against Poold, with
/// the same output; node attach/detach seen by routing and SHOW POOL_NODES; stop modes.
/// </summary>
public class PcpTests
{
    private const string PcpUser = "pcpadmin";
    private const string PcpPassword = "pcp pass:1";

    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static int PrimaryPort => Cluster.Nodes[0].Port;

    private static async Task<PooldInstance> StartAsync(string extra = "")
    {
        var lines = new System.Text.StringBuilder();
        double[] weights = [0, 1, 1];
        for (var i = 0; i < 3; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {Cluster.Nodes[i].Port}\nbackend_weight{i} = {weights[i]}\n");
        }

        return await PooldInstance.StartAsync(lines + extra, ssl: false,
            new Dictionary<string, string> { ["pcp.conf"] = $"# PCP users\n{PcpUser}:{Poold.Auth.Md5Password.PcpHash(PcpPassword)}\n" });
    }

    private static int PcpPort(PooldInstance poold) => poold.Host.Settings.Get(Params.PcpPort);

    /// <summary>Runs a pcp tool: pgpool's (/usr/sbin/pcp_x) or Poold's (dotnet pcp.dll x), with a .pcppass for the password.</summary>
    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(PooldInstance poold, bool pgpool, string tool, params string[] arguments)
    {
        var passFile = Path.Combine(poold.Directory, "pcppass");
        if (!File.Exists(passFile))
        {
            await File.WriteAllTextAsync(passFile, $"*:*:{PcpUser}:{PcpPassword.Replace(":", "\\:", StringComparison.Ordinal)}\n");
            File.SetUnixFileMode(passFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        var start = new ProcessStartInfo(pgpool ? "/usr/sbin/pcp_" + tool.Replace('-', '_') : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        if (!pgpool)
        {
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pcp.dll"));
            start.ArgumentList.Add(tool);
        }

        foreach (var argument in (string[])["-h", "127.0.0.1", "-p", PcpPort(poold).ToString(CultureInfo.InvariantCulture), "-U", PcpUser, "-w", .. arguments])
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["PCPPASSFILE"] = passFile;
        return await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(60));
    }

    private static void RequirePgpoolTools()
    {
        if (!File.Exists("/usr/sbin/pcp_node_info"))
        {
            Assert.Ignore("pgpool-II's pcp tools are not installed (Debian package pgpool2; scripts/test.sh installs it as root)");
        }
    }

    [TestCase("node-count")]
    [TestCase("node-count", "-v")]
    [TestCase("node-info")]
    [TestCase("node-info", "-v")]
    [TestCase("node-info", "-n", "1")]
    [TestCase("node-info", "-n", "1", "-v")]
    [TestCase("node-info", "-n", "7")]
    [TestCase("health-check-stats", "-n", "0")]
    [TestCase("health-check-stats", "-n", "2", "-v")]
    [TestCase("pool-status")]
    [TestCase("pool-status", "-v")]
    [TestCase("proc-count")]
    [TestCase("proc-count", "-v")]
    [TestCase("proc-info")]
    [TestCase("proc-info", "-v")]
    [TestCase("proc-info", "-a")]
    [TestCase("watchdog-info")]
    public async Task PgpoolsToolsAndPooldsTools_PrintTheSame(string tool, params string[] arguments)
    {
        RequirePgpoolTools();
        await using var poold = await StartAsync();
        await using var session = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        await new NpgsqlCommand("SELECT 1", session).ExecuteScalarAsync();
        var theirs = await RunAsync(poold, pgpool: true, tool, arguments);
        var ours = await RunAsync(poold, pgpool: false, tool, arguments);
        Assert.That(theirs.Stdout + theirs.Stderr, Is.Not.Empty);
        Assert.That((ours.Code, ours.Stdout, ours.Stderr), Is.EqualTo((theirs.Code, theirs.Stdout, theirs.Stderr)));
    }

    [Test]
    public async Task NodeInfo_ReportsEveryNodeWithItsRole_FieldByField()
    {
        await using var poold = await StartAsync();
        var (code, stdout, stderr) = await RunAsync(poold, pgpool: false, "node-info");
        Assert.That(code, Is.Zero, stderr);
        var lines = stdout.TrimEnd('\n').Split('\n');
        Assert.That(lines, Has.Length.EqualTo(3));
        for (var i = 0; i < 3; i++)
        {
            var f = lines[i].Split(' ');
            Assert.That((f[0], f[1], f[2], f[3], f[4], f[5], f[6]), Is.EqualTo(("127.0.0.1", Cluster.Nodes[i].Port.ToString(CultureInfo.InvariantCulture), "2",
                i == 0 ? "0.000000" : "0.500000", "up", "up", i == 0 ? "primary" : "standby")));
        }
    }

    [Test]
    public async Task WrongPassword_IsRejected()
    {
        await using var poold = await StartAsync();
        await File.WriteAllTextAsync(Path.Combine(poold.Directory, "pcppass"), $"*:*:{PcpUser}:wrong\n");
        File.SetUnixFileMode(Path.Combine(poold.Directory, "pcppass"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var (code, _, stderr) = await RunAsync(poold, pgpool: false, "node-count");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain($"FATAL:  authentication failed for user \"{PcpUser}\""));
        if (File.Exists("/usr/sbin/pcp_node_count"))
        {
            var theirs = await RunAsync(poold, pgpool: true, "node-count");
            Assert.That((theirs.Code, theirs.Stderr), Is.EqualTo((code, stderr)), "pgpool's tool sees the same refusal");
        }
    }

    [Test]
    public async Task DetachAndAttach_AreSeenByShowPoolNodesAndByRouting()
    {
        await using var poold = await StartAsync();
        await using var session = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);

        var detach = await RunAsync(poold, pgpool: false, "detach-node", "-n", "2");
        Assert.That(detach.Stdout, Is.EqualTo("pcp_detach_node -- Command Successful\n"), detach.Stderr);
        Assert.That(await StatusAsync(session, 2), Is.EqualTo("down"));
        for (var i = 0; i < 20; i++)
        {
            Assert.That(await PortAsync(session), Is.EqualTo(Cluster.Nodes[1].Port), "only node 1 takes reads");
            await using var fresh = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
            Assert.That(await PortAsync(fresh), Is.EqualTo(Cluster.Nodes[1].Port));
        }

        var attach = await RunAsync(poold, pgpool: false, "attach-node", "-n", "2");
        Assert.That(attach.Stdout, Is.EqualTo("pcp_attach_node -- Command Successful\n"), attach.Stderr);
        Assert.That(await StatusAsync(session, 2), Is.EqualTo("up"));
        var seen = new HashSet<int>();
        for (var i = 0; i < 40 && seen.Count < 2; i++)
        {
            await using var fresh = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
            seen.Add(await PortAsync(fresh));
        }

        Assert.That(seen, Is.EquivalentTo(new[] { Cluster.Nodes[1].Port, Cluster.Nodes[2].Port }), "node 2 takes reads again");
    }

    private static async Task<int> PortAsync(NpgsqlConnection connection) =>
        Convert.ToInt32(await new NpgsqlCommand("SELECT inet_server_port()", connection).ExecuteScalarAsync(), CultureInfo.InvariantCulture);

    private static async Task<string> StatusAsync(NpgsqlConnection connection, int node)
    {
        await using var reader = await new NpgsqlCommand("SHOW POOL_NODES", connection).ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            if (reader.GetString(0) == node.ToString(CultureInfo.InvariantCulture))
            {
                return reader.GetString(reader.GetOrdinal("status"));
            }
        }

        throw new AssertionException($"node {node} missing from SHOW POOL_NODES");
    }

    [Test]
    public async Task ShowPoolCommands_ReturnPgpoolsColumns_ToNpgsqlAndPsql()
    {
        await using var poold = await StartAsync();
        await using var session = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
        await using (var reader = await new NpgsqlCommand("show pool_nodes;", session).ExecuteReaderAsync())
        {
            var columns = Enumerable.Range(0, reader.FieldCount).Select(reader.GetName).ToList();
            Assert.That(columns, Is.EqualTo(new[]
            {
                "node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role", "select_cnt", "load_balance_node",
                "replication_delay", "replication_state", "replication_sync_state", "last_status_change",
            }));
            var rows = 0;
            while (await reader.ReadAsync())
            {
                rows++;
            }

            Assert.That(rows, Is.EqualTo(3));
        }

        var poolVersion = await new NpgsqlCommand("SHOW POOL_VERSION", session).ExecuteScalarAsync();
        Assert.That(poolVersion, Does.StartWith("4.3.5 (poold "));
        var versionCommand = new System.Diagnostics.ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "poold.dll"), "--version" } };
        var (exit, stdout, _) = await ProcessRunner.RunAsync(versionCommand, TimeSpan.FromSeconds(60));
        Assert.That((exit, stdout.Trim()), Is.EqualTo((0, poolVersion)), "poold --version and SHOW POOL_VERSION agree");
        Assert.That(await new NpgsqlCommand("PGPOOL SHOW port", session).ExecuteScalarAsync(), Is.EqualTo(poold.Port.ToString(CultureInfo.InvariantCulture)));
        Assert.That(await new NpgsqlCommand("PGPOOL SHOW backend_weight1", session).ExecuteScalarAsync(), Is.EqualTo("1"));
        Assert.That(await new NpgsqlCommand("PGPOOL SHOW sr_check_password", session).ExecuteScalarAsync(), Is.EqualTo("*****"));
        await new NpgsqlCommand("PGPOOL SET client_idle_limit = 600", session).ExecuteNonQueryAsync();
        Assert.That(await new NpgsqlCommand("PGPOOL SHOW client_idle_limit", session).ExecuteScalarAsync(), Is.EqualTo("600"));
        var e = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("PGPOOL SET port = 1", session).ExecuteNonQueryAsync());
        Assert.That(e!.MessageText, Does.Contain("cannot be changed"));
        await new NpgsqlCommand("PGPOOL RESET ALL", session).ExecuteNonQueryAsync();
        Assert.That(await new NpgsqlCommand("PGPOOL SHOW client_idle_limit", session).ExecuteScalarAsync(), Is.EqualTo("0"));
        Assert.That(await new NpgsqlCommand("SELECT 40 + 2", session).ExecuteScalarAsync(), Is.EqualTo(42), "the session goes on");

        var (code, output) = await Poold.IntegrationTests.Proxy.ProxyTests.Run("psql",
            $"\"host=127.0.0.1 port={poold.Port} user={TestRoles.ScramUser} dbname={PgCluster.TestDatabase} sslmode=disable\" -Atc \"SHOW POOL_PROCESSES\" -c \"SHOW POOL_BACKEND_STATS\"",
            ("PGPASSWORD", TestRoles.Password(TestRoles.ScramUser)), ("PGSSLMODE", "disable"));
        Assert.That(code, Is.Zero, output);
        Assert.That(output, Does.Contain($"|{TestRoles.ScramUser}|"), "SHOW POOL_PROCESSES lists the sessions");
        Assert.That(output.Split('\n').Count(l => l.StartsWith("0|127.0.0.1|", StringComparison.Ordinal) || l.StartsWith("1|127.0.0.1|", StringComparison.Ordinal)
                                                  || l.StartsWith("2|127.0.0.1|", StringComparison.Ordinal)), Is.EqualTo(3), output);
    }

    [Test]
    public async Task StopFast_DisconnectsSessions_StopSmart_WaitsForThem()
    {
        await using (var poold = await StartAsync())
        {
            await using var session = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
            var stop = await RunAsync(poold, pgpool: false, "stop-pgpool", "-m", "fast");
            Assert.That(stop.Stdout, Is.EqualTo("pcp_stop_pgpool -- Command Successful\n"), stop.Stderr);
            await poold.Host.Completion.WaitAsync(TimeSpan.FromSeconds(30));
            var e = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("SELECT 1", session).ExecuteScalarAsync());
            Assert.That(e!.SqlState, Is.EqualTo("57P01"));
        }

        await using (var poold = await StartAsync())
        {
            var session = await poold.OpenAsync(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
            var stop = await RunAsync(poold, pgpool: false, "stop-pgpool");
            Assert.That(stop.Code, Is.Zero, stop.Stderr);
            await Poll.UntilAsync(async () =>
            {
                using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                try
                {
                    await probe.ConnectAsync("127.0.0.1", poold.Port);
                    return false;
                }
                catch (System.Net.Sockets.SocketException)
                {
                    return true;
                }
            }, TimeSpan.FromSeconds(15), "the listener to close (shutdown has begun)");
            Assert.That(poold.Host.Completion.IsCompleted, Is.False, "smart shutdown waits for the session");
            Assert.That(await new NpgsqlCommand("SELECT 5", session).ExecuteScalarAsync(), Is.EqualTo(5), "and the session still works");
            await session.DisposeAsync();
            await poold.Host.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        }
    }
}

/// <summary>Poold's pcp_* tools against a real pgpool-II (Debian's 4.3.5) in front of the test cluster.</summary>
public class PcpToolsAgainstPgpoolTests
{
    private static readonly string[][] Invocations =
    [
        ["node-count"], ["node-count", "-v"], ["node-info"], ["node-info", "-v"], ["node-info", "-n", "1"], ["health-check-stats", "-n", "0"],
        ["health-check-stats", "-n", "1", "-v"], ["pool-status"], ["pool-status", "-v"], ["proc-count"], ["proc-count", "-v"], ["proc-info"],
        ["proc-info", "-a"], ["proc-info", "-v"], ["watchdog-info"], ["node-info", "-n", "9"],
    ];

    [Test]
    public async Task PooldsTools_PrintWhatPgpoolsToolsPrint_AgainstRealPgpool()
    {
        if (!File.Exists("/usr/sbin/pgpool") || !File.Exists("/usr/sbin/pcp_node_info"))
        {
            Assert.Ignore("pgpool-II is not installed (Debian package pgpool2; scripts/test.sh installs it as root)");
        }

        var cluster = ClusterFixture.Cluster;
        var dir = Directory.CreateTempSubdirectory("pgpool-it-").FullName;
        var port = FreePort.Get();
        var pcpPort = FreePort.Get();
        var conf = new System.Text.StringBuilder($"""
            backend_clustering_mode = 'streaming_replication'
            listen_addresses = '127.0.0.1'
            port = {port}
            socket_dir = '{dir}'
            pcp_listen_addresses = '127.0.0.1'
            pcp_port = {pcpPort}
            pcp_socket_dir = '{dir}'
            enable_pool_hba = off
            sr_check_period = 0
            sr_check_user = '{TestRoles.TrustUser}'
            sr_check_database = '{PgCluster.TestDatabase}'
            health_check_period = 0
            search_primary_node_timeout = 10
            pid_file_name = '{dir}/pgpool.pid'
            logdir = '{dir}'
            num_init_children = 2
            max_pool = 1

            """);
        for (var i = 0; i < 2; i++)
        {
            conf.Append(CultureInfo.InvariantCulture, $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {cluster.Nodes[i].Port}\nbackend_weight{i} = 1\n");
        }

        await File.WriteAllTextAsync(Path.Combine(dir, "pgpool.conf"), conf.ToString());
        await File.WriteAllTextAsync(Path.Combine(dir, "pcp.conf"), $"pcpadmin:{Poold.Auth.Md5Password.PcpHash("pcppass")}\n");
        await File.WriteAllTextAsync(Path.Combine(dir, "pcppass"), "*:*:pcpadmin:pcppass\n");
        File.SetUnixFileMode(Path.Combine(dir, "pcppass"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var start = new ProcessStartInfo("/usr/sbin/pgpool") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])["-n", "-f", Path.Combine(dir, "pgpool.conf"), "-F", Path.Combine(dir, "pcp.conf")])
        {
            start.ArgumentList.Add(argument);
        }

        using var pgpool = Process.Start(start)!;
        var log = new System.Text.StringBuilder();
        pgpool.OutputDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        pgpool.ErrorDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        pgpool.BeginOutputReadLine();
        pgpool.BeginErrorReadLine();
        try
        {
            async Task<(int, string, string)> Run(bool theirs, string[] invocation)
            {
                var info = new ProcessStartInfo(theirs ? "/usr/sbin/pcp_" + invocation[0].Replace('-', '_') : "dotnet")
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    RedirectStandardInput = true,
                };
                if (!theirs)
                {
                    info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pcp.dll"));
                    info.ArgumentList.Add(invocation[0]);
                }

                foreach (var argument in (string[])["-h", "127.0.0.1", "-p", pcpPort.ToString(CultureInfo.InvariantCulture), "-U", "pcpadmin", "-w", .. invocation[1..]])
                {
                    info.ArgumentList.Add(argument);
                }

                info.Environment["PCPPASSFILE"] = Path.Combine(dir, "pcppass");
                return await ProcessRunner.RunAsync(info, TimeSpan.FromSeconds(60));
            }

            await Poll.UntilAsync(async () => (await Run(true, ["node-count"])).Item1 == 0, TimeSpan.FromSeconds(60),
                "pgpool-II to answer on its PCP port");
            foreach (var invocation in Invocations)
            {
                var theirs = await Run(true, invocation);
                var ours = await Run(false, invocation);
                Assert.That(ours, Is.EqualTo(theirs), string.Join(' ', invocation));
            }
        }
        catch
        {
            lock (log)
            {
                TestContext.Out.WriteLine("---- pgpool log ----\n" + log);
            }

            throw;
        }
        finally
        {
            // SIGTERM, so pgpool-II releases its shared memory; SIGKILL only if it does not go.
            using (var term = Process.Start("kill", ["-TERM", pgpool.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync();
            }

            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                await pgpool.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                pgpool.Kill(entireProcessTree: true);
                await pgpool.WaitForExitAsync();
            }

            Directory.Delete(dir, recursive: true);
        }
    }
}
