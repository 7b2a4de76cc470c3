using System.Globalization;
using System.Text;
using Npgsql;
using Poold.Auth;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Auth;

/// <summary>
/// auth_query: users with no pool_passwd line log in with SCRAM; Poold reads their verifier from the primary through the
/// least-privilege SECURITY DEFINER function the README documents, and logs in to every node with the ClientKey the
/// client proved. Nothing reversible is stored, and the password never reaches Poold.
/// </summary>
public partial class AuthQueryTests
{
    private const string AuthUser = "poold_auth";
    private const string AuthPassword = "poold_auth_pw!";
    private const string Query = "SELECT usename, passwd FROM public.poold_lookup($1)";

    private static int _roles;

    private static PgCluster Cluster => ClusterFixture.Cluster;

    /// <summary>The README's function, the auth user and a function for broken answers; once per run (idempotent).</summary>
    [OneTimeSetUp]
    public async Task CreateAuthUserAndFunctions()
    {
        await ExecAsync($"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{AuthUser}') THEN CREATE ROLE {AuthUser} LOGIN PASSWORD '{AuthPassword}'; END IF;
            END $$;
            CREATE OR REPLACE FUNCTION public.poold_lookup(i_username text) RETURNS TABLE (usename name, passwd text)
              LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
                SELECT rolname, rolpassword FROM pg_catalog.pg_authid
                 WHERE rolname = i_username AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
              $f$;
            REVOKE ALL ON FUNCTION public.poold_lookup(text) FROM PUBLIC;
            GRANT EXECUTE ON FUNCTION public.poold_lookup(text) TO {AuthUser};
            CREATE OR REPLACE FUNCTION public.poold_broken_lookup(i_username text) RETURNS TABLE (usename name, passwd text)
              LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
                SELECT i_username::name, 'md5' || md5('x') FROM generate_series(1, 2) WHERE i_username = 'aq_two_rows'
                UNION ALL SELECT i_username::name, NULL WHERE i_username = 'aq_null'
                UNION ALL SELECT i_username::name, 'SCRAM-SHA-256$4096:bad$key' WHERE i_username = 'aq_malformed'
                UNION ALL SELECT * FROM public.poold_lookup(i_username)
              $f$;
            REVOKE ALL ON FUNCTION public.poold_broken_lookup(text) FROM PUBLIC;
            GRANT EXECUTE ON FUNCTION public.poold_broken_lookup(text) TO {AuthUser};
            """);
        await Cluster.WaitForReplayAsync();
    }

    private static async Task ExecAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(Cluster.ConnectionString(0).ConnectionString);
        await connection.OpenAsync();
        await new NpgsqlCommand(sql, connection).ExecuteNonQueryAsync();
    }

    /// <summary>A new role with a SCRAM password and no pool_passwd line, replayed to the standbys.</summary>
    private static async Task<(string Role, string Password)> CreateScramRoleAsync()
    {
        var role = "aq_user_" + Interlocked.Increment(ref _roles).ToString(CultureInfo.InvariantCulture) + "_" + Environment.ProcessId;
        var password = role + "_secret!";
        await ExecAsync($"""
            DROP ROLE IF EXISTS {role};
            SET password_encryption = 'scram-sha-256';
            CREATE ROLE {role} LOGIN PASSWORD '{password}';
            GRANT CONNECT ON DATABASE {PgCluster.TestDatabase} TO {role};
            """);
        await Cluster.WaitForReplayAsync();
        return (role, password);
    }

    /// <summary>Every node of the cluster with the given weights (primary first).</summary>
    private static string Backends(params int[] weights)
    {
        var lines = new StringBuilder();
        for (var i = 0; i < Cluster.Nodes.Count; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $"backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {Cluster.Nodes[i].Port}\nbackend_weight{i} = {(i < weights.Length ? weights[i] : 1)}\n");
        }

        return lines.ToString();
    }

    private static Task<PooldInstance> StartAsync(string extra = "", string hba = "host all all 127.0.0.1/32 scram-sha-256\n", bool poolHba = true,
        string backends = "", string query = Query) =>
        PooldInstance.StartAsync((backends.Length > 0 ? backends : Backends()) + $"""
            enable_pool_hba = {(poolHba ? "on" : "off")}
            pool_passwd = 'pool_passwd'
            allow_clear_text_frontend_auth = off
            auth_user = '{AuthUser}'
            auth_query = '{query.Replace("'", "''", StringComparison.Ordinal)}'

            """ + extra, ssl: true,
            new Dictionary<string, string> { ["pool_hba.conf"] = hba, ["pool_passwd"] = $"{AuthUser}:TEXT{AuthPassword}\n" });

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, string sql) =>
        await new NpgsqlCommand(sql, connection).ExecuteScalarAsync();

    private static async Task<NpgsqlConnection> OpenAsync(PooldInstance poold, string role, string password, bool tls = true)
    {
        var builder = poold.ConnectionString(role, password, sslMode: tls ? SslMode.Require : SslMode.Disable);
        builder.ChannelBinding = tls ? ChannelBinding.Require : ChannelBinding.Disable;
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    [TestCase(true, true)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    public async Task ScramRoleWithoutPoolPasswdLine_LogsIn_WithAndWithoutChannelBinding(bool tls, bool poolHba)
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync(poolHba: poolHba);
        await using (var connection = await OpenAsync(poold, role, password, tls))
        {
            Assert.That(await ScalarAsync(connection, "SELECT current_user"), Is.EqualTo(role));
        }

        await poold.WaitForLogAsync(tls ? "client authenticated with SCRAM-SHA-256-PLUS" : "client authenticated with SCRAM-SHA-256");
        Assert.That(poold.Log, Does.Contain("auth_query: verifier of user").And.Not.Contain(password));

        // The connection went back to the pool; the next login proves itself again before it gets it.
        await Poll.UntilAsync(() => Task.FromResult(poold.Host.ActiveSessions == 0), TimeSpan.FromSeconds(10), "the session to end");
        var wrong = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, role, "guess", tls));
        Assert.That(wrong!.SqlState, Is.EqualTo("28P01"));
        await using var again = await OpenAsync(poold, role, password, tls);
        Assert.That(await ScalarAsync(again, "SELECT current_user"), Is.EqualTo(role));
    }

    [Test]
    public async Task Psql_LogsInWithAScramRoleWithoutPoolPasswdLine()
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync();
        var (code, output) = await Proxy.ProxyTests.Run("psql",
            $"\"host=127.0.0.1 port={poold.Port} user={role} dbname={PgCluster.TestDatabase} sslmode=require channel_binding=require\" -Atc \"SELECT current_user\"",
            ("PGPASSWORD", password));
        Assert.That((code, output.Trim()), Is.EqualTo((0, role)));
    }

    [TestCase(1)]
    [TestCase(2)]
    public async Task ReadsBalancedToAReplica_LogInThereWithTheClientKey(int replica)
    {
        var (role, password) = await CreateScramRoleAsync();
        var weights = new int[Cluster.Nodes.Count];
        weights[replica] = 1;
        await using var poold = await StartAsync(backends: Backends(weights), extra: "load_balance_mode = on\n");
        await using var connection = await OpenAsync(poold, role, password);
        Assert.That(await ScalarAsync(connection, "SELECT inet_server_port()"), Is.EqualTo(Cluster.Nodes[replica].Port),
            "the read ran on the replica: Poold logged in there with the key");
        Assert.That(poold.Log, Does.Not.Contain("is unavailable for this session").And.Not.Contain("SCRAM authentication failed"));
    }

    /// <summary>Loopback capture between Poold and the primary (TLS off there): a SCRAM exchange, and neither the password nor the key.</summary>
    [Test]
    public async Task WireBetweenPooldAndTheBackend_CarriesNoPasswordAndNoKey()
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var relay = new CapturingRelay(Cluster.Nodes[0].Port);
        await using var poold = await StartAsync(backends: $"backend_hostname0 = '127.0.0.1'\nbackend_port0 = {relay.Port}\nbackend_sslmode0 = 'disable'\n");
        await using (var connection = await OpenAsync(poold, role, password, tls: false))
        {
            Assert.That(await ScalarAsync(connection, "SELECT current_user"), Is.EqualTo(role));
        }

        var stored = (string)(await Cluster.ScalarAsync(0, $"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"))!;
        Assert.That(ScramVerifier.TryParse(stored, out var verifier), Is.True);
        var clientKey = ScramSha256.ClientKey(ScramSha256.SaltedPassword(Encoding.UTF8.GetBytes(password), verifier.Salt, verifier.Iterations));
        var captured = relay.Captured;
        var text = Encoding.Latin1.GetString(captured);
        Assert.That(text, Does.Contain("SCRAM-SHA-256").And.Contain(role), "the capture is the plaintext login of this role");
        Assert.That(text, Does.Not.Contain(password).And.Not.Contain(Convert.ToBase64String(clientKey)));
        Assert.That(captured.AsSpan().IndexOf(clientKey), Is.EqualTo(-1));
    }

    [Test]
    public async Task PasswordChangedWithAlterRole_WorksAtTheNextLogin()
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync();
        await using (var first = await OpenAsync(poold, role, password))
        {
            await ScalarAsync(first, "SELECT 1");
        }

        await ExecAsync($"ALTER ROLE {role} PASSWORD '{password}-new'");
        await Cluster.WaitForReplayAsync();
        await using (var changed = await OpenAsync(poold, role, password + "-new"))
        {
            Assert.That(await ScalarAsync(changed, "SELECT current_user"), Is.EqualTo(role));
        }

        var old = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, role, password));
        Assert.That(old!.SqlState, Is.EqualTo("28P01"));
    }

    /// <summary>With a cache, a failed proof fetches the verifier again and checks the proof against it (same salt).</summary>
    [Test]
    public async Task PasswordChanged_WhileTheVerifierIsCached_IsRefetchedOnTheFailedProof()
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync("auth_query_cache_time = 600\n");
        await using (var first = await OpenAsync(poold, role, password))
        {
            await ScalarAsync(first, "SELECT 1");
        }

        // A new password with the stored salt (a verifier set verbatim, as a tool may do): the cached verifier is stale.
        var stored = (string)(await Cluster.ScalarAsync(0, $"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"))!;
        Assert.That(ScramVerifier.TryParse(stored, out var current), Is.True);
        var renewed = ScramVerifier.Create(password + "-new", current.Salt, current.Iterations);
        await ExecAsync($"ALTER ROLE {role} PASSWORD '{Format(renewed)}'");
        await Cluster.WaitForReplayAsync();

        await using (var changed = await OpenAsync(poold, role, password + "-new"))
        {
            Assert.That(await ScalarAsync(changed, "SELECT current_user"), Is.EqualTo(role));
        }

        await poold.WaitForLogAsync("failed against the cached answer; fetched again: \"Found\"");
    }

    /// <summary>
    /// With a cache, "no such user" is cached too: an unknown user costs a cache hit, the mock exchange and auth_query
    /// again after the failed proof, as a known user with a wrong password does (bench/auth-timing.sh measures it). A
    /// role created under a name tried a moment before is refused once more (the client was challenged with the mock's
    /// salt), then logs in.
    /// </summary>
    [Test]
    public async Task UnknownUser_WithACache_IsFetchedAgainAfterItsFailedProof_LikeAKnownOne()
    {
        var role = "aq_later_" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        const string password = "later-secret!";
        await ExecAsync($"DROP ROLE IF EXISTS {role}");
        await Cluster.WaitForReplayAsync();
        await using var poold = await StartAsync("auth_query_cache_time = 600\n");
        for (var i = 0; i < 2; i++)
        {
            var refused = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, role, password));
            Assert.That(refused!.SqlState, Is.EqualTo("28P01"));
        }

        await poold.WaitForLogAsync($"the proof of user {role} failed against the cached answer; fetched again: \"NotFound\"");

        await ExecAsync($"SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT CONNECT ON DATABASE {PgCluster.TestDatabase} TO {role};");
        await Cluster.WaitForReplayAsync();
        // Challenged with the mock's salt, the first session cannot prove itself; its failed proof fetches the new role.
        // (Npgsql may retry a refused login on its own, so it may not see that first refusal.)
        NpgsqlConnection? connection = null;
        for (var attempt = 0; attempt < 2 && connection is null; attempt++)
        {
            try
            {
                connection = await OpenAsync(poold, role, password);
            }
            catch (PostgresException e) when (e.SqlState == "28P01" && attempt == 0)
            {
                // The one refusal the cached "no such user" costs.
            }
        }

        await using (connection)
        {
            Assert.That(await ScalarAsync(connection!, "SELECT current_user"), Is.EqualTo(role));
        }

        Assert.That(poold.Log, Does.Contain($"the proof of user {role} failed against the cached answer; fetched again: \"Found\""));

        await ExecAsync($"REVOKE CONNECT ON DATABASE {PgCluster.TestDatabase} FROM {role}; DROP ROLE {role};");
    }

    private static string Format(ScramVerifier v) =>
        $"SCRAM-SHA-256${v.Iterations}:{Convert.ToBase64String(v.Salt)}${Convert.ToBase64String(v.StoredKey)}:{Convert.ToBase64String(v.ServerKey)}";

    [Test]
    public async Task WrongPasswordAndUnknownUser_GetTheSame28P01()
    {
        var (role, _) = await CreateScramRoleAsync();
        await using var poold = await StartAsync();
        var wrong = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, role, "not-it"));
        var unknown = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, "aq_nobody_at_all", "not-it"));
        Assert.That((wrong!.Severity, wrong.SqlState, wrong.MessageText.Replace(role, "U", StringComparison.Ordinal), wrong.Detail),
            Is.EqualTo((unknown!.Severity, unknown.SqlState, unknown.MessageText.Replace("aq_nobody_at_all", "U", StringComparison.Ordinal),
                unknown.Detail)));
        Assert.That((wrong.SqlState, wrong.MessageText), Is.EqualTo(("28P01", $"password authentication failed for user \"{role}\"")));
        await poold.WaitForLogAsync("auth_query returned no row for user \"aq_nobody_at_all\"");
    }

    [Test]
    public async Task AuthUsersConnection_IsNeverHandedToAClient()
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync();
        await using (var client = await OpenAsync(poold, role, password))
        {
            await ScalarAsync(client, "SELECT 1");
        }

        // The auth user itself logs in through Poold (its pool_passwd line): it gets a connection of its own.
        await using var asAuthUser = await OpenAsync(poold, AuthUser, AuthPassword);
        var (application, authPids) = (
            (string)(await ScalarAsync(asAuthUser, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"))!,
            (long)(await ScalarAsync(asAuthUser,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poold auth_query' AND pid <> pg_backend_pid()"))!);
        Assert.That(application, Is.Not.EqualTo(Pooling.AuthQuerySource.ApplicationName));
        Assert.That(authPids, Is.GreaterThanOrEqualTo(1), "the auth connection is still open, in Poold's own hands");
    }

    [TestCase("aq_two_rows", "28000", "auth_query returned 2 rows for user \"aq_two_rows\"")]
    [TestCase("aq_null", "28P01", "auth_query returned a NULL password for user \"aq_null\"")]
    [TestCase("aq_malformed", "28P01", "auth_query returned a malformed SCRAM-SHA-256 verifier for user \"aq_malformed\"")]
    [TestCase("aq_no_such_user", "28P01", "auth_query returned no row for user \"aq_no_such_user\"")]
    public async Task BrokenAnswer_GivesAClearError_AndPooldStaysUp(string user, string sqlState, string logged)
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync(query: "SELECT usename, passwd FROM public.poold_broken_lookup($1)");
        var e = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, user, "whatever"));
        Assert.That((e!.Severity, e.SqlState), Is.EqualTo(("FATAL", sqlState)));
        Assert.That(e.MessageText, sqlState == "28P01"
            ? Is.EqualTo($"password authentication failed for user \"{user}\"")
            : Does.Contain("auth_query failed; see the Poold log"));
        await poold.WaitForLogAsync(logged);
        await using var fine = await OpenAsync(poold, role, password);
        Assert.That(await ScalarAsync(fine, "SELECT current_user"), Is.EqualTo(role));
    }

    [Test]
    public async Task DefaultQuery_WithoutTheRightToReadPgShadow_SaysSoInTheLog()
    {
        var (role, password) = await CreateScramRoleAsync();
        await using var poold = await StartAsync(query: "SELECT usename, passwd FROM pg_shadow WHERE usename = $1");
        var e = Assert.ThrowsAsync<PostgresException>(async () => await OpenAsync(poold, role, password));
        Assert.That(e!.SqlState, Is.EqualTo("28000"));
        await poold.WaitForLogAsync("42501 permission denied for view pg_shadow");
    }

    [Test]
    public async Task Md5HashFromAuthQuery_ServesMd5BothWays_AndIsRefusedForScramInPoolHba()
    {
        await using var md5 = await StartAsync(hba: $"host all {TestRoles.Md5User} 127.0.0.1/32 md5\n");
        await using (var connection = await md5.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)))
        {
            Assert.That(await ScalarAsync(connection, "SELECT current_user"), Is.EqualTo(TestRoles.Md5User));
        }

        await using var scram = await StartAsync();
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
            await scram.OpenAsync(TestRoles.Md5User, TestRoles.Password(TestRoles.Md5User)));
        Assert.That((e!.SqlState, e.MessageText), Is.EqualTo(("28P01", $"password authentication failed for user \"{TestRoles.Md5User}\"")));
        await scram.WaitForLogAsync("the auth_query verifier is an md5 hash, which cannot check SCRAM");
    }

    /// <summary>clear_user's node asks for its password in cleartext: the key cannot answer, and the error says where and who.</summary>
    [Test]
    public async Task BackendAskingForCleartext_WithOnlyTheKey_GetsAClearError()
    {
        await using var poold = await StartAsync(backends: Backends(1, 0, 0));
        var e = Assert.ThrowsAsync<PostgresException>(async () =>
            await poold.OpenAsync(TestRoles.ClearUser, TestRoles.Password(TestRoles.ClearUser)));
        Assert.That(e!.MessageText, Does.Contain("backend node 0").And.Contain($"user \"{TestRoles.ClearUser}\"")
            .And.Contain("only the SCRAM key its client proved"));
    }
}
