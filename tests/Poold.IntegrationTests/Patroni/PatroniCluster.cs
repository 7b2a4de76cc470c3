using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Patroni;

/// <summary>
/// A real Patroni cluster on loopback: one etcd, three Patroni members each running PostgreSQL 15 (Debian's
/// <c>patroni</c> and <c>etcd-server</c>), in a temporary directory; as root the members run as <c>postgres</c>.
/// Member 2 carries the <c>noloadbalance</c> tag. Everything is stopped and removed on dispose.
/// </summary>
internal sealed class PatroniCluster : IAsyncDisposable
{
    private const string PatroniBinary = "/usr/bin/patroni";
    private const string EtcdBinary = "/usr/bin/etcd";

    private readonly List<Process> _processes = [];
    private readonly StringBuilder _output = new();

    private PatroniCluster(string directory)
    {
        Directory = directory;
        EtcdPort = FreePort.Get();
        Members = [.. Enumerable.Range(0, 3).Select(i => new Member($"m{i}", FreePort.Get(), FreePort.Get()))];
    }

    /// <summary>Why the cluster cannot run here, or null when it can.</summary>
    public static string? Unavailable =>
        !File.Exists(PatroniBinary) || !File.Exists(EtcdBinary) ? "patroni and etcd are not installed (apt-get install -y patroni etcd-server)" : null;

    public string Directory { get; }

    public int EtcdPort { get; }

    public IReadOnlyList<Member> Members { get; }

    /// <summary>The REST API base URLs, as patroni_urls takes them.</summary>
    public string Urls => string.Join(',', Members.Select(m => $"http://127.0.0.1:{m.RestPort}"));

    /// <summary>What etcd and the members printed, for a failing test's message.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public sealed record Member(string Name, int RestPort, int PgPort);

    public static async Task<PatroniCluster> StartAsync()
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("poold-patroni-").FullName;
        var cluster = new PatroniCluster(dir);
        try
        {
            await cluster.BootAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task BootAsync()
    {
        if (Environment.IsPrivilegedProcess)
        {
            await ProcessRunner.RunAsync(new ProcessStartInfo("chown", ["postgres:postgres", Directory]), TimeSpan.FromSeconds(10));
        }

        Launch("etcd", EtcdBinary, ["--name", "poold-test", "--data-dir", Path.Combine(Directory, "etcd"),
            "--listen-client-urls", $"http://127.0.0.1:{EtcdPort}", "--advertise-client-urls", $"http://127.0.0.1:{EtcdPort}",
            "--listen-peer-urls", $"http://127.0.0.1:{FreePort.Get()}", "--initial-cluster-state", "new"]);
        using var http = new HttpClient();
        await Poll.UntilAsync(async () => (await http.GetAsync($"http://127.0.0.1:{EtcdPort}/health")).IsSuccessStatusCode,
            TimeSpan.FromSeconds(30), "etcd to answer");

        // The first member bootstraps (initdb) and takes the lead; the others then clone it.
        for (var i = 0; i < Members.Count; i++)
        {
            var config = Path.Combine(Directory, Members[i].Name + ".yml");
            await File.WriteAllTextAsync(config, Config(Members[i], noLoadBalance: i == 2));
            Launch(Members[i].Name, PatroniBinary, [config]);
            if (i == 0)
            {
                await Poll.UntilAsync(async () => (await ClusterAsync()).Any(m => m.Role == "leader" && m.State == "running"),
                    TimeSpan.FromSeconds(60), "the first Patroni member to lead");
            }
        }

        await Poll.UntilAsync(async () => (await ClusterAsync()).Count(m => m.State is "running" or "streaming") == Members.Count,
            TimeSpan.FromSeconds(90), "every Patroni member to run");
    }

    private string Config(Member member, bool noLoadBalance) => $"""
        scope: poold-test
        name: {member.Name}
        restapi:
          listen: 127.0.0.1:{member.RestPort}
          connect_address: 127.0.0.1:{member.RestPort}
        etcd3:
          hosts: 127.0.0.1:{EtcdPort}
        bootstrap:
          dcs:
            ttl: 10
            loop_wait: 1
            retry_timeout: 5
            maximum_lag_on_failover: 1048576
            postgresql:
              use_pg_rewind: false
              parameters:
                wal_level: replica
                hot_standby: "on"
                max_wal_senders: 10
          initdb:
          - encoding: UTF8
          - locale: C
          - auth-local: trust
          - auth-host: trust
          pg_hba:
          - host replication all 127.0.0.1/32 trust
          - host all all 127.0.0.1/32 trust
        postgresql:
          listen: 127.0.0.1:{member.PgPort}
          connect_address: 127.0.0.1:{member.PgPort}
          data_dir: {Path.Combine(Directory, member.Name)}
          bin_dir: /usr/lib/postgresql/15/bin
          pgpass: {Path.Combine(Directory, member.Name + ".pgpass")}
          authentication:
            replication:
              username: postgres
            superuser:
              username: postgres
          parameters:
            unix_socket_directories: '{Directory}'
        tags:
          nofailover: false
          noloadbalance: {(noLoadBalance ? "true" : "false")}
        """;

    private void Launch(string name, string binary, string[] arguments)
    {
        var start = Environment.IsPrivilegedProcess
            ? new ProcessStartInfo("runuser", ["-u", "postgres", "--", binary, .. arguments])
            : new ProcessStartInfo(binary, arguments);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        start.WorkingDirectory = Directory;
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {binary}");
        process.OutputDataReceived += (_, e) => Append(name, e.Data);
        process.ErrorDataReceived += (_, e) => Append(name, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes.Add(process);
    }

    private void Append(string name, string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.Append(name).Append(": ").AppendLine(line);
            }
        }
    }

    /// <summary>The members as the first Patroni endpoint that answers reports them (empty when none does).</summary>
    public async Task<IReadOnlyList<(string Name, string Role, string State, int Port, int Timeline)>> ClusterAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        foreach (var member in Members)
        {
            try
            {
                using var document = JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{member.RestPort}/cluster"));
                return [.. document.RootElement.GetProperty("members").EnumerateArray().Select(m => (m.GetProperty("name").GetString()!,
                    m.GetProperty("role").GetString()!, m.GetProperty("state").GetString()!, m.GetProperty("port").GetInt32(),
                    m.TryGetProperty("timeline", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetInt32() : 0))];
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
            {
                // Try the next member.
            }
        }

        return [];
    }

    /// <summary>
    /// True once every running member is on the leader's timeline: after a failover Patroni may restart a replica to
    /// follow the new leader, which ends the sessions on it (57P01), so a test waits for this before judging errors.
    /// </summary>
    public async Task<bool> SettledAsync()
    {
        var members = await ClusterAsync();
        var leader = members.FirstOrDefault(m => m.Role == "leader" && m.State == "running");
        return leader.Name is not null && members.Where(m => m.State is "running" or "streaming").All(m => m.Timeline == leader.Timeline);
    }

    /// <summary>Stops a member's Patroni as its service would (SIGTERM): it shuts its PostgreSQL down and gives up the lead.</summary>
    public async Task StopMemberAsync(Member member)
    {
        await Signal("TERM", member);
        await Poll.UntilAsync(async () => !await IsRunningAsync(member), TimeSpan.FromSeconds(60), $"Patroni member {member.Name} to stop");
    }

    private async Task Signal(string signal, Member member) =>
        await ProcessRunner.RunAsync(new ProcessStartInfo("pkill", [$"-{signal}", "-f", Path.Combine(Directory, member.Name + ".yml")]),
            TimeSpan.FromSeconds(10));

    private async Task<bool> IsRunningAsync(Member member)
    {
        var (code, _, _) = await ProcessRunner.RunAsync(
            new ProcessStartInfo("pgrep", ["-f", $"patroni {Path.Combine(Directory, member.Name + ".yml")}"]), TimeSpan.FromSeconds(10));
        return code == 0;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var member in Members)
        {
            await Signal("TERM", member);
        }

        foreach (var member in Members)
        {
            try
            {
                await Poll.UntilAsync(async () => !await IsRunningAsync(member), TimeSpan.FromSeconds(30), $"{member.Name} to stop");
            }
            catch (TimeoutException)
            {
                await Signal("KILL", member);
            }

            // A PostgreSQL left behind by a killed Patroni.
            var pidFile = Path.Combine(Directory, member.Name, "postmaster.pid");
            if (File.Exists(pidFile) && int.TryParse((await File.ReadAllLinesAsync(pidFile))[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                await ProcessRunner.RunAsync(new ProcessStartInfo("kill", ["-9", pid.ToString(CultureInfo.InvariantCulture)]), TimeSpan.FromSeconds(10));
            }
        }

        foreach (var process in _processes)
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            process.Dispose();
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temporary directory.
        }
    }
}
