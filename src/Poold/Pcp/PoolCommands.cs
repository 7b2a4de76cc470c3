using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using Poold.Backends;
using Poold.Config;
using Poold.Sessions;

namespace Poold.Pcp;

/// <summary>A result Poold computes itself: text columns and rows, or an error.</summary>
internal sealed record PoolResult(IReadOnlyList<string> Columns, IReadOnlyList<string[]> Rows, string Tag, string? Error = null, string SqlState = "XX000")
{
    /// <summary>A WARNING sent before the result (the node view is not current, …).</summary>
    public string? Warning { get; init; }
}

/// <summary>What the SHOW POOL_* commands need to know about the caller's session.</summary>
internal interface IPoolCommandSession
{
    public int BalanceNodeId { get; }

    /// <summary>PGPOOL SET values of this session, by parameter name.</summary>
    public Dictionary<string, string> PoolOverrides { get; }

    /// <summary>PGPOOL EXPLAIN ROUTE: where the statement would go now in this session, and why (nothing runs).</summary>
    public (int NodeId, string Rule, string Reason) ExplainRoute(string statement);
}

/// <summary>
/// pgpool-II's SQL commands, answered by Poold inside a client session (compat §7): <c>SHOW POOL_NODES</c>,
/// <c>POOL_PROCESSES</c>, <c>POOL_POOLS</c>, <c>POOL_VERSION</c>, <c>POOL_STATUS</c>, <c>POOL_HEALTH_CHECK_STATS</c>,
/// <c>POOL_BACKEND_STATS</c>, <c>POOL_CACHE</c>, <c>PGPOOL SHOW / SET / RESET</c> and <c>PGPOOL EXPLAIN ROUTE</c>; and Poold's
/// own <c>SHOW POOL_CLIENTS</c> (every client, its pool mode and state) and <c>SHOW POOL_SERVERS</c> (every transaction-mode
/// pool: server connections in use and idle, clients waiting). Every column is text.
/// </summary>
internal static partial class PoolCommands
{
    /// <summary>
    /// What <c>SHOW POOL_VERSION</c> and <c>poold --version</c> print: the pgpool-II version Poold is compatible with,
    /// then Poold's own version (the assembly's informational version, its commit shortened to 7 digits).
    /// </summary>
    public static string Version { get; } = $"4.3.5 (poold {OwnVersion()})";

    private static string OwnVersion()
    {
        var version = typeof(PoolCommands).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
        var plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus >= 0 && version.Length > plus + 8 ? version[..(plus + 8)] : version;
    }

    [GeneratedRegex(@"^\s*(?:SHOW\s+(POOL_\w+)|PGPOOL\s+(SHOW|SET|RESET|EXPLAIN)\b\s*(.*?))\s*;?\s*$", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex CommandPattern();

    [GeneratedRegex(@"^(\w+)\s*(?:=|\s+TO\s+|\s+)\s*(.+)$", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex SetPattern();

    /// <summary>True when <paramref name="sql"/> is one of pgpool's commands Poold answers itself.</summary>
    public static bool IsPoolCommand(string sql) => sql.Length < 4096 && CommandPattern().IsMatch(sql);

    /// <summary>
    /// A quick look at the bytes, without allocating: only text containing "POOL_" or starting with "PGPOOL" can be a pool
    /// command, so every other statement skips the string and the pattern.
    /// </summary>
    public static bool MightBePoolCommand(ReadOnlySpan<byte> sql)
    {
        if (sql.Length > 4096)
        {
            return false;
        }

        var text = sql.TrimStart(" \t\r\n"u8);
        return StartsWith(text, "PGPOOL"u8) || (StartsWith(text, "SHOW"u8) && StartsWith(text[4..].TrimStart(" \t\r\n"u8), "POOL_"u8));
    }

    private static bool StartsWith(ReadOnlySpan<byte> text, ReadOnlySpan<byte> prefix) =>
        text.Length >= prefix.Length && System.Text.Ascii.EqualsIgnoreCase(text[..prefix.Length], prefix);

    public static PoolResult Execute(string sql, PooldSettings settings, NodeSnapshot nodes, IReadOnlyList<ClientSession> sessions,
        NodeCounters counters, IPoolCommandSession session, HealthStats[]? health = null, string? nodesWarning = null,
        IReadOnlyList<Pooling.SharedPoolState>? serverPools = null)
    {
        var match = CommandPattern().Match(sql);
        if (match.Groups[1].Success)
        {
            return match.Groups[1].Value.ToUpperInvariant() switch
            {
                "POOL_NODES" => Nodes(nodes, counters, session) with { Warning = nodesWarning },
                "POOL_PROCESSES" => Processes(sessions),
                "POOL_POOLS" => Pools(sessions),
                "POOL_CLIENTS" => Clients(sessions),
                "POOL_SERVERS" => Servers(serverPools ?? []),
                "POOL_VERSION" => new(["pool_version"], [[Version]], "SELECT 1"),
                "POOL_STATUS" => new(["item", "value", "description"],
                    [.. NodeReport.PoolStatus(settings, nodes).Select(r => new[] { r.Name, r.Value, r.Description })], ""),
                "POOL_HEALTH_CHECK_STATS" => new(HealthColumns, [.. nodes.Nodes.Select(n => NodeReport.HealthCheckFields(n, nodes, health?[n.Id]).ToArray())], ""),
                "POOL_BACKEND_STATS" => BackendStats(nodes, counters),
                "POOL_CACHE" => new(["num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries", "used_hash_entries",
                    "num_cache_entries", "used_cache_entries_size", "free_cache_entries_size", "fragment_cache_entries_size"],
                    [["0", "0", "0.00", "0", "0", "0", "0", "0", "0"]], ""),
                var other => new([], [], "", $"unrecognized configuration parameter \"{other.ToLowerInvariant()}\"", "42704"),
            };
        }

        var verb = match.Groups[2].Value.ToUpperInvariant();
        var rest = match.Groups[3].Value.Trim();
        return verb switch
        {
            "EXPLAIN" => ExplainRoute(rest, session),
            "SHOW" => PgpoolShow(rest, settings, session),
            "SET" => PgpoolSet(rest, session),
            _ => PgpoolReset(rest, session),
        };
    }

    [GeneratedRegex(@"^ROUTE\s+(\S.*)$", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex ExplainRoutePattern();

    /// <summary><c>PGPOOL EXPLAIN ROUTE statement</c>: one row, node_id, rule, reason.</summary>
    private static PoolResult ExplainRoute(string rest, IPoolCommandSession session)
    {
        if (ExplainRoutePattern().Match(rest) is not { Success: true } match)
        {
            return new([], [], "", "syntax error: PGPOOL EXPLAIN ROUTE needs a statement, as in PGPOOL EXPLAIN ROUTE SELECT 1", "42601");
        }

        var (node, rule, reason) = session.ExplainRoute(match.Groups[1].Value);
        return new(["node_id", "rule", "reason"], [[I(node), rule, reason]], "SELECT 1");
    }

    private static readonly string[] HealthColumns =
    [
        "node_id", "hostname", "port", "status", "role", "last_status_change", "total_count", "success_count", "fail_count", "skip_count",
        "retry_count", "average_retry_count", "max_retry_count", "max_duration", "min_duration", "average_duration", "last_health_check",
        "last_successful_health_check", "last_skip_health_check", "last_failed_health_check",
    ];

    private static string I(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static PoolResult Nodes(NodeSnapshot nodes, NodeCounters counters, IPoolCommandSession session)
    {
        var rows = new List<string[]>();
        foreach (var node in nodes.Nodes.Where(n => n.Status != NodeStatus.Unused))
        {
            rows.Add(
            [
                I(node.Id), node.Settings.Hostname, I(node.Settings.Port), NodeReport.StatusName(node.Status),
                node.Status == NodeStatus.Down ? "down" : "up",
                NodeReport.NormalizedWeight(node, nodes).ToString("F6", CultureInfo.InvariantCulture), NodeReport.RoleName(node, nodes),
                node.Replication.PgRole, I(counters.Get(node.Id).Select), node.Id == session.BalanceNodeId ? "true" : "false",
                I(node.Replication.DelayBytes), node.Replication.State, node.Replication.SyncState,
                NodeReport.LocalTime(node.LastStatusChange),
            ]);
        }

        return new(["node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role", "select_cnt", "load_balance_node",
            "replication_delay", "replication_state", "replication_sync_state", "last_status_change"], rows, "");
    }

    private static PoolResult Processes(IReadOnlyList<ClientSession> sessions) => new(
        ["pool_pid", "start_time", "client_connection_count", "database", "username", "backend_connection_time", "pool_counter", "status"],
        [.. sessions.Select(s => new[]
        {
            I(s.Id), NodeReport.LocalTime(s.StartedAt), "1", s.Database ?? "", s.User ?? "", NodeReport.LocalTime(s.StartedAt), "1", s.StatusText,
        })], "");

    private static PoolResult Pools(IReadOnlyList<ClientSession> sessions) => new(
        ["pool_pid", "start_time", "client_connection_count", "pool_id", "backend_id", "database", "username", "backend_connection_time",
            "client_connection_time", "client_disconnection_time", "client_idle_duration", "majorversion", "minorversion", "pool_counter",
            "pool_backendpid", "pool_connected", "status", "load_balance_node", "client_host", "client_port", "statement"],
        [.. NodeReport.ProcessRows(sessions, 0).Select(r => r.ToArray())], "");

    /// <summary>SHOW POOL_CLIENTS: one row per client, with what it holds now (PgBouncer's SHOW CLIENTS).</summary>
    private static PoolResult Clients(IReadOnlyList<ClientSession> sessions) => new(
        ["pool_pid", "database", "username", "pool_mode", "state", "pinned_by", "backends", "client_host", "client_port", "connect_time"],
        [.. sessions.Select(s =>
        {
            var backends = s.Backends;
            var state = s.WaitingForServer ? "waiting" : backends.Count > 0 ? "active" : "idle";
            return new[]
            {
                I(s.Id), s.Database ?? "", s.User ?? "", s.TransactionMode ? "transaction" : "session", state, s.PinnedBy ?? "",
                string.Join(' ', backends.Select(b => $"{I(b.NodeId)}:{I(b.ProcessId)}")), s.ClientHost, s.ClientPort, NodeReport.LocalTime(s.StartedAt),
            };
        })], "");

    /// <summary>SHOW POOL_SERVERS: one row per transaction-mode pool (node, user, database): connections in use, idle, clients waiting.</summary>
    private static PoolResult Servers(IReadOnlyList<Pooling.SharedPoolState> pools) => new(
        ["node_id", "database", "username", "sv_active", "sv_idle", "sv_open", "cl_waiting"],
        [.. pools.OrderBy(p => p.Key.NodeId).ThenBy(p => p.Key.Database, StringComparer.Ordinal).ThenBy(p => p.Key.User, StringComparer.Ordinal)
            .Select(p => new[] { I(p.Key.NodeId), p.Key.Database, p.Key.User, I(Math.Max(0, p.Open - p.Idle)), I(p.Idle), I(p.Open), I(p.Waiting) })], "");

    private static PoolResult BackendStats(NodeSnapshot nodes, NodeCounters counters) => new(
        ["node_id", "hostname", "port", "status", "role", "select_cnt", "insert_cnt", "update_cnt", "delete_cnt", "ddl_cnt", "other_cnt",
            "panic_cnt", "fatal_cnt", "error_cnt"],
        [.. nodes.Nodes.Where(n => n.Status != NodeStatus.Unused).Select(n =>
        {
            var c = counters.Get(n.Id);
            return new[]
            {
                I(n.Id), n.Settings.Hostname, I(n.Settings.Port), NodeReport.StatusName(n.Status), NodeReport.RoleName(n, nodes), I(c.Select),
                I(c.Insert), I(c.Update), I(c.Delete), I(c.Ddl), I(c.Other), "0", "0", I(c.Error),
            };
        })], "");

    private static readonly string[] Hidden = ["sr_check_password", "health_check_password", "recovery_password", "wd_lifecheck_password", "pool_passwd"];

    private static PoolResult PgpoolShow(string name, PooldSettings settings, IPoolCommandSession session)
    {
        name = name.Trim().Trim('"').ToLowerInvariant();
        if (name == "all")
        {
            return new(["item", "value", "description"],
                [.. NodeReport.PoolStatus(settings, new NodeSnapshot([], -1)).Select(r => new[] { r.Name, Value(r.Name, r.Value, session), r.Description })], "");
        }

        var (parameter, node) = Find(name);
        if (parameter is null)
        {
            return new([], [], "", $"config parameter \"{name}\" not found", "42704");
        }

        var value = node is { } n ? settings.Show(parameter, n) : settings.Show(parameter);
        return new([name], [[Value(parameter.Name, value, session)]], "");
    }

    private static string Value(string name, string value, IPoolCommandSession session) =>
        Hidden.Contains(name) ? "*****" : session.PoolOverrides.GetValueOrDefault(name, value);

    private static PoolResult PgpoolSet(string assignment, IPoolCommandSession session)
    {
        var match = SetPattern().Match(assignment);
        if (!match.Success)
        {
            return new([], [], "", "syntax error in PGPOOL SET: expected \"name = value\"", "42601");
        }

        var name = match.Groups[1].Value.ToLowerInvariant();
        var (parameter, _) = Find(name);
        if (parameter is null)
        {
            return new([], [], "", $"config parameter \"{name}\" not found", "42704");
        }

        if (parameter.Context != ParameterContext.Session)
        {
            return new([], [], "", $"invalid Context, value for parameter \"{name}\" cannot be changed", "55P02");
        }

        var text = match.Groups[2].Value.Trim().Trim('\'');
        if (text.Equals("DEFAULT", StringComparison.OrdinalIgnoreCase))
        {
            session.PoolOverrides.Remove(parameter.Name);
            return new([], [], "SET");
        }

        if (parameter.TryParse(text, out var value) is { } error)
        {
            return new([], [], "", $"invalid value \"{text}\" for parameter \"{name}\": {error}", "22023");
        }

        session.PoolOverrides[parameter.Name] = parameter.Show(value);
        return new([], [], "SET");
    }

    private static PoolResult PgpoolReset(string name, IPoolCommandSession session)
    {
        name = name.Trim().ToLowerInvariant();
        if (name == "all")
        {
            session.PoolOverrides.Clear();
        }
        else
        {
            session.PoolOverrides.Remove(name);
        }

        return new([], [], "SET");
    }

    /// <summary>A parameter by name; <c>name3</c> is node 3 of a per-node parameter.</summary>
    private static (Parameter? Parameter, int? Node) Find(string name)
    {
        if (Params.All.FirstOrDefault(p => p.Name == name || p.Aliases.Contains(name)) is { } exact)
        {
            return (exact, null);
        }

        var digits = name.Length - name.Reverse().TakeWhile(char.IsAsciiDigit).Count();
        if (digits < name.Length && int.TryParse(name.AsSpan(digits), NumberStyles.None, CultureInfo.InvariantCulture, out var node)
                                 && Params.All.FirstOrDefault(p => p.Name == name[..digits] && p.Scope != NodeScope.Global) is { } perNode)
        {
            return (perNode, node);
        }

        return (null, null);
    }
}

/// <summary>Statements sent to each node since start, by kind, for SHOW POOL_NODES and SHOW POOL_BACKEND_STATS.</summary>
internal sealed class NodeCounters
{
    private readonly Counts[] _counts = Enumerable.Range(0, Params.MaxNodeId + 1).Select(_ => new Counts()).ToArray();

    public sealed class Counts
    {
        public long Select;
        public long Insert;
        public long Update;
        public long Delete;
        public long Ddl;
        public long Other;
        public long Error;
    }

    public Counts Get(int node) => _counts[node];

    public void Count(int node, string? verb)
    {
        var c = _counts[node];
        switch (verb)
        {
            case "SELECT" or "WITH" or "TABLE" or "(":
                Interlocked.Increment(ref c.Select);
                break;
            case "INSERT":
                Interlocked.Increment(ref c.Insert);
                break;
            case "UPDATE":
                Interlocked.Increment(ref c.Update);
                break;
            case "DELETE":
                Interlocked.Increment(ref c.Delete);
                break;
            case "CREATE" or "ALTER" or "DROP" or "TRUNCATE" or "COMMENT" or "GRANT" or "REVOKE":
                Interlocked.Increment(ref c.Ddl);
                break;
            default:
                Interlocked.Increment(ref c.Other);
                break;
        }
    }
}
