using System.Diagnostics;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Auth;

/// <summary>
/// auth_query with other drivers than Npgsql: PgJDBC (Debian's libpostgresql-jdbc-java, run as a single-file Java
/// program) and psycopg2 (libpq, Debian's python3-psycopg2 under /usr/bin/python3). A SCRAM role with no pool_passwd
/// line and no cleartext anywhere logs in over TLS, writes and reads, reuses a server-side prepared statement, and a
/// wrong password is refused with 28P01.
/// </summary>
public partial class AuthQueryTests
{
    private const string JdbcJar = "/usr/share/java/postgresql.jar";
    private const string ClientsTable = "public.aq_clients";

    /// <summary>A SCRAM role allowed to write and read <see cref="ClientsTable"/>.</summary>
    private static async Task<(string Role, string Password)> CreateClientRoleAsync()
    {
        var (role, password) = await CreateScramRoleAsync();
        await ExecAsync($"CREATE TABLE IF NOT EXISTS {ClientsTable} (who text); GRANT INSERT, SELECT ON {ClientsTable} TO {role};");
        await Cluster.WaitForReplayAsync();
        return (role, password);
    }

    private static Task<Dictionary<string, string>> RunClientAsync(string file, IEnumerable<string> arguments, string password) =>
        ProcessRunner.RunClientProgramAsync(file, arguments, TimeSpan.FromSeconds(120),
            new Dictionary<string, string> { ["CHECK_PASSWORD"] = password, ["CHECK_WRONG_PASSWORD"] = "not-" + password });

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)));

    [Test]
    public async Task Jdbc_ScramRoleWithoutPoolPasswdLine_WritesReadsReusesAPreparedStatement_AndAWrongPasswordGets28P01()
    {
        if (!OnPath("java") || !File.Exists(JdbcJar))
        {
            Assert.Ignore($"needs java and {JdbcJar} (apt-get install default-jre-headless libpostgresql-jdbc-java; scripts/test.sh does as root)");
        }

        var (role, password) = await CreateClientRoleAsync();
        await using var poold = await StartAsync(extra: "load_balance_mode = on\n");
        var output = await RunClientAsync("java",
            ["-cp", JdbcJar, "Check.java", "127.0.0.1", poold.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), PgCluster.TestDatabase, role,
                ClientsTable], password);
        Assert.That(output.GetValueOrDefault("user"), Is.EqualTo(role));
        Assert.That((output.GetValueOrDefault("inserted"), output.GetValueOrDefault("read")), Is.EqualTo(("1", "1")), "a write, then a read of it");
        Assert.That(output.GetValueOrDefault("server_prepared"), Is.EqualTo("true"), "past prepareThreshold the driver uses a named statement");
        Assert.That(output.GetValueOrDefault("prepared_sum"), Is.EqualTo("55"), "1 + 2 + ... + 10 through the reused statement");
        Assert.That(output.GetValueOrDefault("wrong_password_sqlstate"), Is.EqualTo("28P01"));
        await poold.WaitForLogAsync("client authenticated with SCRAM-SHA-256");
        Assert.That(poold.Log, Does.Contain("auth_query: verifier of user").And.Not.Contain(password));
    }

    [Test]
    public async Task Psycopg2_ScramPlusRoleWithoutPoolPasswdLine_WritesAndReads_AndAWrongPasswordIsRefused()
    {
        const string python = "/usr/bin/python3";
        if (!File.Exists(python))
        {
            Assert.Ignore($"needs {python} with python3-psycopg2");
        }

        var (probe, _, _) = await ProcessRunner.RunAsync(new ProcessStartInfo(python, "-c \"import psycopg2\""), TimeSpan.FromSeconds(30));
        if (probe != 0)
        {
            Assert.Ignore($"{python} cannot import psycopg2 (apt-get install python3-psycopg2)");
        }

        var (role, password) = await CreateClientRoleAsync();
        await using var poold = await StartAsync(extra: "load_balance_mode = on\n");
        var output = await RunClientAsync(python,
            ["check.py", "127.0.0.1", poold.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), PgCluster.TestDatabase, role, ClientsTable],
            password);
        Assert.That(output.GetValueOrDefault("user"), Is.EqualTo(role));
        Assert.That((output.GetValueOrDefault("inserted"), output.GetValueOrDefault("read")), Is.EqualTo(("1", "1")));
        // libpq gives no SQLSTATE for a failed connection; the server's FATAL text is the 28P01 one.
        Assert.That(output.GetValueOrDefault("wrong_password_message"), Does.EndWith($"password authentication failed for user \"{role}\""));
        await poold.WaitForLogAsync("client authenticated with SCRAM-SHA-256-PLUS");
        Assert.That(poold.Log, Does.Not.Contain(password));
    }
}
