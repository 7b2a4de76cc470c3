using Poold.Config;

namespace Poold.Tests.Config;

public class PooldSettingsLoadTests
{
    private static string TestData(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Config", "TestData", name);

    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("poold-conf-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Test]
    public void Load_RealWorldThreeNodeConfig_ReadsEverything()
    {
        var (s, warnings) = PooldSettings.Load(TestData("pgpool-3nodes.conf"));

        Assert.That(warnings, Is.Empty, () => string.Join("\n", warnings));
        Assert.Multiple(() =>
        {
            Assert.That(s.Backends.Select(b => (b.Hostname, b.Port, b.Weight)),
                Is.EqualTo(new[] { ("server1", 5432, 1.0), ("server2", 5432, 1.0), ("server3", 5432, 2.0) }));
            Assert.That(s.Backends.Select(b => b.NormalizedWeight), Is.EqualTo(new[] { 0.25, 0.25, 0.5 }));
            Assert.That(s.Backends[2].AllowsFailover, Is.False);
            Assert.That(s.Backends.Select(b => b.ApplicationName), Is.EqualTo(new[] { "server1", "server2", "server3" }));
            Assert.That(s.Get(Params.UnixSocketDirectories), Is.EqualTo(new[] { "/var/run/postgresql" }));
            Assert.That(s.Get(Params.PcpListenAddresses), Is.EqualTo(new[] { "*" }));
            Assert.That(s.Get(Params.EnablePoolHba), Is.True);
            Assert.That(s.Get(Params.Ssl), Is.True);
            Assert.That(s.ResolvePath(s.Get(Params.SslCert)), Is.EqualTo(TestData("server.crt")));
            Assert.That(s.ResolvePath(s.Get(Params.PoolPasswd)), Is.EqualTo(TestData("pool_passwd")));
            Assert.That(s.Get(Params.AuthenticationTimeout), Is.EqualTo(TimeSpan.FromMinutes(1)));
            Assert.That(s.Get(Params.NumInitChildren), Is.EqualTo(64), "set by the included file, which comes last");
            Assert.That(s.Get(Params.WriteFunctionList), Is.EqualTo(new[] { "nextval", "setval", "myfunc_.*" }));
            Assert.That(s.Get(Params.PrimaryRoutingQueryPatternList), Is.EqualTo(new[] { "SELECT .* FOR UPDATE", ".*pg_advisory_lock.*" }));
            Assert.That(s.Get(Params.DatabaseRedirectPreferenceList), Is.EqualTo(new[] { "postgres:primary", "mydb[0-4]:1", "mydb5:2(0.3)" }));
            Assert.That(s.Get(Params.SrCheckUser), Is.EqualTo("pgpool"));
            Assert.That(s.Get(Params.DelayThreshold), Is.EqualTo(10_000_000));
            Assert.That(s.Get(Params.HealthCheckPeriod, 0), Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(s.Get(Params.HealthCheckPeriod, 2), Is.EqualTo(TimeSpan.Zero));
            Assert.That(s.Get(Params.HealthCheckMaxRetries, 1), Is.EqualTo(3));
            Assert.That(s.Get(Params.SearchPrimaryNodeTimeout), Is.EqualTo(TimeSpan.FromMinutes(5)));
            Assert.That(s.Get(Params.FailoverCommand), Does.StartWith("/etc/pgpool-II/failover.sh %d"));
            Assert.That(s.Get(Params.LogPerNodeStatement), Is.True);
        });
    }

    [Test]
    public void Load_SampleConfig_DocumentsEveryParameterPooldHonours()
    {
        var sample = Path.Combine(RepositoryRoot(), "etc", "poold.conf");
        var (s, warnings) = PooldSettings.Load(sample);
        Assert.That(warnings, Is.Empty, () => string.Join("\n", warnings));
        Assert.That(s.Backends, Has.Length.EqualTo(1));

        var text = File.ReadAllText(sample);
        var undocumented = Params.All
            .Select(p => p.Scope == NodeScope.PerNode ? p.Name + "0" : p.Name)
            .Where(name => !System.Text.RegularExpressions.Regex.IsMatch(text, $@"^#?{name}\s*=", System.Text.RegularExpressions.RegexOptions.Multiline));
        Assert.That(undocumented, Is.Empty, "every parameter Poold reads is shown in etc/poold.conf");
    }

    [Test]
    public void Load_MissingFile_ReportsThePath()
    {
        var path = Path.Combine(_dir, "nope.conf");
        var e = Assert.Throws<ConfigException>(() => PooldSettings.Load(path))!;
        Assert.That(e.Message, Is.EqualTo($"{path}: could not read configuration file: no such file"));
    }

    [Test]
    public void Load_MissingInclude_ReportsTheIncludingLine()
    {
        var path = Write("main.conf", "port = 1\ninclude 'missing.conf'\n");
        var e = Assert.Throws<ConfigException>(() => PooldSettings.Load(path))!;
        Assert.That(e.Message, Is.EqualTo($"{path}:2: could not read included file \"{Path.Combine(_dir, "missing.conf")}\": no such file"));
    }

    [Test]
    public void Load_ErrorInIncludedFile_ReportsThatFileAndLine()
    {
        Write("sub.conf", "\n\nport = nope\n");
        var path = Write("main.conf", "include 'sub.conf'\n");
        var e = Assert.Throws<ConfigException>(() => PooldSettings.Load(path))!;
        Assert.That(e.Message, Does.StartWith($"{Path.Combine(_dir, "sub.conf")}:3: invalid value for parameter \"port\""));
    }

    [Test]
    public void Load_NulByteInALine_IsASyntaxError()
    {
        // Found while fixing the same fuzzing find in pool_hba.conf: an include (or any path) with a NUL made the file
        // API throw ArgumentException out of Load, which a reload does not catch.
        var path = Write("main.conf", "include 'a\0b.conf'\npid_file_name = '/tmp/x\0y'\n");
        var e = Assert.Throws<ConfigException>(() => PooldSettings.Load(path))!;
        Assert.That(e.Diagnostics.Select(d => d.ToString()),
            Is.EqualTo(new[] { $"{path}:1: syntax error: NUL byte at column 11", $"{path}:2: syntax error: NUL byte at column 24" }));
    }

    [Test]
    public void Load_SelfInclude_StopsAtTheDepthLimit()
    {
        var path = Write("loop.conf", "include 'loop.conf'\n");
        var e = Assert.Throws<ConfigException>(() => PooldSettings.Load(path))!;
        Assert.That(e.Message, Does.Contain("nested more than 10 levels deep"));
    }

    [Test]
    public void Load_SyntaxAndValueErrors_AreAllReported()
    {
        var path = Write("bad.conf", "listen_addresses = 127.0.0.1\nport = 99999\nunknown_thing = 1\n");
        var e = Assert.Throws<ConfigException>(() => PooldSettings.Load(path))!;
        Assert.That(e.Diagnostics.Select(d => d.ToString()), Is.EqualTo(new[]
        {
            $"{path}:1: syntax error near \".0\": expected the end of the line after the value (quote values that contain '.' after a digit, spaces or other symbols)",
            $"{path}:2: invalid value for parameter \"port\": 99999 is outside the valid range 1..65535",
            $"{path}:3: warning: unrecognized configuration parameter \"unknown_thing\" (ignored)",
        }));
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Poold.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Poold.sln not found above the test directory");
    }
}
