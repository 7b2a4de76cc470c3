namespace Poold.Config;

internal enum ClusteringMode
{
    StreamingReplication,
    NativeReplication,
    LogicalReplication,
    Slony,
    Raw,
    SnapshotIsolation,
}

/// <summary><c>disable_load_balance_on_write</c>: what a write does to later reads of the session.</summary>
internal enum LoadBalanceOnWrite
{
    Off,
    Transaction,
    TransTransaction,
    Always,
    DmlAdaptive,
}

internal enum CheckTempTable
{
    Catalog,
    Trace,
    None,
}

internal enum LogStandbyDelay
{
    None,
    Always,
    IfOverThreshold,
}

internal enum RelcacheQueryTarget
{
    Primary,
    LoadBalanceNode,
}

/// <summary>pgpool-II's message levels, lowest first (<c>log_min_messages</c>, <c>client_min_messages</c>).</summary>
internal enum MessageLevel
{
    Debug5,
    Debug4,
    Debug3,
    Debug2,
    Debug1,
    Log,
    Info,
    Notice,
    Warning,
    Error,
    Fatal,
    Panic,
}

internal enum ErrorVerbosity
{
    Terse,
    Default,
    Verbose,
}

/// <summary>Poold's own <c>ssl_min_protocol_version</c>/<c>ssl_max_protocol_version</c>, named as PostgreSQL names them.</summary>
internal enum TlsVersion
{
    /// <summary>No bound (only meaningful as the maximum).</summary>
    Any,
    Tls12,
    Tls13,
}

/// <summary>Which PCP NodeInfo record layout Poold's PCP server sends (there is no negotiation in PCP).</summary>
internal enum PcpProtocolVersion
{
    V43,
    V44,
}

[Flags]
internal enum BackendFlags
{
    /// <summary>The default: a failed node may be detached.</summary>
    AllowToFailover = 0,
    DisallowToFailover = 1,
    AlwaysPrimary = 2,
}
