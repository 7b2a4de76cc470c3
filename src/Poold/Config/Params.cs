using System.Collections.Frozen;
using static Poold.Config.ParameterContext;
using static Poold.Config.ParameterKinds;

namespace Poold.Config;

/// <summary>
/// Every pgpool.conf parameter Poold honours, with pgpool-II 4.3's compiled defaults, contexts and descriptions
/// (pgpool-compat.md §5.2), plus the few Poold adds. Names pgpool-II accepts that Poold has no use for are in
/// <see cref="Ignored"/>: they load silently, so an existing pgpool.conf works unchanged.
/// </summary>
internal static class Params
{
    private static readonly TimeSpan Seconds0 = TimeSpan.Zero;

    // ---- Connections --------------------------------------------------------------------------------------------
    public static readonly Parameter<ClusteringMode> BackendClusteringMode = Enum("backend_clustering_mode", ClusteringMode.StreamingReplication,
        [("streaming_replication", ClusteringMode.StreamingReplication), ("native_replication", ClusteringMode.NativeReplication),
         ("logical_replication", ClusteringMode.LogicalReplication), ("slony", ClusteringMode.Slony), ("raw", ClusteringMode.Raw),
         ("snapshot_isolation", ClusteringMode.SnapshotIsolation)], Start, "clustering mode");

    /// <summary>4.3 takes one string, 4.4+ a comma list; both read as a list. <c>*</c> = all, empty = none.</summary>
    public static readonly Parameter<IReadOnlyList<string>> ListenAddresses =
        List("listen_addresses", "localhost", ',', Start, "host name(s) or IP address(es) to listen on");

    public static readonly Parameter<int> Port = Int("port", 9999, 1, 65535, Start, "pgpool accepting port number");

    /// <summary>4.3's <c>socket_dir</c> (one directory) and 4.4+'s <c>unix_socket_directories</c> (a list) are one setting.</summary>
    public static readonly Parameter<IReadOnlyList<string>> UnixSocketDirectories =
        List("unix_socket_directories", "/tmp", ',', Start, "pgpool socket directories", aliases: ["socket_dir"]);

    public static readonly Parameter<string> UnixSocketGroup = String("unix_socket_group", "", Start, "owner group of Unix-domain sockets");

    public static readonly Parameter<int> UnixSocketPermissions =
        Int("unix_socket_permissions", Convert.ToInt32("777", 8), 0, Convert.ToInt32("777", 8), Start, "access permissions of Unix-domain sockets");

    public static readonly Parameter<IReadOnlyList<string>> PcpListenAddresses =
        List("pcp_listen_addresses", "localhost", ',', Start, "host name(s) or IP address(es) for pcp process to listen on");

    public static readonly Parameter<int> PcpPort = Int("pcp_port", 9898, 1, 65535, Start, "PCP port # to bind");

    public static readonly Parameter<IReadOnlyList<string>> PcpSocketDir =
        List("pcp_socket_dir", "/tmp", ',', Start, "PCP socket directory");

    public static readonly Parameter<PcpProtocolVersion> PcpProtocol = Enum("pcp_protocol_version", PcpProtocolVersion.V43,
        [("4.3", PcpProtocolVersion.V43), ("4.4", PcpProtocolVersion.V44)], Reload,
        "PCP node info record layout: 4.3 (12 fields) or 4.4 (13 fields, pgpool-II 4.4 and later) [Poold]");

    public static readonly Parameter<int> NumInitChildren =
        Int("num_init_children", 32, 1, 100_000, Start, "maximum number of concurrent client sessions");

    public static readonly Parameter<int> ListenBacklogMultiplier =
        Int("listen_backlog_multiplier", 2, 1, 10_000, Start, "determines the size of the queue for pending connections");

    public static readonly Parameter<int> ReservedConnections = Int("reserved_connections", 0, 0, 100_000, Start, "number of reserved connections");

    public static readonly Parameter<int> ListenBacklog = Int("listen_backlog", 4096, 1, 1_000_000, Start,
        "listen queue of the client sockets (at least num_init_children * listen_backlog_multiplier, at most net.core.somaxconn) [Poold]");

    public static readonly Parameter<int> MaxUnauthenticatedConnections = Int("max_unauthenticated_connections", 1000, 1, 1_000_000, Reload,
        "client connections that may be negotiating or authenticating at once; more are refused with 53300 [Poold]");

    public static readonly Parameter<TimeSpan> UnauthenticatedTimeout = Time("unauthenticated_timeout", TimeSpan.FromSeconds(60), UnitKind.Seconds,
        Reload, "longest time a client may take to authenticate, even with authentication_timeout = 0 [Poold]");

    public static readonly Parameter<int> PcpMaxConnections = Int("pcp_max_connections", 32, 1, 100_000, Reload,
        "PCP connections open at once; more are closed at once [Poold]");

    public static readonly Parameter<TimeSpan> PcpAuthenticationTimeout = Time("pcp_authentication_timeout", TimeSpan.FromSeconds(5),
        UnitKind.Seconds, Reload, "time a PCP connection may stay idle before it has authenticated [Poold]");

    public static readonly Parameter<int> MaxPool = Int("max_pool", 4, 1, 100_000, Start, "max # of connection pool per child");

    public static readonly Parameter<TimeSpan> ConnectionLifeTime =
        Time("connection_life_time", Seconds0, UnitKind.Seconds, Start, "if idle for this seconds, connection closes");

    public static readonly Parameter<TimeSpan> ClientIdleLimit =
        Time("client_idle_limit", Seconds0, UnitKind.Seconds, Session, "if idle for this seconds, child connection closes");

    public static readonly Parameter<TimeSpan> AuthenticationTimeout = Time("authentication_timeout", TimeSpan.FromSeconds(60),
        UnitKind.Seconds, Start, "maximum time in seconds to complete client authentication");

    public static readonly Parameter<bool> ConnectionCache = Bool("connection_cache", true, Start, "if true, cache connection pool");

    public static readonly Parameter<IReadOnlyList<string>> ResetQueryList =
        List("reset_query_list", "ABORT;DISCARD ALL", ';', Reload, "queries issued at the end of session");

    /// <summary>PgBouncer's name: a cached connection idle for longer than this answers server_check_query before reuse.</summary>
    public static readonly Parameter<TimeSpan> ServerCheckDelay = Time("server_check_delay", TimeSpan.FromSeconds(30), UnitKind.Seconds, Reload,
        "check a cached connection idle for longer than this before it is reused");

    /// <summary>PgBouncer's name and default; empty turns the check off (the closed-by-peer test at checkout stays).</summary>
    public static readonly Parameter<string> ServerCheckQuery = String("server_check_query", "select 1", Reload,
        "query that checks a cached connection idle for longer than server_check_delay");

    /// <summary>PgBouncer's name: the largest message a client may send; past it the session ends with 54000.</summary>
    public static readonly Parameter<int> MaxPacketSize = Int("max_packet_size", 256 << 20, 1024, 1 << 30, Reload,
        "largest message, in bytes, a client may send");

    // ---- Pool modes (PgBouncer's names) ---------------------------------------------------------------------------
    /// <summary>session: a client keeps its backend connections for its whole session (pgpool-II); transaction: only for one transaction.</summary>
    public static readonly Parameter<PoolMode> PoolModeParam = Enum("pool_mode", PoolMode.Session,
        [("session", PoolMode.Session), ("transaction", PoolMode.Transaction)], Reload,
        "session: a client holds its backend connections for its session; transaction: for one transaction [Poold]");

    /// <summary>Per-database pool_mode, pgpool's list style: <c>'analytics:session,app:transaction'</c>.</summary>
    public static readonly Parameter<IReadOnlyList<string>> PoolModeDatabaseList =
        List("pool_mode_database_list", "", ',', Reload, "pool_mode per database: db:session or db:transaction, comma separated [Poold]");

    public static readonly Parameter<int> MaxClientConn = Int("max_client_conn", 10_000, 1, 1_000_000, Reload,
        "most clients in transaction-mode pools at once (session mode: num_init_children) [Poold]");

    public static readonly Parameter<int> DefaultPoolSize = Int("default_pool_size", 20, 1, 100_000, Reload,
        "transaction mode: server connections per node, user and database [Poold]");

    public static readonly Parameter<int> MaxDbConnections = Int("max_db_connections", 0, 0, 1_000_000, Reload,
        "transaction mode: server connections per node in all (0 = no limit beyond default_pool_size per pool) [Poold]");

    public static readonly Parameter<TimeSpan> QueryWaitTimeout = Time("query_wait_timeout", TimeSpan.FromSeconds(120), UnitKind.Seconds, Reload,
        "transaction mode: longest wait for a free server connection before the client gets 53300 (0 = no limit, as in PgBouncer) [Poold]");

    public static readonly Parameter<int> MaxPreparedStatements = Int("max_prepared_statements", 200, 0, 1_000_000, Reload,
        "transaction mode: named prepared statements kept per server connection (least recently used closed past it; 0 = no cap) [Poold]");

    /// <summary>Poold's own: where the Prometheus endpoint (<c>/metrics</c>, <c>/health</c>) listens.</summary>
    public static readonly Parameter<IReadOnlyList<string>> MetricsListenAddresses =
        List("metrics_listen_addresses", "localhost", ',', Start, "host name(s) or IP address(es) the metrics endpoint listens on");

    /// <summary>Poold's own: the HTTP port of <c>/metrics</c> and <c>/health</c>; 0 turns the endpoint off.</summary>
    public static readonly Parameter<int> MetricsPort = Int("metrics_port", 0, 0, 65535, Start, "metrics and health HTTP port (0 = off)");

    // ---- Authentication and TLS ---------------------------------------------------------------------------------
    public static readonly Parameter<bool> EnablePoolHba = Bool("enable_pool_hba", false, Reload, "if true, use pool_hba.conf for client authentication");

    public static readonly Parameter<string> PoolPasswd = String("pool_passwd", "pool_passwd", Start, "file name of pool_passwd for md5 authentication");

    public static readonly Parameter<bool> AllowClearTextFrontendAuth = Bool("allow_clear_text_frontend_auth", false, Reload,
        "allow to use clear text password auth when pool_passwd does not contain password");

    /// <summary>PgBouncer's name and default: the query that returns (user name, password verifier) for <c>$1</c>.</summary>
    public static readonly Parameter<string> AuthQuery = String("auth_query", "SELECT usename, passwd FROM pg_shadow WHERE usename = $1", Reload,
        "query that fetches a user's password verifier from the primary for users without a pool_passwd entry (PgBouncer) [Poold]");

    public static readonly Parameter<string> AuthUser = String("auth_user", "", Reload,
        "user that runs auth_query (its own password from pool_passwd); empty disables auth_query (PgBouncer) [Poold]");

    public static readonly Parameter<string> AuthDbname = String("auth_dbname", "", Reload,
        "database auth_query runs in; empty = the database the client asks for (PgBouncer) [Poold]");

    public static readonly Parameter<TimeSpan> AuthQueryCacheTime = Time("auth_query_cache_time", Seconds0, UnitKind.Seconds, Reload,
        "how long a verifier fetched by auth_query is reused; 0 = fetch at every login [Poold]");

    public static readonly Parameter<bool> Ssl = Bool("ssl", false, Start, "SSL support");
    public static readonly Parameter<string> SslKey = String("ssl_key", "", Reload, "SSL private key file");
    public static readonly Parameter<string> SslCert = String("ssl_cert", "", Reload, "SSL public certificate file");
    public static readonly Parameter<string> SslCaCert = String("ssl_ca_cert", "", Reload, "single PEM format file containing CA root certificate(s)");
    public static readonly Parameter<string> SslCaCertDir = String("ssl_ca_cert_dir", "", Reload, "directory containing CA root certificate(s)");
    public static readonly Parameter<string> SslCrlFile = String("ssl_crl_file", "", Reload, "SSL certificate revocation list file");
    public static readonly Parameter<string> SslCrlDir = String("ssl_crl_dir", "", Reload,
        "directory of certificate revocation lists (*.pem, *.crl, c_rehash's *.rN) for client certificates [Poold]");
    public static readonly Parameter<string> SslCiphers = String("ssl_ciphers", "HIGH:MEDIUM:+3DES:!aNULL", Start, "allowed SSL ciphers");
    public static readonly Parameter<bool> SslPreferServerCiphers = Bool("ssl_prefer_server_ciphers", false, Start, "Use server's SSL cipher preferences");
    public static readonly Parameter<string> SslEcdhCurve = String("ssl_ecdh_curve", "prime256v1", Start, "the curve to use in ECDH key exchange");
    public static readonly Parameter<string> SslDhParamsFile =
        String("ssl_dh_params_file", "", Start, "path to the Diffie-Hellman parameters contained file");
    public static readonly Parameter<string> SslPassphraseCommand = String("ssl_passphrase_command", "", Reload,
        "external command to be invoked when a passphrase for decrypting an SSL file such as a private key needs to be obtained");

    private static readonly (string, TlsVersion)[] TlsWords = [("TLSv1.2", TlsVersion.Tls12), ("TLSv1.3", TlsVersion.Tls13), ("", TlsVersion.Any)];

    public static readonly Parameter<TlsVersion> SslMinProtocolVersion = Enum("ssl_min_protocol_version", TlsVersion.Tls12, TlsWords[..2], Start,
        "minimum TLS version for clients and backends: TLSv1.2 or TLSv1.3 [Poold]");

    public static readonly Parameter<TlsVersion> SslMaxProtocolVersion = Enum("ssl_max_protocol_version", TlsVersion.Any, TlsWords, Start,
        "maximum TLS version, '' for no limit [Poold]");

    // ---- Logging and files --------------------------------------------------------------------------------------
    public static readonly Parameter<IReadOnlyList<string>> LogDestination =
        List("log_destination", "stderr", ',', Reload, "logging destination");

    public static readonly Parameter<LogFormat> LogFormatting = Enum("log_format", LogFormat.Text, [("text", LogFormat.Text), ("json", LogFormat.Json)],
        Reload, "text: log_line_prefix lines; json: one compact JSON object per event (Serilog CLEF) [Poold]");

    public static readonly Parameter<SyslogFacility> SyslogFacilityParam = Enum("syslog_facility", SyslogFacility.Local0,
        [("LOCAL0", SyslogFacility.Local0), ("LOCAL1", SyslogFacility.Local1), ("LOCAL2", SyslogFacility.Local2), ("LOCAL3", SyslogFacility.Local3),
            ("LOCAL4", SyslogFacility.Local4), ("LOCAL5", SyslogFacility.Local5), ("LOCAL6", SyslogFacility.Local6), ("LOCAL7", SyslogFacility.Local7)],
        Reload, "syslog local facility");

    public static readonly Parameter<string> SyslogIdent = String("syslog_ident", "pgpool", Reload, "syslog program ident string");

    public static readonly Parameter<string> SyslogSocket = String("syslog_socket", "/dev/log", Reload,
        "the local syslog datagram socket log_destination = 'syslog' writes to [Poold]");

    public static readonly Parameter<string> LogLinePrefix =
        String("log_line_prefix", "%m: %a pid %p: ", Reload, "printf-style string to output at beginning of each log line");

    public static readonly Parameter<ErrorVerbosity> LogErrorVerbosity = Enum("log_error_verbosity", ErrorVerbosity.Default,
        [("terse", ErrorVerbosity.Terse), ("default", ErrorVerbosity.Default), ("verbose", ErrorVerbosity.Verbose)], Session,
        "controls how much detail about error should be emitted");

    private static readonly (string, MessageLevel)[] LevelWords =
    [
        ("debug5", MessageLevel.Debug5), ("debug4", MessageLevel.Debug4), ("debug3", MessageLevel.Debug3),
        ("debug2", MessageLevel.Debug2), ("debug1", MessageLevel.Debug1), ("debug", MessageLevel.Debug2), ("log", MessageLevel.Log),
        ("info", MessageLevel.Info), ("notice", MessageLevel.Notice), ("warning", MessageLevel.Warning), ("error", MessageLevel.Error),
        ("fatal", MessageLevel.Fatal), ("panic", MessageLevel.Panic),
    ];

    public static readonly Parameter<MessageLevel> ClientMinMessages =
        Enum("client_min_messages", MessageLevel.Notice, LevelWords, Session, "controls which message should be sent to client");

    public static readonly Parameter<MessageLevel> LogMinMessages =
        Enum("log_min_messages", MessageLevel.Warning, LevelWords, Session, "controls which message should be emitted to server log");

    public static readonly Parameter<bool> LogConnections = Bool("log_connections", false, Reload, "if true, print incoming connections to the log");
    public static readonly Parameter<bool> LogDisconnections =
        Bool("log_disconnections", false, Reload, "if true, print closing connections to the log");
    public static readonly Parameter<bool> LogHostname = Bool("log_hostname", false, Reload, "if true, resolve hostname for ps and log print");
    public static readonly Parameter<bool> LogStatement = Bool("log_statement", false, Session, "if non 0, logs all SQL statements");
    public static readonly Parameter<bool> LogPerNodeStatement =
        Bool("log_per_node_statement", false, Session, "if non 0, logs all SQL statements on each node");
    public static readonly Parameter<bool> LogClientMessages = Bool("log_client_messages", false, Session, "if non 0, logs any client messages");

    public static readonly Parameter<LogStandbyDelay> LogStandbyDelayMode = Enum("log_standby_delay", LogStandbyDelay.IfOverThreshold,
        [("none", LogStandbyDelay.None), ("always", LogStandbyDelay.Always), ("if_over_threshold", LogStandbyDelay.IfOverThreshold)],
        Reload, "how to log standby delay");

    public static readonly Parameter<bool> LoggingCollector = Bool("logging_collector", false, Start, "enable capturing of stderr into log files");
    public static readonly Parameter<string> LogDirectory = String("log_directory", "/tmp/pgpool_logs", Start, "directory where log files are written");
    public static readonly Parameter<string> LogFilename = String("log_filename", "pgpool-%Y-%m-%d_%H%M%S.log", Start, "log file name pattern");

    public static readonly Parameter<string> PidFileName = String("pid_file_name", "/var/run/pgpool/pgpool.pid", Start, "path to pid file");

    /// <summary>Directory of <c>pgpool_status</c>; 4.7 renames it <c>work_dir</c>.</summary>
    public static readonly Parameter<string> Logdir = String("logdir", "/tmp", Start, "PgPool status file logging directory", aliases: ["work_dir"]);

    // ---- Load balancing and routing -----------------------------------------------------------------------------
    public static readonly Parameter<bool> LoadBalanceMode = Bool("load_balance_mode", true, Start, "non 0 if operating in load balancing mode");
    public static readonly Parameter<bool> IgnoreLeadingWhiteSpace = Bool("ignore_leading_white_space", true, Reload, "ignore leading white spaces");

    public static readonly Parameter<IReadOnlyList<string>> ReadOnlyFunctionList = List("read_only_function_list", "", ',', Reload,
        "functions those do not write to database", aliases: ["white_function_list"]);

    public static readonly Parameter<IReadOnlyList<string>> WriteFunctionList = List("write_function_list", "", ',', Reload,
        "functions those write to database", aliases: ["black_function_list"]);

    public static readonly Parameter<IReadOnlyList<string>> PrimaryRoutingQueryPatternList = List("primary_routing_query_pattern_list", "", ';',
        Reload, "query patterns that should be sent to primary node", aliases: ["black_query_pattern_list"]);

    public static readonly Parameter<LoadBalanceOnWrite> DisableLoadBalanceOnWrite = Enum("disable_load_balance_on_write",
        LoadBalanceOnWrite.Transaction,
        [("off", LoadBalanceOnWrite.Off), ("transaction", LoadBalanceOnWrite.Transaction),
         ("trans_transaction", LoadBalanceOnWrite.TransTransaction), ("always", LoadBalanceOnWrite.Always),
         ("dml_adaptive", LoadBalanceOnWrite.DmlAdaptive)], Reload, "Load balance behavior when write query is received");

    public static readonly Parameter<IReadOnlyList<string>> DmlAdaptiveObjectRelationshipList =
        List("dml_adaptive_object_relationship_list", "", ',', Reload, "list of relationships between objects");

    public static readonly Parameter<bool> StatementLevelLoadBalance =
        Bool("statement_level_load_balance", false, Reload, "statement level load balancing");

    public static readonly Parameter<IReadOnlyList<string>> DatabaseRedirectPreferenceList =
        List("database_redirect_preference_list", "", ',', Reload, "redirect by database name");

    public static readonly Parameter<IReadOnlyList<string>> AppNameRedirectPreferenceList =
        List("app_name_redirect_preference_list", "", ',', Reload, "redirect by application name");

    public static readonly Parameter<IReadOnlyList<string>> UserRedirectPreferenceList =
        List("user_redirect_preference_list", "", ',', Reload, "redirect by user name");

    public static readonly Parameter<bool> AllowSqlComments = Bool("allow_sql_comments", false, Session, "allow SQL comments");

    public static readonly Parameter<CheckTempTable> CheckTempTableMode = Enum("check_temp_table", CheckTempTable.Catalog,
        [("catalog", CheckTempTable.Catalog), ("trace", CheckTempTable.Trace), ("none", CheckTempTable.None),
         ("on", CheckTempTable.Catalog), ("off", CheckTempTable.None)], Reload, "enable temporary table check");

    public static readonly Parameter<bool> CheckUnloggedTable = Bool("check_unlogged_table", true, Session, "enable unlogged table check");

    public static readonly Parameter<TimeSpan> RelcacheExpire =
        Time("relcache_expire", Seconds0, UnitKind.Seconds, Start, "relation cache expiration time in seconds");

    public static readonly Parameter<int> RelcacheSize = Int("relcache_size", 256, 1, 1_000_000, Start, "number of relation cache entry");

    public static readonly Parameter<RelcacheQueryTarget> RelcacheQueryTargetNode = Enum("relcache_query_target", RelcacheQueryTarget.Primary,
        [("primary", RelcacheQueryTarget.Primary), ("load_balance_node", RelcacheQueryTarget.LoadBalanceNode)], Reload,
        "Target node to send relcache queries");

    // ---- Streaming-replication check ----------------------------------------------------------------------------
    public static readonly Parameter<TimeSpan> SrCheckPeriod = Time("sr_check_period", TimeSpan.FromSeconds(10), UnitKind.Seconds, Reload, "sr check period");
    public static readonly Parameter<string> SrCheckUser = String("sr_check_user", "nobody", Reload, "sr check user");
    public static readonly Parameter<string> SrCheckPassword = String("sr_check_password", "", Reload, "password for sr_check_user");
    public static readonly Parameter<string> SrCheckDatabase = String("sr_check_database", "postgres", Reload, "sr check database");
    public static readonly Parameter<long> DelayThreshold = Bytes("delay_threshold", 0, Reload, "standby delay threshold");

    /// <summary>Milliseconds without a unit, as in pgpool-II 4.5+ (4.4 read seconds: write a unit to be explicit).</summary>
    public static readonly Parameter<TimeSpan> DelayThresholdByTime =
        Time("delay_threshold_by_time", TimeSpan.Zero, UnitKind.Milliseconds, Reload, "standby delay threshold by time");

    public static readonly Parameter<bool> PreferLowerDelayStandby =
        Bool("prefer_lower_delay_standby", false, Reload, "load balancing considering streaming delay");

    /// <summary>Poold's own: a session's reads after its write go only to standbys that have replayed it (off | session).</summary>
    public static readonly Parameter<ReadYourWritesMode> ReadYourWrites = Enum("read_your_writes", ReadYourWritesMode.Off,
        [("off", ReadYourWritesMode.Off), ("session", ReadYourWritesMode.Session)], Reload, "reads after a session's write see it");

    /// <summary>Poold's own: how long a read may wait for a standby to replay the session's write (0: never waits).</summary>
    public static readonly Parameter<TimeSpan> ReadYourWritesWait =
        Time("read_your_writes_wait", TimeSpan.Zero, UnitKind.Milliseconds, Reload, "longest wait for a standby to replay a session's write");

    /// <summary>Poold's own: the period of the replay-position poll read_your_writes runs on each node.</summary>
    public static readonly Parameter<TimeSpan> ReadYourWritesPollInterval = Time("read_your_writes_poll_interval", TimeSpan.FromMilliseconds(20),
        UnitKind.Milliseconds, Reload, "period of the replay position poll for read_your_writes");

    // ---- Health check (each also exists with a node suffix) -----------------------------------------------------
    public static readonly Parameter<TimeSpan> HealthCheckPeriod = Time("health_check_period", Seconds0, UnitKind.Seconds, Reload,
        "health check period", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<TimeSpan> HealthCheckTimeout = Time("health_check_timeout", TimeSpan.FromSeconds(20), UnitKind.Seconds,
        Reload, "health check timeout", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<string> HealthCheckUser =
        String("health_check_user", "nobody", Reload, "health check user", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<string> HealthCheckPassword =
        String("health_check_password", "", Reload, "password for health check user", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<string> HealthCheckDatabase =
        String("health_check_database", "", Reload, "health check database", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<int> HealthCheckMaxRetries =
        Int("health_check_max_retries", 0, 0, int.MaxValue, Reload, "health check max retries", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<TimeSpan> HealthCheckRetryDelay = Time("health_check_retry_delay", TimeSpan.FromSeconds(1), UnitKind.Seconds,
        Reload, "health check retry delay", NodeScope.GlobalWithNodeOverride);

    public static readonly Parameter<TimeSpan> ConnectTimeout = Time("connect_timeout", TimeSpan.FromMilliseconds(10_000), UnitKind.Milliseconds,
        Reload, "connect timeout", NodeScope.GlobalWithNodeOverride);

    // ---- Failover -----------------------------------------------------------------------------------------------
    public static readonly Parameter<string> FailoverCommand = String("failover_command", "", Reload, "failover command");
    public static readonly Parameter<string> FailbackCommand = String("failback_command", "", Reload, "failback command");

    public static readonly Parameter<string> FollowPrimaryCommand =
        String("follow_primary_command", "", Reload, "follow primary command", aliases: ["follow_master_command"]);

    public static readonly Parameter<bool> FailoverOnBackendError = Bool("failover_on_backend_error", true, Reload,
        "failover on backend error", aliases: ["fail_over_on_backend_error"]);

    /// <summary>Off, as pgpool-II documents it and compiles it since 4.3.9/4.4.6/4.5.1 (earlier builds compiled it on).</summary>
    public static readonly Parameter<bool> FailoverOnBackendShutdown =
        Bool("failover_on_backend_shutdown", false, Reload, "failover on backend shutdown");

    public static readonly Parameter<bool> DetachFalsePrimary = Bool("detach_false_primary", false, Reload, "detach false primary");
    public static readonly Parameter<bool> AutoFailback = Bool("auto_failback", false, Reload, "auto_failback");

    public static readonly Parameter<BackendDiscovery> BackendDiscoveryMode = Enum("backend_discovery", BackendDiscovery.Poold,
        [("poold", BackendDiscovery.Poold), ("patroni", BackendDiscovery.Patroni)], Start,
        "who decides which node is primary: 'poold' (health checks and failover_command, as pgpool-II) or 'patroni' (follow Patroni's REST API) [Poold]");

    public static readonly Parameter<IReadOnlyList<string>> PatroniUrls = List("patroni_urls", "", ',', Reload,
        "Patroni REST API base URLs (http://host:8008,...), asked in turn for /cluster [Poold]");

    public static readonly Parameter<TimeSpan> PatroniCheckPeriod = Time("patroni_check_period", TimeSpan.FromSeconds(1), UnitKind.Milliseconds,
        Reload, "how often Patroni's view of the cluster is read (milliseconds) [Poold]");

    public static readonly Parameter<int> PeerId = Int("peer_id", 0, 0, 255, Start,
        "this instance's id among Poolds behind one load balancer (1-255, 0 = no peering); carried in the cancel keys it hands out [Poold]");

    public static readonly Parameter<IReadOnlyList<string>> Peers = List("peers", "", ',', Reload,
        "the other instances as id:host:port; a CancelRequest for one of them is forwarded to it once [Poold]");

    public static readonly Parameter<TimeSpan> PatroniTimeout = Time("patroni_timeout", TimeSpan.FromSeconds(2), UnitKind.Milliseconds, Reload,
        "how long one Patroni endpoint may take to answer (milliseconds) [Poold]");
    public static readonly Parameter<TimeSpan> AutoFailbackInterval =
        Time("auto_failback_interval", TimeSpan.FromSeconds(60), UnitKind.Seconds, Reload, "auto_failback_interval");

    public static readonly Parameter<TimeSpan> SearchPrimaryNodeTimeout = Time("search_primary_node_timeout", TimeSpan.FromSeconds(300),
        UnitKind.Seconds, Reload, "max time in seconds to search for primary node after failover");

    // ---- Features Poold does not have; accepted so that their default 'off' loads -------------------------------
    public static readonly Parameter<bool> UseWatchdog = Bool("use_watchdog", false, Start, "non 0 if operating in use_watchdog");

    public static readonly Parameter<bool> MemoryCacheEnabled =
        Bool("memory_cache_enabled", false, Start, "If true, use the memory cache functionality, false by default");

    // ---- Backends (node suffix required) ------------------------------------------------------------------------
    public static readonly Parameter<string> BackendHostname =
        String("backend_hostname", "", Reload, "backend #N hostname", NodeScope.PerNode);

    public static readonly Parameter<int> BackendPort = Int("backend_port", 5432, 1, 65535, Reload, "backend #N port number", NodeScope.PerNode);

    public static readonly Parameter<double> BackendWeight =
        Real("backend_weight", 0, 0, 100_000_000, Reload, "weight of backend #N", NodeScope.PerNode);

    public static readonly Parameter<string> BackendDataDirectory =
        String("backend_data_directory", "", Reload, "data directory for backend #N", NodeScope.PerNode);

    public static readonly Parameter<BackendFlags> BackendFlag = new("backend_flag", BackendFlags.AllowToFailover, ParseBackendFlags, ShowBackendFlags,
        Reload, "backend #N flag", NodeScope.PerNode);

    public static readonly Parameter<string> BackendApplicationName =
        String("backend_application_name", "", Reload, "application_name for backend #N", NodeScope.PerNode);

    public static readonly Parameter<BackendTlsMode> BackendSslMode = Enum("backend_sslmode", BackendTlsMode.Default,
        [("", BackendTlsMode.Default), ("disable", BackendTlsMode.Disable), ("prefer", BackendTlsMode.Prefer), ("require", BackendTlsMode.Require),
         ("verify-ca", BackendTlsMode.VerifyCa), ("verify-full", BackendTlsMode.VerifyFull)], Reload,
        "TLS to backend #N: disable, prefer, require, verify-ca, verify-full; '' = prefer when ssl = on, else disable [Poold]",
        scope: NodeScope.PerNode);

    public static readonly Parameter<string> BackendSslCaCert = String("backend_ssl_ca_cert", "", Reload,
        "PEM file of the CA(s) backend #N's certificate must chain to (verify-ca, verify-full), or 'system' [Poold]", NodeScope.PerNode);

    public static readonly Parameter<BackendAuthSet> BackendRequireAuth = new("backend_require_auth", BackendAuthSet.Any,
        BackendAuthSets.Parse, BackendAuthSets.Show, Reload,
        "authentication methods backend #N may ask for: none, password, md5, scram-sha-256, or !method; '' = any [Poold]",
        NodeScope.PerNode);

    /// <summary>The highest node number pgpool-II accepts (MAX_NUM_BACKENDS - 1).</summary>
    public const int MaxNodeId = 127;

    public static IReadOnlyList<Parameter> All { get; }

    /// <summary>Parameter names (and aliases), case-insensitive.</summary>
    public static FrozenDictionary<string, Parameter> ByName { get; }

    /// <summary>
    /// pgpool-II parameters that Poold reads and ignores: process model, online recovery, watchdog details, query cache,
    /// replication-mode options, log rotation. An existing pgpool.conf with them loads without warnings.
    /// </summary>
    public static FrozenSet<string> Ignored { get; } = new[]
    {
        "serialize_accept", "child_life_time", "child_max_connections", "process_management_mode", "process_management_strategy",
        "min_spare_children", "max_spare_children", "log_file_mode", "log_truncate_on_rotation",
        "log_rotation_age", "log_rotation_size", "log_backend_messages", "notice_per_node_statement", "replicate_select", "insert_lock",
        "lobj_lock_table", "replication_stop_on_mismatch", "failover_if_affected_tuples_mismatch", "replication_mode",
        "master_slave_mode", "master_slave_sub_mode", "recovery_user", "recovery_password", "recovery_1st_stage_command",
        "recovery_2nd_stage_command", "recovery_timeout", "client_idle_limit_in_recovery", "enable_shared_relcache",
        "health_check_test", "pcp_timeout", "wd_ipc_socket_dir", "wd_lifecheck_method", "clear_memqcache_on_escalation",
        "wd_escalation_command", "wd_de_escalation_command", "trusted_servers", "trusted_server_command", "delegate_IP", "wd_priority",
        "wd_interval", "ping_path", "if_cmd_path", "if_up_cmd", "if_down_cmd", "arping_path", "arping_cmd", "wd_heartbeat_keepalive",
        "wd_heartbeat_deadtime", "wd_life_point", "wd_lifecheck_query", "wd_lifecheck_dbname", "wd_lifecheck_user",
        "wd_lifecheck_password", "wd_monitoring_interfaces_list", "wd_authkey", "wd_hostname", "wd_port", "wd_heartbeat_port",
        "wd_remove_shutdown_nodes", "wd_lost_node_removal_timeout", "wd_no_show_node_removal_timeout", "failover_when_quorum_exists",
        "failover_require_consensus", "allow_multiple_failover_requests_from_node", "enable_consensus_with_half_votes",
        "memqcache_method", "memqcache_memcached_host", "memqcache_memcached_port", "memqcache_total_size", "memqcache_max_num_cache",
        "memqcache_expire", "memqcache_auto_cache_invalidation", "memqcache_maxcache", "memqcache_cache_block_size",
        "memqcache_oiddir", "cache_safe_memqcache_table_list", "cache_unsafe_memqcache_table_list", "white_memqcache_table_list",
        "black_memqcache_table_list",
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    /// <summary>Per-node parameter families pgpool-II has for the watchdog; accepted with any suffix and ignored.</summary>
    public static FrozenSet<string> IgnoredNodeFamilies { get; } = new[]
    {
        "hostname", "wd_port", "pgpool_port", "heartbeat_hostname", "heartbeat_port", "heartbeat_device", "other_pgpool_hostname",
        "other_pgpool_port", "other_wd_port", "heartbeat_destination", "heartbeat_destination_port",
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    static Params()
    {
        All =
        [
            BackendClusteringMode, ListenAddresses, Port, UnixSocketDirectories, UnixSocketGroup, UnixSocketPermissions,
            PcpListenAddresses, PcpPort, PcpSocketDir, PcpProtocol, EnablePoolHba, PoolPasswd, AuthenticationTimeout,
            AllowClearTextFrontendAuth, Ssl, SslKey, SslCert, SslCaCert, SslCaCertDir, SslCrlFile, SslCrlDir, SslCiphers, SslPreferServerCiphers,
            SslEcdhCurve, SslDhParamsFile, SslPassphraseCommand, SslMinProtocolVersion, SslMaxProtocolVersion, NumInitChildren,
            ListenBacklogMultiplier, ReservedConnections, ListenBacklog, MaxUnauthenticatedConnections, UnauthenticatedTimeout,
            PcpMaxConnections, PcpAuthenticationTimeout, MaxPool, ConnectionLifeTime, ClientIdleLimit, LogDestination, LogFormatting, SyslogFacilityParam, SyslogIdent, SyslogSocket, LogLinePrefix,
            LogErrorVerbosity, ClientMinMessages, LogMinMessages, LogConnections, LogDisconnections, LogHostname, LogStatement,
            LogPerNodeStatement, LogClientMessages, LogStandbyDelayMode, LoggingCollector, LogDirectory, LogFilename, PidFileName,
            Logdir, ConnectionCache, ResetQueryList, LoadBalanceMode, IgnoreLeadingWhiteSpace, ReadOnlyFunctionList,
            WriteFunctionList, PrimaryRoutingQueryPatternList, DisableLoadBalanceOnWrite, DmlAdaptiveObjectRelationshipList,
            StatementLevelLoadBalance, SrCheckPeriod, SrCheckUser, SrCheckPassword, SrCheckDatabase, DelayThreshold,
            DelayThresholdByTime, PreferLowerDelayStandby, ReadYourWrites, ReadYourWritesWait, ReadYourWritesPollInterval, FollowPrimaryCommand, DatabaseRedirectPreferenceList,
            AppNameRedirectPreferenceList, UserRedirectPreferenceList, AllowSqlComments, HealthCheckPeriod, HealthCheckTimeout,
            HealthCheckUser, HealthCheckPassword, HealthCheckDatabase, HealthCheckMaxRetries, HealthCheckRetryDelay, ConnectTimeout,
            FailoverCommand, FailbackCommand, FailoverOnBackendError, FailoverOnBackendShutdown, DetachFalsePrimary, AutoFailback,
            AutoFailbackInterval, SearchPrimaryNodeTimeout, RelcacheExpire, RelcacheSize, CheckTempTableMode, CheckUnloggedTable,
            RelcacheQueryTargetNode, UseWatchdog, MemoryCacheEnabled, BackendHostname, BackendPort, BackendWeight,
            BackendDataDirectory, BackendFlag, BackendApplicationName, BackendSslMode, BackendSslCaCert, BackendRequireAuth,
            ServerCheckDelay, ServerCheckQuery, MaxPacketSize, BackendDiscoveryMode, PatroniUrls, PatroniCheckPeriod, PatroniTimeout,
            PeerId, Peers,
            MetricsListenAddresses, MetricsPort,
            AuthQuery, AuthUser, AuthDbname, AuthQueryCacheTime,
            PoolModeParam, PoolModeDatabaseList, MaxClientConn, DefaultPoolSize, MaxDbConnections, QueryWaitTimeout, MaxPreparedStatements,
        ];
        var byName = new Dictionary<string, Parameter>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < All.Count; i++)
        {
            All[i].Index = i;
            foreach (var name in All[i].Aliases.Prepend(All[i].Name))
            {
                byName.Add(name, All[i]);
            }
        }

        ByName = byName.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);
    }

    private static string? ParseBackendFlags(string text, out BackendFlags value)
    {
        value = BackendFlags.AllowToFailover;
        bool allow = false, disallow = false;
        foreach (var word in text.Split('|', StringSplitOptions.TrimEntries))
        {
            switch (word.ToUpperInvariant())
            {
                case "ALLOW_TO_FAILOVER":
                    allow = true;
                    break;
                case "DISALLOW_TO_FAILOVER":
                    disallow = true;
                    value |= BackendFlags.DisallowToFailover;
                    break;
                case "ALWAYS_PRIMARY" or "ALWAYS_MASTER":
                    value |= BackendFlags.AlwaysPrimary;
                    break;
                default:
                    return $"invalid flag \"{word}\"; expected ALLOW_TO_FAILOVER or DISALLOW_TO_FAILOVER, optionally |ALWAYS_PRIMARY";
            }
        }

        return allow && disallow ? "ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER cannot both be set" : null;
    }

    private static string ShowBackendFlags(BackendFlags flags)
    {
        var failover = flags.HasFlag(BackendFlags.DisallowToFailover) ? "DISALLOW_TO_FAILOVER" : "ALLOW_TO_FAILOVER";
        return flags.HasFlag(BackendFlags.AlwaysPrimary) ? failover + "|ALWAYS_PRIMARY" : failover;
    }
}
