using System.Globalization;
using System.Net.Sockets;
using Poold.Backends;
using Poold.Config;
using Poold.Sessions;

namespace Poold.Pcp;

/// <summary>
/// The figures PCP replies and the <c>SHOW POOL_*</c> commands report, formatted as pgpool-II formats them (compat
/// §4.4, §7), in one place so both show the same thing.
/// </summary>
internal static class NodeReport
{
    /// <summary>pgpool-II reports normalised weights multiplied by RAND_MAX on the wire.</summary>
    private const double RandMax = 2147483647;

    private static readonly string[] PasswordParameters = ["sr_check_password", "health_check_password", "recovery_password", "wd_lifecheck_password"];

    public static string StatusName(NodeStatus status) => status switch
    {
        NodeStatus.Up => "up",
        NodeStatus.Waiting => "waiting",
        NodeStatus.Down => "down",
        _ => "unused",
    };

    public static string RoleName(NodeState node, NodeSnapshot nodes) =>
        node.Status == NodeStatus.Unused ? "unknown" : node.Id == nodes.PrimaryNodeId ? "primary" : "standby";

    /// <summary>The node's weight share as pgpool shows it (<c>%f</c> of weight / sum of weights).</summary>
    public static double NormalizedWeight(NodeState node, NodeSnapshot nodes)
    {
        var total = nodes.Nodes.Where(n => n.Status != NodeStatus.Unused).Sum(n => n.Settings.Weight);
        return total > 0 && node.Status != NodeStatus.Unused ? node.Settings.Weight / total : 0;
    }

    public static string LocalTime(DateTimeOffset time) => time.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    private static string F6(double value) => value.ToString("F6", CultureInfo.InvariantCulture);

    private static string I(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Whether the node accepts TCP connections now (pgpool's pg_status, a live check).</summary>
    public static async Task<bool> ReachableAsync(NodeState node)
    {
        if (node.Status == NodeStatus.Unused)
        {
            return false;
        }

        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            if (node.Settings.IsUnixSocket)
            {
                var dir = node.Settings.Hostname.Length == 0 ? "/var/run/postgresql" : node.Settings.Hostname;
                using var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await unix.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(dir, $".s.PGSQL.{node.Settings.Port}")), timeout.Token);
                return true;
            }

            using var tcp = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await tcp.ConnectAsync(node.Settings.Hostname, node.Settings.Port, timeout.Token);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
        {
            return false;
        }
    }

    /// <summary>The NodeInfo record: 12 fields (4.3), or 13 with standby_delay_by_time (4.4+).</summary>
    public static List<string> NodeInfoFields(NodeState node, NodeSnapshot nodes, bool reachable, bool v44)
    {
        var status = node.Status switch
        {
            NodeStatus.Waiting => "1",
            NodeStatus.Up => "2",
            NodeStatus.Down => "3",
            _ => "0",
        };
        var role = node.Status == NodeStatus.Unused ? "0" : node.Id == nodes.PrimaryNodeId ? "2" : "3";
        var fields = new List<string>
        {
            node.Status == NodeStatus.Unused ? "" : node.Settings.Hostname,
            I(node.Settings.Port),
            status,
            "0",
            node.Status == NodeStatus.Unused ? "unknown" : reachable ? "up" : "down",
            F6(NormalizedWeight(node, nodes) * RandMax),
            role,
            node.Replication.PgRole,
        };
        if (v44)
        {
            fields.Add("0");
        }

        fields.AddRange([I(node.Replication.DelayBytes), node.Replication.State, node.Replication.SyncState, I(node.LastStatusChange.ToUnixTimeSeconds())]);
        return fields;
    }

    /// <summary>The 20 health-check statistics fields (durations in ms; never-happened times empty).</summary>
    public static List<string> HealthCheckFields(NodeState node, NodeSnapshot nodes, HealthStats? stats = null)
    {
        stats ??= new HealthStats();
        lock (stats)
        {
            string Time(DateTimeOffset? t) => t is { } value ? LocalTime(value) : "";
            return
            [
                I(node.Id), node.Settings.Hostname, I(node.Settings.Port), StatusName(node.Status), RoleName(node, nodes), LocalTime(node.LastStatusChange),
                I(stats.Total), I(stats.Success), I(stats.Fail), I(stats.Skip), I(stats.Retry), F6(stats.Total == 0 ? 0 : (double)stats.Retry / stats.Total),
                I(stats.MaxRetry), I((long)stats.MaxDurationMs), I((long)stats.MinDurationMs), F6(stats.Total == 0 ? 0 : stats.TotalDurationMs / stats.Total),
                Time(stats.LastCheck), Time(stats.LastSuccess), Time(stats.LastSkip), Time(stats.LastFailure),
            ];
        }
    }

    /// <summary>
    /// ProcessInfo rows, pgpool-II 4.7's 21 fields (older clients read the first 17 or 18): one row per session and
    /// backend connection; <paramref name="pid"/> 0 means every session.
    /// </summary>
    public static List<List<string>> ProcessRows(IReadOnlyList<ClientSession> sessions, int pid)
    {
        var rows = new List<List<string>>();
        foreach (var session in sessions)
        {
            if (pid != 0 && session.Id != pid)
            {
                continue;
            }

            var started = LocalTime(session.StartedAt);
            var backends = session.Backends;
            if (backends.Count == 0 && session.TransactionMode)
            {
                // Transaction mode, between transactions: the client holds no server connection (backend pid 0).
                rows.Add(
                [
                    I(session.Id), started, "1", "0", "0", session.Database ?? "", session.User ?? "", started, started, "", "0",
                    "3", "0", "1", "0", "0", session.StatusText, "0", session.ClientHost, session.ClientPort, "",
                ]);
            }

            foreach (var backend in backends)
            {
                rows.Add(
                [
                    I(session.Id), started, "1", "0", I(backend.NodeId), session.Database ?? "", session.User ?? "", started, started, "", "0",
                    "3", "0", "1", I(backend.ProcessId), "1", session.StatusText, backend.NodeId == session.BalanceNodeId ? "1" : "0",
                    session.ClientHost, session.ClientPort, "",
                ]);
            }
        }

        return rows;
    }

    /// <summary>pgpool-II keeps descriptions in 80-character fields; its tools print no more.</summary>
    public static string Truncate(string description) => description.Length > 80 ? description[..80] : description;

    /// <summary>Every parameter in force, with its description, as pcp_pool_status and SHOW POOL_STATUS list them.</summary>
    public static List<(string Name, string Value, string Description)> PoolStatus(PooldSettings settings, NodeSnapshot nodes)
    {
        var rows = new List<(string, string, string)>();
        foreach (var parameter in Params.All)
        {
            if (parameter.Scope == NodeScope.PerNode)
            {
                continue;
            }

            var value = PasswordParameters.Contains(parameter.Name) ? "*****" : settings.Show(parameter);
            value = value switch
            {
                "on" when parameter.DefaultValue is bool => "1",
                "off" when parameter.DefaultValue is bool => "0",
                _ => value,
            };
            rows.Add((parameter.Name, value, Truncate(parameter.Description)));
        }

        foreach (var node in nodes.Nodes)
        {
            var n = I(node.Id);
            rows.Add(("backend_hostname" + n, node.Settings.Hostname, "backend #" + n + " hostname"));
            rows.Add(("backend_port" + n, I(node.Settings.Port), "backend #" + n + " port number"));
            rows.Add(("backend_weight" + n, F6(NormalizedWeight(node, nodes)), "weight of backend #" + n));
            rows.Add(("backend_data_directory" + n, node.Settings.DataDirectory, "data directory for backend #" + n));
            rows.Add(("backend_status" + n, StatusName(node.Status), "status of backend #" + n));
            rows.Add(("standby_delay" + n, I(node.Replication.DelayBytes), "standby delay of backend #" + n));
            rows.Add(("backend_flag" + n, settings.Show(Params.BackendFlag, node.Id), "backend #" + n + " flag"));
        }

        return rows;
    }
}
