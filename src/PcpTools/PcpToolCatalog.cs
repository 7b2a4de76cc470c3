namespace Poold.PcpTools;

/// <summary>One pgpool-II pcp_* tool: the verb the <c>pcp</c> program takes and what it asks the server for.</summary>
internal sealed record PcpTool(string Verb, string Description, bool TakesNodeId, bool NodeIdRequired, string[] ExtraOptions)
{
    /// <summary>The name pgpool-II gives the command, which <c>scripts/install.sh</c> creates as a launcher.</summary>
    public string CommandName => "pcp_" + Verb.Replace('-', '_');
}

internal static class PcpToolCatalog
{
    public static IReadOnlyList<PcpTool> All { get; } =
    [
        new("node-count", "display the number of backend nodes", false, false, []),
        new("node-info", "display information on backend nodes", true, false, ["-a"]),
        new("health-check-stats", "display health check statistics of a backend node", true, true, []),
        new("pool-status", "display the configuration parameters in force", false, false, []),
        new("proc-count", "display the list of client session ids", false, false, []),
        new("proc-info", "display information on client sessions", false, false, ["-P", "-a"]),
        new("attach-node", "attach a backend node", true, true, []),
        new("detach-node", "detach a backend node", true, true, ["-g"]),
        new("promote-node", "promote a standby to primary", true, true, ["-g", "-s"]),
        new("recovery-node", "online recovery of a backend node (not supported by Poold)", true, true, []),
        new("stop-pgpool", "stop Poold", false, false, ["-m", "-s"]),
        new("reload-config", "reload the configuration files", false, false, ["-s"]),
        new("watchdog-info", "display watchdog status (Poold has no watchdog)", false, false, []),
    ];
}
