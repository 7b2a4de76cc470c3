namespace Poold.IntegrationTests.Cluster;

/// <summary>
/// The roles the fixture creates, one per authentication method in pg_hba.conf (as Npgsql's CI does), with their
/// passwords. Test-only secrets.
/// </summary>
internal static class TestRoles
{
    public const string Admin = "poold_admin";
    public const string ScramUser = "scram_user";
    public const string Md5User = "md5_user";
    public const string ClearUser = "clear_user";
    public const string TrustUser = "trust_user";
    public const string SslUser = "ssl_user";
    public const string RejectUser = "reject_user";

    public static string Password(string role) => role + "_pw!";

    /// <summary>pg_hba.conf: the first matching line wins.</summary>
    public static string HbaConf => $"""
        local all all trust
        host replication all 127.0.0.1/32 trust
        host all {TrustUser} 127.0.0.1/32 trust
        host all {Md5User} 127.0.0.1/32 md5
        host all {ClearUser} 127.0.0.1/32 password
        hostssl all {SslUser} 127.0.0.1/32 scram-sha-256
        hostnossl all {SslUser} 127.0.0.1/32 reject
        host all {RejectUser} 127.0.0.1/32 reject
        host all all 127.0.0.1/32 scram-sha-256
        """;

    /// <summary>Run on the primary once, through the Unix socket as the bootstrap superuser, one statement per psql -c.</summary>
    public static IReadOnlyList<string> SetupStatements =>
    [
        $"CREATE ROLE {Admin} LOGIN SUPERUSER PASSWORD '{Password(Admin)}'",
        $"CREATE ROLE {ScramUser} LOGIN PASSWORD '{Password(ScramUser)}'",
        $"CREATE ROLE {ClearUser} LOGIN PASSWORD '{Password(ClearUser)}'",
        $"CREATE ROLE {SslUser} LOGIN PASSWORD '{Password(SslUser)}'",
        $"CREATE ROLE {RejectUser} LOGIN PASSWORD '{Password(RejectUser)}'",
        $"CREATE ROLE {TrustUser} LOGIN",
        $"SET password_encryption = 'md5'; CREATE ROLE {Md5User} LOGIN PASSWORD '{Password(Md5User)}'",
        $"CREATE DATABASE {PgCluster.TestDatabase} OWNER {Admin}",
    ];
}
