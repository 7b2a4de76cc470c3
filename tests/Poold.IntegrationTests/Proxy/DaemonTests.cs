using System.Globalization;
using System.Text;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Proxy;

/// <summary>Poold as its own process: the pid file, the reload and stop commands, memory while streaming a big result.</summary>
public class DaemonTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static string ScramPassword => TestRoles.Password(TestRoles.ScramUser);

    private static NpgsqlConnection Connect(PooldProcess poold) => new(new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = poold.Port,
        Username = TestRoles.ScramUser,
        Password = ScramPassword,
        Database = PgCluster.TestDatabase,
        SslMode = SslMode.Disable,
        Pooling = false,
        CommandTimeout = 120,
    }.ConnectionString);

    [Test]
    public async Task SocketContinuations_RunOnOneEventThreadPerCore()
    {
        Assume.That(Environment.ProcessorCount, Is.GreaterThan(1), "with one core, both modes have one socket thread");
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0));
        await using (var connection = Connect(poold))
        {
            await connection.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
        }

        // .NET starts one event thread when continuations go to the thread pool, one per core when they run inline.
        var threads = System.IO.Directory.GetDirectories($"/proc/{poold.Pid}/task")
            .Select(task => File.ReadAllText(Path.Combine(task, "comm")).Trim())
            .ToList();
        Assert.That(threads.Count(name => name == ".NET Sockets"), Is.EqualTo(Environment.ProcessorCount), string.Join(", ", threads));
    }

    [Test]
    public async Task IoEventThreads_OnePerCore_OrPooldIoThreads()
    {
        var byDefault = Math.Clamp(Environment.ProcessorCount, 1, 4);
        var other = byDefault == 3 ? 2 : 3;
        foreach (var (setting, expected) in new[] { ((string?)null, byDefault), (other.ToString(CultureInfo.InvariantCulture), other) })
        {
            // The layer on whatever this run chose for itself (POOLD_IO_ENGINE=dotnet runs the suite on .NET's engine).
            var environment = new Dictionary<string, string> { [Poold.Io.SocketStreams.EngineVariable] = "epoll" };
            if (setting is not null)
            {
                environment["POOLD_IO_THREADS"] = setting;
            }

            await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0), environment: environment);
            await using (var connection = Connect(poold))
            {
                // The first session starts the engine.
                await connection.OpenAsync();
                Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
            }

            var threads = System.IO.Directory.GetDirectories($"/proc/{poold.Pid}/task")
                .Select(task => File.ReadAllText(Path.Combine(task, "comm")).Trim())
                .ToList();
            Assert.That(threads.Count(name => name.StartsWith("poold epoll", StringComparison.Ordinal)), Is.EqualTo(expected),
                $"POOLD_IO_THREADS={setting}: " + string.Join(", ", threads));
        }
    }

    [Test]
    public async Task AReloadSentWhileStarting_IsAppliedOnceStarted_AndDoesNotEndPoold()
    {
        // `poold reload` as soon as the pid file names the process, which is before Poold listens: SIGHUP's default
        // action would end the process if no handler were registered yet.
        var sent = false;
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0), whileStarting: async started =>
        {
            var pidFile = Path.Combine(started.Directory, "poold.pid");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!File.Exists(pidFile) && !started.HasExited && DateTime.UtcNow < deadline)
            {
                await Task.Delay(1);
            }

            sent = Kill(started.Pid, 1 /* SIGHUP */) == 0;
        });
        Assert.That(sent, Is.True, "SIGHUP was sent while Poold started");
        await WaitForReloadAsync(poold);

        await using var connection = Connect(poold);
        await connection.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync(), Is.EqualTo(TestRoles.ScramUser));
    }

    private static Task WaitForReloadAsync(PooldProcess poold) =>
        poold.WaitForSignalEffectAsync(() => poold.Output.Contains("configuration reloaded", StringComparison.Ordinal), TimeSpan.FromSeconds(15),
            "reload logged");

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [Test]
    public async Task PidFile_ReloadAndFastStop_WorkAsPgpoolScriptsExpect()
    {
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0));
        var pidFile = Path.Combine(poold.Directory, "poold.pid");
        Assert.That(await File.ReadAllBytesAsync(pidFile), Is.EqualTo(Encoding.ASCII.GetBytes($"{poold.Pid}\0")),
            "pgpool's format: the pid and a NUL byte");

        await File.AppendAllTextAsync(poold.ConfigFile, "client_idle_limit = 300\n");
        var reload = await poold.RunCommandAsync("reload");
        Assert.That(reload.ExitCode, Is.Zero, reload.Output);
        await WaitForReloadAsync(poold);

        await using var connection = Connect(poold);
        await connection.OpenAsync();
        Assert.That(await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync(), Is.EqualTo(TestRoles.ScramUser));

        var stop = await poold.RunCommandAsync("-m", "fast", "stop");
        Assert.That(stop.ExitCode, Is.Zero, stop.Output);
        await poold.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.That(File.Exists(pidFile), Is.False, $"the pid file is removed at exit (exit code {poold.ExitCode}); poold printed:\n" + await Task.Delay(1000).ContinueWith(_ => poold.Output, TaskScheduler.Default));
        var e = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync());
        Assert.That(e!.SqlState, Is.EqualTo("57P01"), "fast shutdown tells the client why");
    }

    [Test]
    public async Task StopCommand_WithoutARunningPoold_FailsWithAClearMessage()
    {
        var (directory, _, conf) = await PooldInstance.WriteConfigAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0), ssl: false);
        try
        {
            var (exitCode, output) = await PooldProcess.RunCommandAsync(conf, "stop");
            Assert.That(exitCode, Is.Not.Zero);
            Assert.That(output, Does.Contain("pid file"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task HugeResult_StreamsThroughWithBoundedMemory()
    {
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0));
        await using var connection = Connect(poold);
        await connection.OpenAsync();
        const int Rows = 200_000;
        const int Width = 1000;
        await using var command = new NpgsqlCommand($"SELECT i, repeat('x', {Width}) FROM generate_series(1, {Rows}) AS i", connection);
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess);
        long rows = 0, bytes = 0, lastId = 0;
        while (await reader.ReadAsync())
        {
            lastId = reader.GetInt32(0);
            bytes += reader.GetString(1).Length;
            rows++;
        }

        Assert.That((rows, lastId, bytes), Is.EqualTo((Rows, Rows, (long)Rows * Width)), "every row arrived, in order");
        var peak = poold.PeakResidentBytes();
        Assert.That(peak, Is.LessThan(100L * 1024 * 1024), $"a 200 MB result streamed; Poold's peak RSS was {peak / (1024 * 1024)} MB");
        await TestContext.Out.WriteLineAsync($"peak RSS while streaming 200 MB: {peak / (1024 * 1024)} MB");
    }

    /// <summary>
    /// The protocol paths the in-process tests cover, once more through the daemon as operators run it: its socket
    /// continuations on the event threads, its reader over real sockets (the test process keeps .NET's defaults).
    /// </summary>
    [Test]
    public async Task ProtocolTour_ThroughTheDaemonAsOperatorsRunIt()
    {
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0));
        await using var connection = Connect(poold);
        await connection.OpenAsync();

        // A prepared statement, many times, and a 3 MB parameter and result (frames larger than the read buffers).
        await using (var prepared = new NpgsqlCommand("SELECT $1::int * 2", connection))
        {
            prepared.Parameters.Add(new NpgsqlParameter<int>());
            await prepared.PrepareAsync();
            var sum = 0L;
            for (var i = 0; i < 500; i++)
            {
                ((NpgsqlParameter<int>)prepared.Parameters[0]).TypedValue = i;
                sum += (int)(await prepared.ExecuteScalarAsync())!;
            }

            Assert.That(sum, Is.EqualTo(2L * 499 * 500 / 2));
        }

        var big = new string('p', 3 * 1024 * 1024);
        await using (var echo = new NpgsqlCommand("SELECT $1::text || 'q'", connection))
        {
            echo.Parameters.AddWithValue(big);
            Assert.That(await echo.ExecuteScalarAsync(), Is.EqualTo(big + "q"));
        }

        // COPY both ways.
        await new NpgsqlCommand("CREATE TEMP TABLE tour (id int, label text)", connection).ExecuteNonQueryAsync();
        await using (var writer = await connection.BeginTextImportAsync("COPY tour FROM STDIN"))
        {
            for (var i = 1; i <= 20_000; i++)
            {
                await writer.WriteAsync($"{i}\tlabel {i}\n");
            }
        }

        var copiedOut = 0L;
        using (var reader = await connection.BeginTextExportAsync("COPY tour TO STDOUT"))
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                copiedOut += int.Parse(line.Split('\t')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        Assert.That(copiedOut, Is.EqualTo(20_000L * 20_001 / 2));

        // An error inside a transaction, then the session goes on.
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            Assert.That(async () => await new NpgsqlCommand("SELECT 1/0", connection, transaction).ExecuteScalarAsync(),
                Throws.InstanceOf<PostgresException>().With.Property(nameof(PostgresException.SqlState)).EqualTo("22012"));
            var aborted = Assert.ThrowsAsync<PostgresException>(async () => await new NpgsqlCommand("SELECT 1", connection, transaction).ExecuteScalarAsync());
            Assert.That(aborted!.SqlState, Is.EqualTo("25P02"));
            await transaction.RollbackAsync();
        }

        // LISTEN on one connection, NOTIFY from another.
        await using var other = Connect(poold);
        await other.OpenAsync();
        string? payload = null;
        connection.Notification += (_, e) => payload = e.Payload;
        await new NpgsqlCommand("LISTEN tour", connection).ExecuteNonQueryAsync();
        await new NpgsqlCommand("NOTIFY tour, 'hello'", other).ExecuteNonQueryAsync();
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            await connection.WaitAsync(wait.Token);
        }

        Assert.That(payload, Is.EqualTo("hello"));

        // A cancel request reaches the backend running the statement.
        await using var sleep = new NpgsqlCommand("SELECT pg_sleep(30)", other);
        var running = sleep.ExecuteScalarAsync();
        await Poll.UntilAsync(async () => (long)(await new NpgsqlCommand(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'", connection).ExecuteScalarAsync())! == 1,
            TimeSpan.FromSeconds(10), "the sleep to start");
        sleep.Cancel();
        var canceled = Assert.ThrowsAsync<OperationCanceledException>(async () => await running);
        Assert.That((canceled!.InnerException as PostgresException)?.SqlState, Is.EqualTo("57014"), "the server's own cancel error");
        Assert.That(await new NpgsqlCommand("SELECT 'still here'", other).ExecuteScalarAsync(), Is.EqualTo("still here"));
    }

    [Test]
    public async Task Reload_WorksWhenPooldWasStartedUnderNohup()
    {
        // nohup starts its command with SIGHUP ignored: `poold reload` must still reload, as `pgpool reload` does.
        var (directory, port, conf) = await PooldInstance.WriteConfigAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0), ssl: false);
        try
        {
            var (pid, ignored) = await StartThroughShellAsync(directory, port, conf, "nohup");
            Assert.That(ignored & 0b1, Is.Zero, "SIGHUP is no longer ignored");

            var (exitCode, output) = await PooldProcess.RunCommandAsync(conf, "reload");
            Assert.That(exitCode, Is.Zero, output);
            var log = Path.Combine(directory, "out.log");
            await Poll.UntilAsync(() => Task.FromResult(File.ReadAllText(log).Contains("configuration reloaded", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(15), "the reload to be logged");

            await FastStopAsync(conf, pid);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task FastStop_WorksWhenAScriptStartedPooldInTheBackground()
    {
        // A non-interactive shell starts "poold &" with SIGINT and SIGQUIT ignored; pgpool-style stop must still work.
        var (directory, port, conf) = await PooldInstance.WriteConfigAsync(PooldInstance.BackendLines(Cluster, onlyNode: 0), ssl: false);
        try
        {
            var (pid, ignored) = await StartThroughShellAsync(directory, port, conf, "");
            Assert.That(ignored & 0b110, Is.Zero, "SIGINT and SIGQUIT are no longer ignored");

            await FastStopAsync(conf, pid);
            Assert.That(File.Exists(Path.Combine(directory, "poold.pid")), Is.False, "a clean exit removes the pid file");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// Starts Poold as a script does, <c>sh -c "PREFIX dotnet poold.dll -n -f CONF &amp;"</c> (output to out.log in
    /// <paramref name="directory"/>), waits until it listens on <paramref name="port"/> and has written its pid file, and returns its pid and the
    /// signals it ignores (SigIgn, bit N-1 for signal N).
    /// </summary>
    private static async Task<(int Pid, ulong Ignored)> StartThroughShellAsync(string directory, int port, string conf, string prefix)
    {
        var poold = Path.Combine(AppContext.BaseDirectory, "poold.dll");
        var log = Path.Combine(directory, "out.log");
        using (var shell = System.Diagnostics.Process.Start("/bin/sh", ["-c", $"{prefix} dotnet '{poold}' -n -f '{conf}' >'{log}' 2>&1 &"]))
        {
            await shell.WaitForExitAsync();
        }

        var pidFile = Path.Combine(directory, "poold.pid");
        await Poll.UntilAsync(async () =>
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await socket.ConnectAsync("127.0.0.1", port);
            return File.Exists(pidFile);
        }, TimeSpan.FromSeconds(30), $"the poold started by \"{prefix} … &\" to listen");
        var pid = int.Parse(File.ReadAllText(pidFile).TrimEnd('\0'), CultureInfo.InvariantCulture);
        var status = await File.ReadAllLinesAsync($"/proc/{pid}/status");
        return (pid, Convert.ToUInt64(status.First(l => l.StartsWith("SigIgn:", StringComparison.Ordinal))[7..].Trim(), 16));
    }

    /// <summary><c>poold -m fast stop</c>, then until the process is gone.</summary>
    private static async Task FastStopAsync(string conf, int pid)
    {
        var (exitCode, output) = await PooldProcess.RunCommandAsync(conf, "-m", "fast", "stop");
        Assert.That(exitCode, Is.Zero, output);
        await Poll.UntilAsync(() => Task.FromResult(!Directory.Exists($"/proc/{pid}") || File.ReadAllText($"/proc/{pid}/status").Contains("State:\tZ", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), "the poold started through the shell to exit");
    }
}
