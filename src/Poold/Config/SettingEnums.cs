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

/// <summary>read_your_writes: off, or a session's reads follow its own writes.</summary>
internal enum ReadYourWritesMode
{
    Off,
    Session,
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

/// <summary>
/// <c>backend_sslmodeN</c>, as libpq's <c>sslmode</c>. <see cref="Default"/> keeps pgpool-II's behaviour: prefer when
/// <c>ssl = on</c>, disable when it is off. Unix-socket backends never use TLS.
/// </summary>
internal enum BackendTlsMode
{
    Default,
    Disable,

    /// <summary>Ask; go on in plaintext if the server says no; the certificate is not checked.</summary>
    Prefer,

    /// <summary>TLS or no connection; the certificate is not checked.</summary>
    Require,

    /// <summary>TLS, and the certificate must chain to <c>backend_ssl_ca_certN</c>.</summary>
    VerifyCa,

    /// <summary>As <see cref="VerifyCa"/>, and the certificate must name the backend's host.</summary>
    VerifyFull,
}

/// <summary><c>backend_require_authN</c>, as libpq's <c>require_auth</c>: the methods a backend may ask Poold for.</summary>
[Flags]
internal enum BackendAuthSet
{
    /// <summary>The backend lets Poold in without asking (trust).</summary>
    None = 1,
    Password = 2,
    Md5 = 4,
    ScramSha256 = 8,
    Any = None | Password | Md5 | ScramSha256,
}

/// <summary>backend_discovery: who decides which node is the primary.</summary>
internal enum BackendDiscovery
{
    /// <summary>Poold's own health checks, failover_command and primary search, as pgpool-II.</summary>
    Poold,

    /// <summary>Patroni decides; Poold reads its REST API and follows, and never promotes or runs failover commands.</summary>
    Patroni,
}

/// <summary>pool_mode: how long a client holds its backend connections.</summary>
internal enum PoolMode
{
    /// <summary>From login to Terminate (pgpool-II's model).</summary>
    Session,

    /// <summary>From the first batch of a transaction to its ReadyForQuery <c>I</c> (PgBouncer's transaction pooling).</summary>
    Transaction,
}
