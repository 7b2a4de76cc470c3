using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Proxy;

/// <summary>
/// The I/O layer under conditions real drivers rarely create (issue 17): frames split across reads at every offset, a
/// reply much larger than the socket buffers to a client that stops reading, a client that leaves mid-frame or half-closes
/// its socket, and a thousand connections that come and go. Raw sockets, Poold in-process in front of the primary alone,
/// plain TCP. Linux only: /proc/net/tcp tells when Poold has read what was sent, /proc/self tells its memory and fds.
/// </summary>
public class IoLayerTests
{
    private const string Select42 = "SELECT 42 AS answer";

    private PooldInstance _poold = null!;

    [OneTimeSetUp]
    public async Task StartPoold() => _poold = await PooldInstance.StartAsync(ClusterFixture.Cluster, ssl: false, onlyNode: 0);

    [OneTimeTearDown]
    public async Task StopPoold() => await _poold.DisposeAsync();

    private static int PrimaryPort => ClusterFixture.Cluster.Nodes[0].Port;

    // ---- frames split across reads --------------------------------------------------------------------------------

    /// <summary>
    /// A startup packet and a Query sent as two writes split at every offset, each part read by Poold on its own before
    /// the next is sent. Catches a reader that assumes a frame (or the 8-byte startup header, or a length field) arrives
    /// in one read, or that loses bytes read past the startup packet (the Query pipelined behind it).
    /// </summary>
    [Test]
    public async Task StartupAndQuery_SplitIntoTwoWritesAtEveryOffset_AnswerIsRight()
    {
        var bytes = StartupAndQuery("io-split");
        for (var k = 1; k < bytes.Length; k++)
        {
            using var socket = await ConnectAsync(_poold.Port);
            await SendReadAsync(socket, bytes[..k]);
            await SendReadAsync(socket, bytes[k..]);
            await AssertAnswerAfterLoginAsync(socket, $"split at byte {k} of {bytes.Length}");
        }
    }

    /// <summary>The same bytes one at a time, each read by Poold before the next is sent: every frame in pieces of one byte.</summary>
    [Test]
    public async Task StartupAndQuery_SentByteByByte_AnswerIsRight()
    {
        var bytes = StartupAndQuery("io-bytewise");
        using var socket = await ConnectAsync(_poold.Port);
        for (var i = 0; i < bytes.Length; i++)
        {
            await SendReadAsync(socket, bytes[i..(i + 1)]);
        }

        await AssertAnswerAfterLoginAsync(socket, "one byte per write");
    }

    /// <summary>
    /// After login, an extended-protocol batch (Parse, Bind, Describe, Execute, Sync) split at every offset on one session:
    /// the session's own reader (not the startup code) keeps partial frames across reads, and the session stays usable.
    /// </summary>
    [Test]
    public async Task ExtendedBatch_SplitIntoTwoWritesAtEveryOffset_AnswerIsRight()
    {
        using var socket = await ConnectAsync(_poold.Port);
        await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase));
        using var reader = new FrameReader(socket);
        Assert.That(await reader.ReadUntilReadyAsync(), Has.None.Matches<BackendMessage>(m => m.Code == 'E'));
        byte[] batch = [.. RawClient.Parse("", "SELECT $1::int + 1"), .. BindInt("41"), .. RawClient.DescribePortal(""),
                        .. RawClient.Execute(""), .. RawClient.Sync()];
        for (var k = 1; k < batch.Length; k++)
        {
            await SendReadAsync(socket, batch[..k]);
            await SendReadAsync(socket, batch[k..]);
            var reply = await reader.ReadUntilReadyAsync();
            Assert.That(string.Concat(reply.Select(m => m.Code)), Is.EqualTo("12TDCZ"), $"split at byte {k} of {batch.Length}: {Show(reply)}");
            Assert.That(reply.Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"), $"split at byte {k}");
        }
    }

    // ---- a reply larger than the socket buffers, to a client that stops reading -----------------------------------

    /// <summary>
    /// A 100 MiB result to a client that reads nothing: Poold must stop reading the backend when the client's socket is
    /// full (backpressure), so the server ends up waiting in ClientWrite, and Poold (this process) must not grow by the
    /// size of the reply. Then the client reads everything, and every row must be there.
    /// Catches: a relay that reads the backend ahead of the client without bound (buffering the reply in memory), and one
    /// that loses or reorders bytes under backpressure.
    /// </summary>
    [Test]
    public async Task LargeReply_ToAClientThatStopsReading_BackendWaitsAndMemoryStaysBounded()
    {
        const int rows = 102_400;
        const int width = 1024;
        var marker = "io-large-" + Guid.NewGuid().ToString("N")[..8];
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveBufferSize = 64 * 1024 };
        await socket.ConnectAsync(IPAddress.Loopback, _poold.Port);
        await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase));
        using var reader = new FrameReader(socket);
        await reader.ReadUntilReadyAsync();

        GC.Collect();
        GC.WaitForPendingFinalizers();
        var baseline = ResetPeakRss();
        await socket.SendAsync(RawPackets.Query($"SELECT repeat('x', {width}) /* {marker} */ FROM generate_series(1, {rows})"));

        // The server blocked writing to Poold: Poold read no more than the client took, plus the kernel's buffers.
        await Poll.UntilAsync(async () => Convert.ToInt64(await ClusterFixture.Cluster.ScalarAsync(0,
                $"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND wait_event = 'ClientWrite' AND pid <> pg_backend_pid()"),
            CultureInfo.InvariantCulture) == 1, TimeSpan.FromSeconds(30), "the server to wait in ClientWrite (Poold applying backpressure)");
        var stalledGrowth = PeakRss() - baseline;

        var (dataRows, wrongWidth, tail) = await reader.CountRowsAsync(width);
        var totalGrowth = PeakRss() - baseline;
        await TestContext.Out.WriteLineAsync($"peak RSS growth: {stalledGrowth >> 10} KiB while stalled, {totalGrowth >> 10} KiB in all");
        Assert.Multiple(() =>
        {
            Assert.That(dataRows, Is.EqualTo(rows), "every row arrived");
            Assert.That(wrongWidth, Is.Zero, "every row whole");
            Assert.That(tail, Is.EqualTo($"C:SELECT {rows}|Z"), "then CommandComplete and ReadyForQuery");
            // The bound: Poold holds a pipe buffer or two per side (tens of KiB) while it waits for the client; the rest of
            // the in-flight reply sits in kernel socket buffers, which are not this process's RSS. 32 MiB leaves room for
            // the GC's young generation and the runtime's own growth in a Debug build, and is under a third of the reply:
            // a relay that buffered the reply (or most of it) would exceed it.
            Assert.That(stalledGrowth, Is.LessThan(32L << 20), $"peak RSS growth while the client read nothing: {stalledGrowth >> 20} MiB");
            Assert.That(totalGrowth, Is.LessThan(32L << 20), $"peak RSS growth over the whole 100 MiB reply: {totalGrowth >> 20} MiB");
        });

        await socket.SendAsync(RawPackets.Query(Select42));
        Assert.That((await reader.ReadUntilReadyAsync()).Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"), "the session goes on");
    }

    // ---- a client that closes mid-frame ---------------------------------------------------------------------------

    /// <summary>
    /// Clients that leave in the middle of a frame (half a Query then FIN, half a Query then RST, half a startup packet):
    /// Poold stays up, a session in a transaction meanwhile is untouched, and the server connections Poold holds come back
    /// to the count before (each aborted session's server connection closed or returned to the pool, not kept).
    /// Catches: a session whose end is skipped when EOF comes inside a frame (server connection and fds leaked), and an
    /// exception from a truncated frame that escapes the session.
    /// </summary>
    [Test]
    public async Task ClientClosingMidFrame_PooldStaysUp_ServerConnectionsReturnToBaseline()
    {
        await using var bystander = await RawClient.ConnectAsync(_poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "io-bystander");
        await bystander.SendAsync(RawPackets.Query("BEGIN; SELECT 1"));
        await bystander.ReadUntilReadyAsync();

        await RunOneSessionAsync();
        var sessions = await SettledAsync(() => _poold.Host.ActiveSessions, "the session count");
        var baseline = await SettledAsync(ServerConnections, "the server connection count");
        var query = RawPackets.Query("SELECT 'never run'");
        for (var i = 0; i < 30; i++)
        {
            var socket = await ConnectAsync(_poold.Port);
            if (i % 3 == 2)
            {
                var startup = RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase);
                await SendReadAsync(socket, startup[..(startup.Length / 2)]);
            }
            else
            {
                await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase));
                using var reader = new FrameReader(socket);
                await reader.ReadUntilReadyAsync();
                await SendReadAsync(socket, query[..(query.Length / 2)]);
            }

            if (i % 3 == 1)
            {
                socket.LingerState = new LingerOption(true, 0);
            }

            socket.Close();
            await Poll.UntilAsync(() => Task.FromResult(_poold.Host.ActiveSessions == sessions), TimeSpan.FromSeconds(10),
                $"Poold to end aborted session {i}");
        }

        await Poll.UntilAsync(() => Task.FromResult(ServerConnections() <= baseline), TimeSpan.FromSeconds(10),
            $"the server connections Poold holds to come back to {baseline} (now {ServerConnections()})");
        await bystander.SendAsync(RawPackets.Query("SELECT 2; COMMIT"));
        var reply = await bystander.ReadUntilReadyAsync();
        Assert.That(reply.Where(m => m.Code == 'D').Select(m => m.FirstColumn), Is.EqualTo(new[] { "2" }), Show(reply));
        Assert.That(reply, Has.None.Matches<BackendMessage>(m => m.Code == 'E'), "the open transaction is untouched");
        await RunOneSessionAsync();
    }

    // ---- a half-closed client socket ------------------------------------------------------------------------------

    /// <summary>
    /// A client sends a whole Query and shuts down its sending side. PostgreSQL itself (the reference, asked directly in
    /// the same test) answers the Query, then sees EOF and closes. Poold must do the same: the full answer, then EOF.
    /// Catches: a relay that treats the client's FIN as the end of the session and drops the answer already owed, and one
    /// that keeps the half-closed connection open for ever.
    /// </summary>
    [Test]
    public async Task HalfClosedClient_AfterAWholeQuery_IsAnsweredThenClosed_AsPostgreSqlDoes()
    {
        for (var i = 0; i < 20; i++)
        {
            var direct = await HalfCloseAsync(PrimaryPort);
            var throughPoold = await HalfCloseAsync(_poold.Port);
            Assert.That(direct, Is.EqualTo("TDCZ|EOF"), $"PostgreSQL's own behaviour (the reference), attempt {i}");
            Assert.That(throughPoold, Is.EqualTo(direct), $"Poold as PostgreSQL, attempt {i}");
        }

        await RunOneSessionAsync();
    }

    private static async Task<string> HalfCloseAsync(int port)
    {
        using var socket = await ConnectAsync(port);
        await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase));
        using var reader = new FrameReader(socket);
        await reader.ReadUntilReadyAsync();
        await socket.SendAsync(RawPackets.Query(Select42));
        socket.Shutdown(SocketShutdown.Send);
        var codes = new StringBuilder();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (await reader.ReadAsync(deadline.Token) is { } message)
        {
            codes.Append(message.Code);
        }

        return codes + "|EOF";
    }

    // ---- many connections, no fd leak -----------------------------------------------------------------------------

    /// <summary>
    /// 1,000 connections, eight at a time: full logins ended by Terminate, full logins dropped without it, half a startup
    /// packet then close, nothing at all then RST, an SSLRequest (answered 'N') then close. Afterwards the process holds
    /// no more file descriptors than before (Poold is in this process), and Poold still serves sessions.
    /// Catches: a socket, stream or timer handle not disposed on one of the ways a connection can end before or after login.
    /// </summary>
    [Test]
    public async Task ThousandConnections_OpenedAndClosed_LeakNoFileDescriptors()
    {
        // The same mix once first: the pool's cached server connections (at most one per concurrent login) and the
        // runtime's lazily created handles (epoll threads, the thread pool's) exist before the baseline is taken.
        await ChurnAsync(80);
        var sessions = await SettledAsync(() => _poold.Host.ActiveSessions, "the session count");
        var before = await SettledAsync(OpenFds, "the open file descriptors");

        await ChurnAsync(1000);
        await TestContext.Out.WriteLineAsync($"open fds: {before} before, {OpenFds()} right after the 1,000 connections");

        // Allowance of 8: the server connections cached by the pool may differ by the few logins that overlapped
        // differently in this round than in the warm-up (at most 8 ran at once), and the runtime may open a handle of its
        // own meanwhile. A leak on any one of the five paths would be ~200 descriptors.
        const int allowance = 8;
        await Poll.UntilAsync(() => Task.FromResult(OpenFds() <= before + allowance), TimeSpan.FromSeconds(30),
            $"the open file descriptors to settle to at most {before} + {allowance}");
        // A session closes its socket before it reports its end to the host: polled, as the descriptors are.
        await Poll.UntilAsync(() => Task.FromResult(_poold.Host.ActiveSessions == sessions), TimeSpan.FromSeconds(30), "every session to end");
        await RunOneSessionAsync();
    }

    private async Task ChurnAsync(int count)
    {
        var next = -1;
        async Task Worker()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                using var socket = await ConnectAsync(_poold.Port);
                switch (i % 5)
                {
                    case 0:
                        await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase));
                        using (var reader = new FrameReader(socket))
                        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
                        {
                            await reader.ReadUntilReadyAsync();
                            await socket.SendAsync(RawPackets.Terminate);
                            Assert.That(await reader.ReadAsync(deadline.Token), Is.Null, "closed after Terminate");
                        }

                        break;
                    case 1:
                        await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase));
                        using (var reader = new FrameReader(socket))
                        {
                            await reader.ReadUntilReadyAsync();
                        }

                        break;
                    case 2:
                        var startup = RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase);
                        await socket.SendAsync(startup.AsMemory(0, startup.Length / 2));
                        break;
                    case 3:
                        socket.LingerState = new LingerOption(true, 0);
                        break;
                    default:
                        await socket.SendAsync(RawPackets.SslRequest());
                        var answer = new byte[1];
                        Assert.That(await socket.ReceiveAsync(answer), Is.EqualTo(1));
                        Assert.That((char)answer[0], Is.EqualTo('N'));
                        break;
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(Worker)));
    }

    // ---- what a relayed statement allocates --------------------------------------------------------------------------

    /// <summary>
    /// Sixteen pgbench clients (another process) run 2,000 one-statement transactions each through Poold (in this
    /// process): the managed memory the whole process allocates meanwhile, per statement; logins and the test's own work
    /// are in the figure too, spread over 32,000 statements. 8 to 14 bytes when written; 190 to 210 before the reply
    /// pump waited for a batch's first reply itself (the large reply state machine came from a pool that caches a few,
    /// fewer than the sessions waiting for replies), and about 450 more while Poold's loops ran on the test runner's
    /// SynchronizationContext (every continuation posted to it).
    /// </summary>
    [Test]
    public async Task SixteenClientsRelayingStatements_AllocateLittlePerStatement()
    {
        // Logging as in production: the other tests' Poold writes debug lines (debug1), which allocate per statement.
        await using var poold = await PooldInstance.StartAsync(ClusterFixture.Cluster, "log_min_messages = warning\n", ssl: false, onlyNode: 0, debug: false);
        var script = Path.Combine(Path.GetTempPath(), $"poold-alloc-{Environment.ProcessId}.sql");
        await File.WriteAllTextAsync(script, "SELECT 1;\n");
        try
        {
            var target = $"-h 127.0.0.1 -p {poold.Port} -U {TestRoles.TrustUser} -n -f {script} -c 16 -j 2 {PgCluster.TestDatabase}";
            var (warm, warmOutput) = await RunPgbenchAsync($"-t 200 {target}");
            Assert.That(warm, Is.Zero, warmOutput);

            var before = GC.GetTotalAllocatedBytes(precise: true);
            var (code, output) = await RunPgbenchAsync($"-t 2000 {target}");
            var perStatement = (GC.GetTotalAllocatedBytes(precise: true) - before) / 32_000.0;
            Assert.That(code, Is.Zero, output);
            Assert.That(output, Does.Contain("number of transactions actually processed: 32000/32000"));
            TestContext.Out.WriteLine($"{perStatement:F1} bytes allocated per statement");
            Assert.That(perStatement, Is.LessThan(64), $"{perStatement:F0} bytes allocated per statement");
        }
        finally
        {
            File.Delete(script);
        }
    }

    private static async Task<(int Code, string Output)> RunPgbenchAsync(string arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo("pgbench", arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["PGSSLMODE"] = "disable";
        var (code, stdout, stderr) = await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(120));
        return (code, stdout + stderr);
    }

    // ---- helpers --------------------------------------------------------------------------------------------------

    private static byte[] StartupAndQuery(string applicationName)
    {
        var body = new List<byte>();
        foreach (var s in new[] { "user", TestRoles.TrustUser, "database", PgCluster.TestDatabase, "application_name", applicationName })
        {
            body.AddRange(Encoding.UTF8.GetBytes(s));
            body.Add(0);
        }

        body.Add(0);
        var startup = new byte[8 + body.Count];
        BinaryPrimitives.WriteInt32BigEndian(startup, startup.Length);
        BinaryPrimitives.WriteInt32BigEndian(startup.AsSpan(4), RawPackets.ProtocolVersion3);
        body.CopyTo(startup, 8);
        return [.. startup, .. RawPackets.Query(Select42)];
    }

    /// <summary>Bind of the unnamed statement with one text parameter, results in text.</summary>
    private static byte[] BindInt(string value) =>
        RawClient.Message('B', RawClient.CString(""), RawClient.CString(""), RawClient.Int16(0), RawClient.Int16(1),
            [.. Int32(value.Length), .. Encoding.ASCII.GetBytes(value)], RawClient.Int16(0));

    private static byte[] Int32(int v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(b, v);
        return b;
    }

    /// <summary>After a pipelined startup and Select42: the login's messages up to ReadyForQuery, then the answer.</summary>
    private static async Task AssertAnswerAfterLoginAsync(Socket socket, string what)
    {
        using var reader = new FrameReader(socket);
        var login = await reader.ReadUntilReadyAsync();
        Assert.That(login.Select(m => m.Code), Has.Member('R').And.No.Member('E'), $"{what}: login {Show(login)}");
        var answer = await reader.ReadUntilReadyAsync();
        Assert.That(string.Concat(answer.Select(m => m.Code)), Is.EqualTo("TDCZ"), $"{what}: {Show(answer)}");
        Assert.That(answer[1].FirstColumn, Is.EqualTo("42"), what);
        Assert.That(answer[2].Text, Is.EqualTo("SELECT 1|"), what);
    }

    private async Task RunOneSessionAsync()
    {
        await using var client = await RawClient.ConnectAsync(_poold.Port, TestRoles.TrustUser, PgCluster.TestDatabase, "io-check");
        await client.SendAsync(RawPackets.Query(Select42));
        Assert.That((await client.ReadUntilReadyAsync()).Single(m => m.Code == 'D').FirstColumn, Is.EqualTo("42"), "Poold serves a new session");
        await client.SendAsync(RawPackets.Terminate);
    }

    private static async Task<Socket> ConnectAsync(int port)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        return socket;
    }

    /// <summary>
    /// Sends <paramref name="bytes"/> in one write and waits until the server has taken them out of its socket's receive
    /// queue (/proc/net/tcp), so the next write reaches it in a read of its own.
    /// </summary>
    private static async Task SendReadAsync(Socket socket, byte[] bytes)
    {
        await socket.SendAsync(bytes);
        var local = (IPEndPoint)socket.LocalEndPoint!;
        var remote = (IPEndPoint)socket.RemoteEndPoint!;
        await Poll.UntilAsync(() => Task.FromResult(ServerReceiveQueue(remote.Port, local.Port) == 0), TimeSpan.FromSeconds(10),
            $"the server to read the {bytes.Length} byte(s) sent");
    }

    /// <summary>The receive queue of the server-side socket of a loopback connection, or -1 when there is none.</summary>
    private static long ServerReceiveQueue(int serverPort, int clientPort)
    {
        foreach (var f in TcpSockets())
        {
            if (IsLoopback(f[1], serverPort) && IsLoopback(f[2], clientPort))
            {
                return long.Parse(f[4].AsSpan(f[4].IndexOf(':') + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            }
        }

        return -1;
    }

    /// <summary>The fields of every line of /proc/net/tcp and /proc/net/tcp6 (.NET sockets are often dual-mode IPv6 ones).</summary>
    private static IEnumerable<string[]> TcpSockets() =>
        new[] { "/proc/net/tcp", "/proc/net/tcp6" }.Where(File.Exists)
            .SelectMany(path => File.ReadLines(path).Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)));

    /// <summary>127.0.0.1:port as /proc/net/tcp writes it ("0100007F:1F90"), or as tcp6 writes ::ffff:127.0.0.1:port.</summary>
    private static bool IsLoopback(string address, int port) =>
        address.EndsWith(string.Create(CultureInfo.InvariantCulture, $"0100007F:{port:X4}"), StringComparison.Ordinal)
        && (address.Length == 13 || address.StartsWith("0000000000000000FFFF0000", StringComparison.Ordinal));

    /// <summary>Established TCP connections from this process (Poold is in it) to the primary: Poold's server connections.</summary>
    private static int ServerConnections()
    {
        var inodes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var fd in Directory.EnumerateFiles("/proc/self/fd"))
        {
            if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith("socket:[", StringComparison.Ordinal))
            {
                inodes.Add(target[8..^1]);
            }
        }

        return TcpSockets().Count(f => IsLoopback(f[2], PrimaryPort) && f[3] == "01" && inodes.Contains(f[9]));
    }

    /// <summary>A count once it has stopped changing over five polls (sessions just ended may still be closing).</summary>
    private static async Task<int> SettledAsync(Func<int> count, string what)
    {
        var last = -1;
        var same = 0;
        await Poll.UntilAsync(() =>
        {
            var now = count();
            same = now == last ? same + 1 : 0;
            last = now;
            return Task.FromResult(same >= 4);
        }, TimeSpan.FromSeconds(20), what + " to settle");
        return last;
    }

    private static int OpenFds() => Directory.GetFiles("/proc/self/fd").Length;

    /// <summary>Writes 5 to /proc/self/clear_refs (VmHWM := VmRSS) and returns VmRSS in bytes.</summary>
    private static long ResetPeakRss()
    {
        File.WriteAllText("/proc/self/clear_refs", "5");
        return StatusBytes("VmRSS:");
    }

    private static long PeakRss() => StatusBytes("VmHWM:");

    private static long StatusBytes(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
        return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    private static string Show(IEnumerable<BackendMessage> messages) => string.Join(", ", messages.Select(m => m.ToString()));

    /// <summary>Reads whole backend messages from a socket through a buffer.</summary>
    private sealed class FrameReader(Socket socket) : IDisposable
    {
        private readonly BufferedStream _stream = new(new NetworkStream(socket, ownsSocket: false), 64 * 1024);
        private readonly byte[] _header = new byte[5];

        /// <summary>Disposes the buffer only: the socket stays open, its owner closes it.</summary>
        public void Dispose() => _stream.Dispose();

        /// <summary>The next message, or null at EOF (or a reset).</summary>
        public async Task<BackendMessage?> ReadAsync(CancellationToken cancellationToken)
        {
            try
            {
                if (await _stream.ReadAtLeastAsync(_header, 5, throwOnEndOfStream: false, cancellationToken) < 5)
                {
                    return null;
                }

                var body = new byte[BinaryPrimitives.ReadInt32BigEndian(_header.AsSpan(1)) - 4];
                await _stream.ReadExactlyAsync(body, cancellationToken);
                return new BackendMessage((char)_header[0], body);
            }
            catch (IOException)
            {
                return null;
            }
        }

        public async Task<List<BackendMessage>> ReadUntilReadyAsync()
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var messages = new List<BackendMessage>();
            while (true)
            {
                var message = await ReadAsync(deadline.Token)
                              ?? throw new EndOfStreamException($"closed before ReadyForQuery; got: {Show(messages)}");
                messages.Add(message);
                if (message.Code == 'Z')
                {
                    return messages;
                }
            }
        }

        /// <summary>
        /// Reads a result through ReadyForQuery without keeping it: the DataRows, those whose one column is not
        /// <paramref name="width"/> bytes, and the messages after the rows ("C:tag|Z").
        /// </summary>
        public async Task<(int Rows, int WrongWidth, string Tail)> CountRowsAsync(int width)
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            var row = new byte[2 + 4 + width];
            int rows = 0, wrong = 0;
            var tail = new List<string>();
            while (true)
            {
                await _stream.ReadExactlyAsync(_header, deadline.Token);
                var length = BinaryPrimitives.ReadInt32BigEndian(_header.AsSpan(1)) - 4;
                if (_header[0] == (byte)'D' && length == row.Length)
                {
                    await _stream.ReadExactlyAsync(row, deadline.Token);
                    rows++;
                    if (BinaryPrimitives.ReadInt16BigEndian(row) != 1 || BinaryPrimitives.ReadInt32BigEndian(row.AsSpan(2)) != width
                        || row[^1] != (byte)'x')
                    {
                        wrong++;
                    }

                    continue;
                }

                var body = new byte[length];
                await _stream.ReadExactlyAsync(body, deadline.Token);
                switch ((char)_header[0])
                {
                    case 'D':
                        rows++;
                        wrong++;
                        break;
                    case 'T':
                        break;
                    case 'C':
                        tail.Add("C:" + Encoding.UTF8.GetString(body).TrimEnd('\0'));
                        break;
                    case 'Z':
                        tail.Add("Z");
                        return (rows, wrong, string.Join('|', tail));
                    default:
                        tail.Add(new BackendMessage((char)_header[0], body).ToString());
                        break;
                }
            }
        }
    }
}
