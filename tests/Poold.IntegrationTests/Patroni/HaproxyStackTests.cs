using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Patroni;

/// <summary>
/// The stack the issue names (operations issue 21): a three-member Patroni cluster on etcd, two Poold daemons
/// following it, HAProxy in front of them; a client workload through HAProxy keeps a ledger of acknowledged writes
/// through a cancel across instances, a Patroni failover and a smart stop of one Poold.
/// </summary>
[NonParallelizable]
public class HaproxyStackTests
{
    private const string HaproxyBinary = "/usr/sbin/haproxy";

    [Test]
    public async Task TwoPooldsBehindHaproxy_FollowPatroni_ForwardCancels_AndStopOneByOne_WithoutLosingAWrite()
    {
        if (PatroniCluster.Unavailable is { } why)
        {
            Assert.Ignore(why);
        }

        if (!File.Exists(HaproxyBinary))
        {
            Assert.Ignore("haproxy is not installed (apt-get install -y haproxy)");
        }

        await using var patroni = await PatroniCluster.StartAsync();
        var (portA, portB, front) = (FreePort.Get(), FreePort.Get(), FreePort.Get());
        var (metricsA, metricsB) = (FreePort.Get(), FreePort.Get());
        string Config(int peer, int other, int otherPort, int metrics) =>
            string.Concat(patroni.Members.Select((m, i) => $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {m.PgPort}\nbackend_weight{i} = 1\n"))
            + $"backend_discovery = 'patroni'\npatroni_urls = '{patroni.Urls}'\npatroni_check_period = 200\n"
            + "health_check_period = 1\nhealth_check_timeout = 5\nhealth_check_user = 'postgres'\nsr_check_period = 1\nsr_check_user = 'postgres'\n"
            + $"peer_id = {peer}\npeers = '{other}:127.0.0.1:{otherPort}'\nlog_min_messages = info\n"
            + $"metrics_listen_addresses = '127.0.0.1'\nmetrics_port = {metrics}\n";
        await using var a = await PooldProcess.StartAsync(Config(1, 2, portB, metricsA), port: portA);
        await using var b = await PooldProcess.StartAsync(Config(2, 1, portA, metricsB), port: portB);
        await using var haproxy = await HaproxyAsync(front, (portA, metricsA), (portB, metricsB));

        var client = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = front,
            Username = "postgres",
            Database = "postgres",
            SslMode = SslMode.Disable,
            Pooling = false,
            Timeout = 10,
            CommandTimeout = 10,
        }.ConnectionString;
        await using (var setup = new NpgsqlConnection(client))
        {
            await setup.OpenAsync();
            await new NpgsqlCommand("CREATE TABLE ledger (id int PRIMARY KEY, via int)", setup).ExecuteNonQueryAsync();
        }

        // Writers that reconnect through HAProxy every 20 inserts (so they spread over both Poolds and leave a
        // stopping one), recording each acknowledged insert and each error with the phase it happened in.
        var acknowledged = new ConcurrentBag<int>();
        var errors = new ConcurrentBag<(string Phase, string Message)>();
        var phase = "start";
        var next = 0;
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await using var connection = new NpgsqlConnection(client);
                    await connection.OpenAsync();
                    for (var i = 0; i < 20 && !stop.IsCancellationRequested; i++)
                    {
                        var id = Interlocked.Increment(ref next);
                        await new NpgsqlCommand($"INSERT INTO ledger VALUES ({id}, inet_server_port())", connection).ExecuteNonQueryAsync();
                        acknowledged.Add(id);
                    }
                }
                catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException)
                {
                    errors.Add((Volatile.Read(ref phase), e.Message));
                    await Task.Delay(50);
                }
            }
        })).ToList();
        await Poll.UntilAsync(() => Task.FromResult(acknowledged.Count >= 100), TimeSpan.FromSeconds(30), "the workload to run");

        // A cancel through HAProxy: it may land on either Poold; the one without the session forwards it.
        var cancelWatch = Stopwatch.StartNew();
        for (var attempt = 0; attempt < 2; attempt++)
        {
            await using var sleeper = await RawClient.ConnectAsync(front, "postgres", "postgres", "sleeper");
            await sleeper.SendAsync(RawClient.Query("SELECT pg_sleep(30)"));
            var leaderPort = (await patroni.ClusterAsync()).Single(m => m.Role == "leader").Port;
            await Poll.UntilAsync(async () =>
            {
                await using var admin = new NpgsqlConnection($"Host=127.0.0.1;Port={leaderPort};Username=postgres;Database=postgres;Pooling=false");
                await admin.OpenAsync();
                return await new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'", admin)
                    .ExecuteScalarAsync() is > 0L;
            }, TimeSpan.FromSeconds(10), "the statement to run");
            // First through HAProxy (either Poold); then straight to the one that does not hold the session, which the
            // peer id in the key's top byte names.
            var holder = (uint)sleeper.BackendKey.Secret >> 24;
            cancelWatch.Restart();
            await sleeper.CancelThroughAsync(attempt == 0 ? front : holder == 1 ? portB : portA);
            List<BackendMessage> replies;
            try
            {
                replies = await sleeper.ReadUntilReadyAsync(TimeSpan.FromSeconds(20));
            }
            catch (TimeoutException)
            {
                var cancels = (a.Output + b.Output).Split('\n').Where(l => l.Contains("cancel", StringComparison.OrdinalIgnoreCase));
                throw new AssertionException($"attempt {attempt}: the statement was not cancelled (key of peer {holder}); cancel log lines:\n"
                    + string.Join('\n', cancels));
            }

            Assert.That(replies.Single(m => m.Code == 'E').SqlState, Is.EqualTo("57014"), attempt == 0 ? "canceled through HAProxy" : "canceled through the other Poold");
        }

        var cancelled = cancelWatch.Elapsed;
        Assert.That(a.Output + b.Output, Does.Contain("forwarded to 127.0.0.1:"), "the second cancel went through the other Poold");

        // Patroni fails over; both Poolds follow.
        Volatile.Write(ref phase, "failover");
        var leader = (await patroni.ClusterAsync()).Single(m => m.Role == "leader");
        var watch = Stopwatch.StartNew();
        await patroni.StopMemberAsync(patroni.Members.Single(m => m.PgPort == leader.Port));
        var newLeaderPort = 0;
        await Poll.UntilAsync(async () =>
        {
            newLeaderPort = (await patroni.ClusterAsync()).FirstOrDefault(m => m.Role == "leader" && m.State == "running" && m.Port != leader.Port).Port;
            return newLeaderPort != 0 && await PrimaryPortAsync(portA) == newLeaderPort && await PrimaryPortAsync(portB) == newLeaderPort;
        }, TimeSpan.FromSeconds(60), "both Poolds to route writes to Patroni's new leader");
        var followed = watch.Elapsed;
        var count = acknowledged.Count;
        await Poll.UntilAsync(() => Task.FromResult(acknowledged.Count >= count + 100), TimeSpan.FromSeconds(30), "writes after the failover");

        await Poll.UntilAsync(patroni.SettledAsync, TimeSpan.FromSeconds(60), "Patroni's replicas to follow the new leader");

        // Rolling restart, first step: Poold A stops smartly; its clients finish, new ones go to B.
        Volatile.Write(ref phase, "smart stop");
        var stopA = await a.RunCommandAsync("-m", "smart", "stop");
        Assert.That(stopA.ExitCode, Is.Zero, stopA.Output);
        await a.WaitForExitAsync(TimeSpan.FromSeconds(60));
        count = acknowledged.Count;
        await Poll.UntilAsync(() => Task.FromResult(acknowledged.Count >= count + 100), TimeSpan.FromSeconds(30), "writes through B alone");
        Volatile.Write(ref phase, "end");
        await stop.CancelAsync();
        await Task.WhenAll(writers);

        await using var direct = new NpgsqlConnection($"Host=127.0.0.1;Port={newLeaderPort};Username=postgres;Database=postgres;Pooling=false");
        await direct.OpenAsync();
        var stored = new HashSet<int>();
        await using (var reader = await new NpgsqlCommand("SELECT id FROM ledger", direct).ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                stored.Add(reader.GetInt32(0));
            }
        }

        await TestContext.Out.WriteLineAsync($"cancel through HAProxy answered in {cancelled.TotalMilliseconds:0} ms; both Poolds followed Patroni's " +
            $"new leader {followed.TotalSeconds:0.0} s after the leader's stop; {acknowledged.Count} acknowledged inserts; errors by phase: " +
            string.Join(", ", errors.GroupBy(e => e.Phase).Select(g => $"{g.Key} {g.Count()} ({g.First().Message})")));
        Assert.That(acknowledged.Where(id => !stored.Contains(id)).ToList(), Is.Empty, "every acknowledged insert is on the new primary");
        Assert.That(errors.Where(e => e.Phase is "smart stop" or "start").Select(e => e.Message), Is.Empty,
            "no client sees an error while a Poold stops smartly (HAProxy sends new clients to the other one)");
    }

    /// <summary>The port of the node a Poold currently takes as the primary (from its SHOW POOL_NODES), 0 when none.</summary>
    private static async Task<int> PrimaryPortAsync(int pooldPort)
    {
        await using var connection = new NpgsqlConnection($"Host=127.0.0.1;Port={pooldPort};Username=postgres;Database=postgres;Pooling=false;SSL Mode=Disable");
        await connection.OpenAsync();
        await using var reader = await new NpgsqlCommand("SHOW POOL_NODES", connection).ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            if (reader.GetString(reader.GetOrdinal("role")) == "primary" && reader.GetString(reader.GetOrdinal("status")) == "up")
            {
                return int.Parse(reader.GetString(reader.GetOrdinal("port")), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    /// <summary>HAProxy with deploy/haproxy.cfg, its addresses replaced by the test's: GET /health on each Poold's metrics port.</summary>
    private static async Task<HaproxyProcess> HaproxyAsync(int front, (int Sql, int Metrics) a, (int Sql, int Metrics) b)
    {
        var dir = Directory.CreateTempSubdirectory("poold-haproxy-").FullName;
        var config = Path.Combine(dir, "haproxy.cfg");
        var text = File.ReadAllText(Path.Combine(RepositoryRoot(), "deploy", "haproxy.cfg"))
            .Replace("bind *:5432", $"bind 127.0.0.1:{front}", StringComparison.Ordinal)
            .Replace("10.0.0.11:9999 check port 9930", $"127.0.0.1:{a.Sql} check port {a.Metrics}", StringComparison.Ordinal)
            .Replace("10.0.0.12:9999 check port 9930", $"127.0.0.1:{b.Sql} check port {b.Metrics}", StringComparison.Ordinal);
        await File.WriteAllTextAsync(config, text);
        var start = new ProcessStartInfo(HaproxyBinary, ["-db", "-f", config])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var process = Process.Start(start)!;
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await Poll.UntilAsync(async () =>
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException("haproxy exited: " + output);
            }

            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync("127.0.0.1", front);
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(15), "haproxy to listen");
        return new HaproxyProcess(process, dir);
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Poold.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    private sealed class HaproxyProcess(Process process, string directory) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }

            process.Dispose();
            Directory.Delete(directory, recursive: true);
        }
    }
}
