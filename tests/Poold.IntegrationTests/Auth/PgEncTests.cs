using System.Diagnostics;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Auth;

/// <summary>
/// Poold's pg_enc against pgpool-II's own (Debian's pgpool2): the same output for the same input, byte for byte, and a
/// pool_passwd written by either works in Poold.
/// </summary>
public class PgEncTests
{
    private const string PgpoolPgEnc = "/usr/sbin/pg_enc";
    private string _dir = "";

    private static PgCluster Cluster => ClusterFixture.Cluster;

    [SetUp]
    public void CreateDirectory()
    {
        _dir = Directory.CreateTempSubdirectory("poold-pgenc-").FullName;
        var key = Path.Combine(_dir, "key");
        File.WriteAllText(key, "poold-test-key\n");
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(Path.Combine(_dir, "pgpool.conf"), "port = 9999\n");
    }

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private static void RequirePgpool()
    {
        if (!File.Exists(PgpoolPgEnc))
        {
            Assert.Ignore("pgpool-II's pg_enc is not installed (Debian package pgpool2; scripts/test.sh installs it as root)");
        }
    }

    private async Task<(int Code, string Stdout, string Stderr)> RunAsync(bool pgpool, params string[] arguments)
    {
        var start = new ProcessStartInfo(pgpool ? PgpoolPgEnc : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = _dir,
        };
        if (!pgpool)
        {
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "pg_enc.dll"));
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment.Remove("PGPOOLKEYFILE");
        return await ProcessRunner.RunAsync(start, TimeSpan.FromSeconds(60));
    }

    [TestCase("-k", "key", "secret")]
    [TestCase("-K", "mysecretkey", "pässwörd-ü")]
    [TestCase("-K", "Pgpool-Key 2024!", "exactly16bytes!!")]
    [TestCase("--key-file=key", null, "Gr@ce pw:ü!")]
    public async Task Output_IsByteIdenticalToPgpools(string option, string? value, string password)
    {
        RequirePgpool();
        string[] arguments = value is null ? [option, password] : [option, value, password];
        var ours = await RunAsync(false, arguments);
        var theirs = await RunAsync(true, arguments);
        Assert.That(ours.Code, Is.Zero, ours.Stderr);
        Assert.That((ours.Code, ours.Stdout), Is.EqualTo((theirs.Code, theirs.Stdout)));
    }

    [Test]
    public async Task InputFile_IsByteIdenticalToPgpools_BadLinesReported()
    {
        RequirePgpool();
        await File.WriteAllTextAsync(Path.Combine(_dir, "in.txt"), "erin:pw1\nfrank:pw:with:colons\nnocolon\n");
        var ours = await RunAsync(false, "-k", "key", "-i", "in.txt");
        var theirs = await RunAsync(true, "-k", "key", "-i", "in.txt");
        Assert.That((ours.Code, ours.Stdout), Is.EqualTo((theirs.Code, theirs.Stdout)));
        Assert.That(ours.Stderr, Does.Contain("LINE#03: invalid username:password pair"));
    }

    [Test]
    public async Task UpdateMode_WritesTheSameLinesAsPgpool_ReplacingInPlace()
    {
        RequirePgpool();
        var conf = Path.Combine(_dir, "pgpool.conf");
        var file = Path.Combine(_dir, "pool_passwd");
        Assert.That((await RunAsync(true, "-k", "key", "-m", "-f", conf, "-u", "alice", "first")).Code, Is.Zero);
        Assert.That((await RunAsync(true, "-k", "key", "-m", "-f", conf, "-u", "bob", "second")).Code, Is.Zero);
        var theirs = await File.ReadAllTextAsync(file);
        File.Delete(file);

        Assert.That((await RunAsync(false, "-k", "key", "-m", "-f", conf, "-u", "alice", "old")).Code, Is.Zero);
        Assert.That((await RunAsync(false, "-k", "key", "-m", "-f", conf, "-u", "bob", "second")).Code, Is.Zero);
        var (code, _, stderr) = await RunAsync(false, "-k", "key", "-m", "-f", conf, "-u", "alice", "first");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(await File.ReadAllTextAsync(file), Is.EqualTo(theirs), "alice's line replaced in place, bob's kept");
    }

    [Test]
    public async Task PoolPasswdWrittenByPgpoolsPgEnc_AuthenticatesThroughPoold()
    {
        RequirePgpool();
        var conf = Path.Combine(_dir, "pgpool.conf");
        foreach (var role in new[] { TestRoles.ScramUser, TestRoles.Md5User })
        {
            var (code, _, stderr) = await RunAsync(true, "-k", "key", "-m", "-f", conf, "-u", role, TestRoles.Password(role));
            Assert.That(code, Is.Zero, stderr);
        }

        await using var poold = await PooldInstance.StartWithAuthAsync(Cluster, "host all all 127.0.0.1/32 scram-sha-256\n",
            await File.ReadAllTextAsync(Path.Combine(_dir, "pool_passwd")));
        foreach (var role in new[] { TestRoles.ScramUser, TestRoles.Md5User })
        {
            await using var connection = await poold.OpenAsync(role, TestRoles.Password(role));
            Assert.That(await new NpgsqlCommand("SELECT current_user", connection).ExecuteScalarAsync(), Is.EqualTo(role));
        }
    }

    [Test]
    public async Task KeyProblems_ExitOneWithAClearMessage()
    {
        var missing = await RunAsync(false, "-k", "absent", "secret");
        Assert.That((missing.Code, missing.Stderr), Is.EqualTo((1, missing.Stderr)));
        Assert.That(missing.Stderr, Does.Contain("does not exist").And.Contain("encryption key not provided"));

        File.SetUnixFileMode(Path.Combine(_dir, "key"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var open = await RunAsync(false, "-k", "key", "secret");
        Assert.That(open.Code, Is.EqualTo(1));
        Assert.That(open.Stderr, Does.Contain("chmod 600"));
        Assert.That(open.Stdout, Does.Not.Contain("pool_passwd string"));

        var tooLong = await RunAsync(false, "-K", "k", new string('x', 129));
        Assert.That(tooLong.Code, Is.EqualTo(1));
        Assert.That(tooLong.Stderr, Does.Contain("Input exceeds maximum password length given:129 max allowed:128!"));
    }
}
