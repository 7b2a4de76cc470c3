using Poold.Config;

namespace Poold.Tests.Config;

public class SettingsBuilderTests
{
    private static SettingsBuilder.Result Build(string text)
    {
        var entries = new List<ConfEntry>();
        var diagnostics = new List<ConfigDiagnostic>();
        ConfLexer.Parse(text, "pgpool.conf", entries, diagnostics);
        Assert.That(diagnostics, Is.Empty, "the test input must be syntactically valid");
        return SettingsBuilder.Build(entries, "/etc/pgpool2/pgpool.conf");
    }

    private static PooldSettings Settings(string text)
    {
        var result = Build(text);
        Assert.That(result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error), Is.Empty,
            () => string.Join("\n", result.Diagnostics));
        return result.Settings!;
    }

    private static string Error(string text)
    {
        var result = Build(text);
        Assert.That(result.Settings, Is.Null, "an error must withhold the settings");
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.That(errors, Has.Count.EqualTo(1), () => string.Join("\n", result.Diagnostics));
        return errors[0].ToString();
    }

    // pgpool-II 4.3.5's compiled defaults (pgpool-compat.md §5.2), shown as PGPOOL SHOW shows them.
    [TestCase("backend_clustering_mode", "streaming_replication")]
    [TestCase("listen_addresses", "localhost")]
    [TestCase("port", "9999")]
    [TestCase("unix_socket_directories", "/tmp")]
    [TestCase("pcp_listen_addresses", "localhost")]
    [TestCase("pcp_port", "9898")]
    [TestCase("pcp_socket_dir", "/tmp")]
    [TestCase("num_init_children", "32")]
    [TestCase("listen_backlog_multiplier", "2")]
    [TestCase("reserved_connections", "0")]
    [TestCase("max_pool", "4")]
    [TestCase("connection_life_time", "0")]
    [TestCase("client_idle_limit", "0")]
    [TestCase("authentication_timeout", "60")]
    [TestCase("connection_cache", "on")]
    [TestCase("reset_query_list", "ABORT;DISCARD ALL")]
    [TestCase("server_check_delay", "30")]
    [TestCase("server_check_query", "select 1")]
    [TestCase("max_packet_size", "268435456")]
    [TestCase("listen_backlog", "4096")]
    [TestCase("max_unauthenticated_connections", "1000")]
    [TestCase("unauthenticated_timeout", "60")]
    [TestCase("pcp_max_connections", "32")]
    [TestCase("pcp_authentication_timeout", "5")]
    [TestCase("backend_discovery", "poold")]
    [TestCase("patroni_urls", "")]
    [TestCase("patroni_check_period", "1000")]
    [TestCase("patroni_timeout", "2000")]
    [TestCase("peer_id", "0")]
    [TestCase("peers", "")]
    [TestCase("metrics_listen_addresses", "localhost")]
    [TestCase("metrics_port", "0")]
    [TestCase("enable_pool_hba", "off")]
    [TestCase("pool_passwd", "pool_passwd")]
    [TestCase("allow_clear_text_frontend_auth", "off")]
    [TestCase("auth_query", "SELECT usename, passwd FROM pg_shadow WHERE usename = $1")]
    [TestCase("auth_user", "")]
    [TestCase("auth_dbname", "")]
    [TestCase("auth_query_cache_time", "0")]
    [TestCase("pool_mode", "session")]
    [TestCase("pool_mode_database_list", "")]
    [TestCase("max_client_conn", "10000")]
    [TestCase("default_pool_size", "20")]
    [TestCase("max_db_connections", "0")]
    [TestCase("query_wait_timeout", "120")]
    [TestCase("max_prepared_statements", "200")]
    [TestCase("ssl", "off")]
    [TestCase("ssl_ciphers", "HIGH:MEDIUM:+3DES:!aNULL")]
    [TestCase("ssl_prefer_server_ciphers", "off")]
    [TestCase("ssl_ecdh_curve", "prime256v1")]
    [TestCase("ssl_min_protocol_version", "TLSv1.2")]
    [TestCase("ssl_max_protocol_version", "")]
    [TestCase("load_balance_mode", "on")]
    [TestCase("ignore_leading_white_space", "on")]
    [TestCase("read_only_function_list", "")]
    [TestCase("write_function_list", "")]
    [TestCase("primary_routing_query_pattern_list", "")]
    [TestCase("database_redirect_preference_list", "")]
    [TestCase("app_name_redirect_preference_list", "")]
    [TestCase("allow_sql_comments", "off")]
    [TestCase("disable_load_balance_on_write", "transaction")]
    [TestCase("statement_level_load_balance", "off")]
    [TestCase("check_temp_table", "catalog")]
    [TestCase("check_unlogged_table", "on")]
    [TestCase("relcache_expire", "0")]
    [TestCase("relcache_size", "256")]
    [TestCase("relcache_query_target", "primary")]
    [TestCase("sr_check_period", "10")]
    [TestCase("sr_check_user", "nobody")]
    [TestCase("sr_check_password", "")]
    [TestCase("sr_check_database", "postgres")]
    [TestCase("delay_threshold", "0")]
    [TestCase("delay_threshold_by_time", "0")]
    [TestCase("prefer_lower_delay_standby", "off")]
    [TestCase("read_your_writes", "off")]
    [TestCase("read_your_writes_wait", "0")]
    [TestCase("read_your_writes_poll_interval", "20")]
    [TestCase("log_standby_delay", "if_over_threshold")]
    [TestCase("health_check_period", "0")]
    [TestCase("health_check_timeout", "20")]
    [TestCase("health_check_user", "nobody")]
    [TestCase("health_check_password", "")]
    [TestCase("health_check_database", "")]
    [TestCase("health_check_max_retries", "0")]
    [TestCase("health_check_retry_delay", "1")]
    [TestCase("connect_timeout", "10000")]
    [TestCase("failover_command", "")]
    [TestCase("failback_command", "")]
    [TestCase("follow_primary_command", "")]
    [TestCase("failover_on_backend_error", "on")]
    [TestCase("failover_on_backend_shutdown", "off")]
    [TestCase("detach_false_primary", "off")]
    [TestCase("auto_failback", "off")]
    [TestCase("auto_failback_interval", "60")]
    [TestCase("search_primary_node_timeout", "300")]
    [TestCase("logdir", "/tmp")]
    [TestCase("pid_file_name", "/var/run/pgpool/pgpool.pid")]
    [TestCase("log_destination", "stderr")]
    [TestCase("log_line_prefix", "%m: %a pid %p: ")]
    [TestCase("log_format", "text")]
    [TestCase("syslog_facility", "LOCAL0")]
    [TestCase("syslog_ident", "pgpool")]
    [TestCase("syslog_socket", "/dev/log")]
    [TestCase("log_min_messages", "warning")]
    [TestCase("client_min_messages", "notice")]
    [TestCase("log_error_verbosity", "default")]
    [TestCase("log_connections", "off")]
    [TestCase("log_disconnections", "off")]
    [TestCase("log_hostname", "off")]
    [TestCase("log_statement", "off")]
    [TestCase("log_per_node_statement", "off")]
    [TestCase("log_client_messages", "off")]
    [TestCase("logging_collector", "off")]
    [TestCase("use_watchdog", "off")]
    [TestCase("memory_cache_enabled", "off")]
    [TestCase("pcp_protocol_version", "4.3")]
    public void Defaults_MatchPgpool(string name, string shown)
    {
        var parameter = Params.ByName[name];
        Assert.That(PooldSettings.Defaults.Show(parameter), Is.EqualTo(shown));
        Assert.That(PooldSettings.Defaults.IsSet(parameter), Is.False);
    }

    [Test]
    public void Defaults_EveryGlobalParameterHasADefaultCase()
    {
        var covered = typeof(SettingsBuilderTests).GetMethod(nameof(Defaults_MatchPgpool))!
            .GetCustomAttributes(typeof(TestCaseAttribute), false).Cast<TestCaseAttribute>()
            .Select(a => (string)a.Arguments[0]!).ToHashSet();
        var missing = Params.All.Where(p => p.Scope != NodeScope.PerNode && !covered.Contains(p.Name)
            && p.Name is not ("unix_socket_group" or "unix_socket_permissions" or "ssl_key" or "ssl_cert" or "ssl_ca_cert"
                or "ssl_ca_cert_dir" or "ssl_crl_file" or "ssl_crl_dir" or "ssl_dh_params_file" or "ssl_passphrase_command" or "log_directory" or "log_filename"
                or "user_redirect_preference_list" or "dml_adaptive_object_relationship_list"));
        Assert.That(missing.Select(p => p.Name), Is.Empty);
    }

    [Test]
    public void Defaults_HaveNoBackends() => Assert.That(PooldSettings.Defaults.Backends, Is.Empty);

    [Test]
    public void Build_TypedValues_AreRead()
    {
        var s = Settings("""
            port = '39999'
            listen_addresses = '127.0.0.1, ::1'
            authentication_timeout = 1500ms
            child_life_time = 5min
            connection_life_time = '90s'
            client_idle_limit = 2h
            delay_threshold = 10MB
            load_balance_mode = Off
            reset_query_list = 'ABORT; DISCARD ALL; SELECT 1'
            disable_load_balance_on_write = 'ALWAYS'
            check_temp_table = off
            unix_socket_permissions = 0770
            """);
        Assert.Multiple(() =>
        {
            Assert.That(s.Get(Params.Port), Is.EqualTo(39999));
            Assert.That(s.Get(Params.ListenAddresses), Is.EqualTo(new[] { "127.0.0.1", "::1" }));
            Assert.That(s.Get(Params.AuthenticationTimeout), Is.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(s.Get(Params.ConnectionLifeTime), Is.EqualTo(TimeSpan.FromSeconds(90)));
            Assert.That(s.Get(Params.ClientIdleLimit), Is.EqualTo(TimeSpan.FromHours(2)));
            Assert.That(s.Get(Params.DelayThreshold), Is.EqualTo(10L * 1024 * 1024));
            Assert.That(s.Get(Params.LoadBalanceMode), Is.False);
            Assert.That(s.Get(Params.ResetQueryList), Is.EqualTo(new[] { "ABORT", "DISCARD ALL", "SELECT 1" }));
            Assert.That(s.Get(Params.DisableLoadBalanceOnWrite), Is.EqualTo(LoadBalanceOnWrite.Always));
            Assert.That(s.Get(Params.CheckTempTableMode), Is.EqualTo(CheckTempTable.None));
            Assert.That(s.Get(Params.UnixSocketPermissions), Is.EqualTo(Convert.ToInt32("770", 8)));
            Assert.That(s.IsSet(Params.Port), Is.True);
            Assert.That(s.Show(Params.AuthenticationTimeout), Is.EqualTo("2"));
        });
    }

    [Test]
    public void Build_LaterAssignment_Wins() => Assert.That(Settings("port = 1111\nport = 2222").Get(Params.Port), Is.EqualTo(2222));

    [Test]
    public void Build_NamesAreCaseInsensitive() => Assert.That(Settings("PORT = 1234").Get(Params.Port), Is.EqualTo(1234));

    [TestCase("socket_dir = '/var/run/postgresql'", TestName = "Build_SocketDir43Spelling_SetsUnixSocketDirectories")]
    [TestCase("unix_socket_directories = '/var/run/postgresql'", TestName = "Build_UnixSocketDirectories44Spelling")]
    public void Build_SocketDirectorySpellings_AreOneSetting(string line) =>
        Assert.That(Settings(line).Get(Params.UnixSocketDirectories), Is.EqualTo(new[] { "/var/run/postgresql" }));

    [Test]
    public void Build_OlderAndNewerNames_AreAliases()
    {
        var s = Settings("""
            fail_over_on_backend_error = off
            follow_master_command = '/bin/follow %d'
            white_function_list = 'now,count'
            work_dir = '/var/lib/poold'
            """);
        Assert.Multiple(() =>
        {
            Assert.That(s.Get(Params.FailoverOnBackendError), Is.False);
            Assert.That(s.Get(Params.FollowPrimaryCommand), Is.EqualTo("/bin/follow %d"));
            Assert.That(s.Get(Params.ReadOnlyFunctionList), Is.EqualTo(new[] { "now", "count" }));
            Assert.That(s.Get(Params.Logdir), Is.EqualTo("/var/lib/poold"));
        });
    }

    [Test]
    public void Build_Backends_ExistIffPortIsSet()
    {
        var s = Settings("""
            backend_hostname0 = 'db0'
            backend_port0 = 5432
            backend_weight0 = 1
            backend_hostname2 = 'db2'
            backend_port2 = 5433
            backend_weight2 = 3
            backend_flag2 = 'DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY'
            backend_application_name2 = 'replica2'
            backend_data_directory2 = '/data/2'
            """);
        Assert.That(s.Backends, Has.Length.EqualTo(3));
        var (b0, b1, b2) = (s.Backends[0], s.Backends[1], s.Backends[2]);
        Assert.Multiple(() =>
        {
            Assert.That((b0.IsConfigured, b0.Hostname, b0.Port, b0.NormalizedWeight), Is.EqualTo((true, "db0", 5432, 0.25)));
            Assert.That(b1.IsConfigured, Is.False, "a slot below the highest node without a port is unused");
            Assert.That(b1.NormalizedWeight, Is.Zero);
            Assert.That((b2.Hostname, b2.Port, b2.Weight, b2.NormalizedWeight), Is.EqualTo(("db2", 5433, 3.0, 0.75)));
            Assert.That(b2.AllowsFailover, Is.False);
            Assert.That(b2.AlwaysPrimary, Is.True);
            Assert.That(b2.ApplicationName, Is.EqualTo("replica2"));
            Assert.That(b2.DataDirectory, Is.EqualTo("/data/2"));
            Assert.That(b0.AllowsFailover, Is.True);
            Assert.That(Params.BackendFlag.Show(b2.Flags), Is.EqualTo("DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY"));
        });
    }

    [Test]
    public void Build_BackendSettingsWithoutPort_WarnsThatTheNodeIsUnused()
    {
        var result = Build("backend_port0 = 5432\nbackend_weight0 = 1\nbackend_hostname1 = 'db1'\n");
        Assert.That(result.Settings!.Backends, Has.Length.EqualTo(1));
        Assert.That(result.Diagnostics.Select(d => d.ToString()),
            Has.One.EqualTo("pgpool.conf:3: warning: backend node 1 has settings but no backend_port1: the node is unused"));
    }

    [Test]
    public void Build_AllWeightsZero_Warns()
    {
        var result = Build("backend_port0 = 5432\nbackend_port1 = 5433\n");
        Assert.That(result.Diagnostics.Select(d => d.Message), Has.One.Contains("every backend_weight is 0"));
    }

    [Test]
    public void Build_PerNodeHealthCheck_OverridesTheGlobalValue()
    {
        var s = Settings("""
            health_check_period = 10
            health_check_period1 = 3
            health_check_user = 'hc'
            connect_timeout2 = 2s
            backend_port0 = 5432
            backend_port1 = 5433
            backend_port2 = 5434
            """);
        Assert.Multiple(() =>
        {
            Assert.That(s.Get(Params.HealthCheckPeriod, 0), Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(s.Get(Params.HealthCheckPeriod, 1), Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(s.Get(Params.HealthCheckUser, 1), Is.EqualTo("hc"));
            Assert.That(s.Get(Params.ConnectTimeout, 2), Is.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(s.Get(Params.ConnectTimeout, 0), Is.EqualTo(TimeSpan.FromSeconds(10)));
        });
    }

    [Test]
    public void Get_PerNodeParameterWithoutNode_Throws() =>
        Assert.That(() => PooldSettings.Defaults.Get(Params.BackendPort), Throws.ArgumentException);

    [Test]
    public void Build_UnknownParameter_IsAWarningWithLocation()
    {
        var result = Build("port = 1\nno_such_thing = 3\n");
        Assert.That(result.Settings, Is.Not.Null);
        Assert.That(result.Diagnostics.Select(d => d.ToString()),
            Is.EqualTo(new[] { "pgpool.conf:2: warning: unrecognized configuration parameter \"no_such_thing\" (ignored)" }));
    }

    [Test]
    public void Build_PgpoolParametersPooldIgnores_LoadSilently()
    {
        var result = Build("""
            child_life_time = 5min
            serialize_accept = off
            memqcache_total_size = 64MB
            wd_lifecheck_method = 'heartbeat'
            hostname0 = 'host0'
            wd_port0 = 9000
            heartbeat_hostname0 = 'host0'
            recovery_1st_stage_command = 'recovery_1st_stage'
            process_management_mode = dynamic
            """);
        Assert.That(result.Diagnostics, Is.Empty);
    }

    [TestCase("port = 39999x", "pgpool.conf:1: invalid value for parameter \"port\": \"39999x\": this parameter takes no unit")]
    [TestCase("port = 0", "pgpool.conf:1: invalid value for parameter \"port\": 0 is outside the valid range 1..65535")]
    [TestCase("num_init_children = 3.5", "pgpool.conf:1: invalid value for parameter \"num_init_children\": \"3.5\" is not an integer")]
    [TestCase("load_balance_mode = maybe", "pgpool.conf:1: invalid value for parameter \"load_balance_mode\": \"maybe\" is not a boolean (on/off, true/false, yes/no, 1/0)")]
    [TestCase("disable_load_balance_on_write = sometimes",
        "pgpool.conf:1: invalid value for parameter \"disable_load_balance_on_write\": invalid value \"sometimes\"; expected one of: off, transaction, trans_transaction, always, dml_adaptive")]
    [TestCase("backend_flag0 = 'ALLOW_TO_FAILOVER|DISALLOW_TO_FAILOVER'",
        "pgpool.conf:1: invalid value for parameter \"backend_flag0\": ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER cannot both be set")]
    [TestCase("backend_flag0 = 'SOMETIMES'", "pgpool.conf:1: invalid value for parameter \"backend_flag0\": invalid flag \"SOMETIMES\"; expected ALLOW_TO_FAILOVER or DISALLOW_TO_FAILOVER, optionally |ALWAYS_PRIMARY")]
    [TestCase("backend_weight0 = -1", "pgpool.conf:1: invalid value for parameter \"backend_weight0\": -1 is outside the valid range 0..100000000")]
    [TestCase("backend_port = 5432", "pgpool.conf:1: parameter \"backend_port\" needs a node number, e.g. \"backend_port0\"")]
    [TestCase("backend_port128 = 5432", "pgpool.conf:1: invalid node number in \"backend_port128\": nodes are numbered 0 to 127")]
    [TestCase("health_check_timeout = 5MB",
        "pgpool.conf:1: invalid value for parameter \"health_check_timeout\": \"5MB\": invalid unit \"MB\"; valid units are us, ms, s, min, h, d")]
    [TestCase("backend_clustering_mode = native_replication",
        "pgpool.conf:1: backend_clustering_mode = 'native_replication' is not supported: Poold runs streaming_replication only")]
    [TestCase("reserved_connections = 32", "pgpool.conf:1: reserved_connections (32) must be less than num_init_children (32)")]
    [TestCase("write_function_list = 'nextval,(unclosed'",
        "pgpool.conf:1: invalid regular expression \"(unclosed\" in write_function_list: Invalid pattern '(unclosed' at offset 9. Not enough )'s.")]
    [TestCase("ssl = on", "pgpool.conf:1: ssl = on needs ssl_cert and ssl_key (PEM files)")]
    [TestCase("backend_discovery = patroni", "pgpool.conf:1: backend_discovery = 'patroni' needs patroni_urls (http://host:8008,...)")]
    [TestCase("peers = '2:h:9999'", "pgpool.conf:1: peers needs peer_id (1 to 255) for this instance")]
    [TestCase("peer_id = 2\npeers = '2:h:9999'", "pgpool.conf:2: peers: \"2:h:9999\" has this instance's own peer_id (2)")]
    [TestCase("peer_id = 1\npeers = 'h:9999'", "pgpool.conf:2: peers: \"h:9999\" is not id:host:port (id 1 to 255)")]
    [TestCase("pool_mode = statement", "pgpool.conf:1: invalid value for parameter \"pool_mode\": invalid value \"statement\"; expected one of: session, transaction")]
    [TestCase("pool_mode = transaction\npool_mode_database_list = 'app:transaction,analytics'",
        "pgpool.conf:2: pool_mode_database_list: \"analytics\" is not database:session or database:transaction")]
    [TestCase("pool_mode_database_list = 'app:statement'", "pgpool.conf:1: pool_mode_database_list: \"app:statement\" is not database:session or database:transaction")]
    [TestCase("backend_discovery = etcd", "pgpool.conf:1: invalid value for parameter \"backend_discovery\": invalid value \"etcd\"; expected one of: poold, patroni")]
    public void Build_InvalidValue_ReportsFileLineAndReason(string line, string expected) => Assert.That(Error(line), Is.EqualTo(expected));

    [Test]
    public void Build_PatroniUrlThatIsNotHttp_IsAnError() =>
        Assert.That(Error("backend_discovery = patroni\npatroni_urls = 'http://a:8008,ftp://b:8008'"),
            Is.EqualTo("pgpool.conf:2: patroni_urls: \"ftp://b:8008\" is not an http:// or https:// URL"));

    [Test]
    public void Build_BothFunctionLists_IsAnError() =>
        Assert.That(Error("read_only_function_list = 'now'\nwrite_function_list = 'nextval'"),
            Is.EqualTo("pgpool.conf:2: read_only_function_list and write_function_list cannot both be set: use one of them"));

    [Test]
    public void Build_TlsMaxBelowMin_IsAnError() =>
        Assert.That(Error("ssl_min_protocol_version = 'TLSv1.3'\nssl_max_protocol_version = 'TLSv1.2'"),
            Is.EqualTo("pgpool.conf:2: ssl_max_protocol_version (TLSv1.2) is lower than ssl_min_protocol_version (TLSv1.3)"));

    [Test]
    public void Build_SeveralErrors_AreAllReported()
    {
        var result = Build("port = x\nmax_pool = -3\nssl = perhaps\n");
        Assert.That(result.Diagnostics.Select(d => d.Line), Is.EqualTo(new[] { 1, 2, 3 }));
    }

    [Test]
    public void Build_WatchdogOn_WarnsThatItHasNoEffect()
    {
        var result = Build("use_watchdog = on\n");
        Assert.That(result.Settings, Is.Not.Null);
        Assert.That(result.Diagnostics.Select(d => d.ToString()),
            Is.EqualTo(new[] { "pgpool.conf:1: warning: use_watchdog = on has no effect: Poold has no watchdog" }));
    }

    [Test]
    public void ResolvePath_RelativeToConfigDirectory()
    {
        var s = Settings("pool_passwd = 'pool_passwd'");
        Assert.That(s.ResolvePath(s.Get(Params.PoolPasswd)), Is.EqualTo("/etc/pgpool2/pool_passwd"));
        Assert.That(s.ResolvePath("/abs/file"), Is.EqualTo("/abs/file"));
    }

    [TestCase("", (int)BackendAuthSet.Any, TestName = "RequireAuth_Empty_IsAny")]
    [TestCase("scram-sha-256", (int)BackendAuthSet.ScramSha256, TestName = "RequireAuth_ScramOnly")]
    [TestCase("md5, SCRAM-SHA-256", (int)(BackendAuthSet.Md5 | BackendAuthSet.ScramSha256), TestName = "RequireAuth_ListWithSpacesAnyCase")]
    [TestCase("!password,!none", (int)(BackendAuthSet.Md5 | BackendAuthSet.ScramSha256), TestName = "RequireAuth_NegatedList")]
    public void RequireAuth_PerNode_IsRead(string text, int expectedValue)
    {
        var expected = (BackendAuthSet)expectedValue;
        var s = Settings($"backend_port0 = 5432\nbackend_port1 = 5433\nbackend_require_auth1 = '{text}'\n");
        Assert.That((s.Backends[0].RequireAuth, s.Backends[1].RequireAuth), Is.EqualTo((BackendAuthSet.Any, expected)));
        Assert.That(s.Show(Params.BackendRequireAuth, 1), Is.EqualTo(BackendAuthSets.Show(expected)));
    }

    [TestCase("md5,!password", "cannot be mixed", TestName = "RequireAuth_MixedNegation_IsAnError")]
    [TestCase("gss", "invalid method \"gss\"", TestName = "RequireAuth_UnknownMethod_IsAnError")]
    [TestCase("!none,!password,!md5,!scram-sha-256", "no method would be left", TestName = "RequireAuth_NothingLeft_IsAnError")]
    public void RequireAuth_Invalid_IsAnErrorNamingTheNode(string text, string expected) =>
        Assert.That(Error($"backend_port0 = 5432\nbackend_require_auth0 = '{text}'\n"), Does.Contain("backend_require_auth0").And.Contain(expected));

    [Test]
    public void BackendSslMode_PerNode_DefaultKeepsTodaysBehaviour_AndVerifyNeedsACa()
    {
        var s = Settings("backend_port0 = 5432\nbackend_port1 = 5433\nbackend_sslmode1 = 'verify-full'\nbackend_ssl_ca_cert1 = 'ca.pem'\n");
        Assert.That((s.Backends[0].TlsMode, s.Backends[1].TlsMode, s.Backends[1].SslCaCert),
            Is.EqualTo((BackendTlsMode.Default, BackendTlsMode.VerifyFull, "ca.pem")));
        Assert.That(Error("backend_port0 = 5432\nbackend_sslmode0 = 'verify-ca'\n"), Does.Contain("backend_sslmode0 = 'verify-ca' needs backend_ssl_ca_cert0"));
        Assert.That(Error("backend_port0 = 5432\nbackend_sslmode0 = 'allow'\n"), Does.Contain("backend_sslmode0"));
    }

    [TestCase("", "app", "Session")]
    [TestCase("pool_mode = transaction", "app", "Transaction")]
    [TestCase("pool_mode = transaction\npool_mode_database_list = 'analytics:session, app:transaction'", "analytics", "Session")]
    [TestCase("pool_mode_database_list = 'analytics:session,app:Transaction'", "app", "Transaction")]
    [TestCase("pool_mode_database_list = 'analytics:session,app:transaction'", "other", "Session")]
    public void PoolMode_PerDatabaseListOverridesTheDefault(string conf, string database, string expected) =>
        Assert.That(PoolModes.For(Settings(conf), database).ToString(), Is.EqualTo(expected));
}
