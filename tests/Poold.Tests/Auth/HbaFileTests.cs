using System.Net;
using Poold.Auth.Hba;
using Poold.Config;

namespace Poold.Tests.Auth;

public class HbaFileTests
{
    private static HbaRequest Tcp(string address, string user = "alice", string database = "app", bool ssl = false) =>
        new(false, ssl, IPAddress.Parse(address), user, database);

    private static HbaRequest Local(string user = "alice", string database = "app") => new(true, false, null, user, database);

    private static HbaMethod? MethodFor(HbaFile file, HbaRequest request, bool sslEnabled = true) => file.Match(request, sslEnabled)?.Method;

    [Test]
    public void FirstMatchingRecordWins()
    {
        var file = HbaFile.Parse("""
            # comment line
            local   all        all                         trust
            host    app        alice   127.0.0.1/32        reject     # trailing comment
            host    all        all     127.0.0.0/8         scram-sha-256
            host    all        all     0.0.0.0/0           md5
            """, "pool_hba.conf");
        Assert.That(file.Records, Has.Count.EqualTo(4));
        Assert.That(MethodFor(file, Local()), Is.EqualTo(HbaMethod.Trust));
        Assert.That(MethodFor(file, Tcp("127.0.0.1")), Is.EqualTo(HbaMethod.Reject));
        Assert.That(MethodFor(file, Tcp("127.0.0.1", user: "bob")), Is.EqualTo(HbaMethod.ScramSha256));
        Assert.That(MethodFor(file, Tcp("127.0.0.2")), Is.EqualTo(HbaMethod.ScramSha256));
        Assert.That(MethodFor(file, Tcp("10.1.2.3")), Is.EqualTo(HbaMethod.Md5));
        Assert.That(MethodFor(file, Tcp("::1")), Is.Null, "IPv4 records never match IPv6 clients");
    }

    [Test]
    public void PhysicalReplication_IsMatchedOnlyByTheReplicationKeyword()
    {
        var file = HbaFile.Parse("""
            host    replication  repl   127.0.0.1/32   md5
            host    all          all    127.0.0.1/32   trust
            host    "replication" all   127.0.0.2/32   password
            """, "pool_hba.conf");
        var physical = Tcp("127.0.0.1", user: "repl") with { IsPhysicalReplication = true };
        Assert.That(MethodFor(file, physical), Is.EqualTo(HbaMethod.Md5));
        Assert.That(MethodFor(file, physical with { User = "other" }), Is.Null, "'all' does not match a physical replication connection");
        Assert.That(MethodFor(file, Tcp("127.0.0.1", user: "repl") with { Database = "replication" }), Is.EqualTo(HbaMethod.Trust),
            "the keyword does not match a database called replication");
        Assert.That(MethodFor(file, Tcp("127.0.0.2") with { Database = "replication" }), Is.EqualTo(HbaMethod.Password), "quoted, it is a name");
    }

    [Test]
    public void SslTypesMatchOnlyTheirKindOfConnection()
    {
        var file = HbaFile.Parse("hostssl all all all cert\nhostnossl all all all password\n", "f");
        Assert.That(MethodFor(file, Tcp("127.0.0.1", ssl: true)), Is.EqualTo(HbaMethod.Cert));
        Assert.That(MethodFor(file, Tcp("127.0.0.1", ssl: false)), Is.EqualTo(HbaMethod.Password));
        Assert.That(MethodFor(file, Tcp("127.0.0.1", ssl: true), sslEnabled: false), Is.Null, "hostssl never matches with ssl = off");
        Assert.That(MethodFor(file, Local()), Is.Null, "host records do not match the Unix socket");
    }

    [Test]
    public void DatabaseAndUserLists_Keywords_Quotes()
    {
        var file = HbaFile.Parse("""
            host sameuser         all          all  trust
            host "all"            bob          all  md5
            host db1,"db 2",db3   carol,dave   all  password
            host all              "all"        all  scram-sha-256
            """, "f");
        Assert.That(MethodFor(file, Tcp("1.2.3.4", user: "eve", database: "eve")), Is.EqualTo(HbaMethod.Trust));
        Assert.That(MethodFor(file, Tcp("1.2.3.4", user: "bob", database: "all")), Is.EqualTo(HbaMethod.Md5), "a quoted keyword is a name");
        Assert.That(MethodFor(file, Tcp("1.2.3.4", user: "bob", database: "other")), Is.Null);
        Assert.That(MethodFor(file, Tcp("1.2.3.4", user: "dave", database: "db 2")), Is.EqualTo(HbaMethod.Password));
        Assert.That(MethodFor(file, Tcp("1.2.3.4", user: "all", database: "x")), Is.EqualTo(HbaMethod.ScramSha256));
    }

    [Test]
    public void AddressForms_CidrMaskIpv6()
    {
        var file = HbaFile.Parse("""
            host all all 192.168.1.0 255.255.255.0 md5
            host all all ::1/128 trust
            host all all fd00::/8 password
            host all all 10.0.0.0/8 scram-sha-256
            """, "f");
        Assert.That(MethodFor(file, Tcp("192.168.1.77")), Is.EqualTo(HbaMethod.Md5));
        Assert.That(MethodFor(file, Tcp("192.168.2.77")), Is.Null);
        Assert.That(MethodFor(file, Tcp("::1")), Is.EqualTo(HbaMethod.Trust));
        Assert.That(MethodFor(file, Tcp("fd12::5")), Is.EqualTo(HbaMethod.Password));
        Assert.That(MethodFor(file, Tcp("::ffff:10.9.8.7")), Is.EqualTo(HbaMethod.ScramSha256), "IPv4-mapped clients match IPv4 records");
    }

    [Test]
    public void HostNameRecords_AreKnown_SoTheirDnsLookupsRunOffTheSocketThreads()
    {
        Assert.That(HbaFile.Parse("host all all db.example.com md5\n", "f").UsesHostNames, Is.True);
        Assert.That(HbaFile.Parse("host all all 10.0.0.0/8 md5\nhost all all .example.com md5\n", "f").UsesHostNames, Is.True);
        Assert.That(HbaFile.Parse("host all all 10.0.0.0/8 md5\nhost all all samehost trust\nlocal all all trust\n", "f").UsesHostNames, Is.False);
    }

    [Test]
    public void SamehostMatchesLoopback()
    {
        var file = HbaFile.Parse("host all all samehost trust\n", "f");
        Assert.That(MethodFor(file, Tcp("127.0.0.1")), Is.EqualTo(HbaMethod.Trust));
    }

    [Test]
    public void AtFile_IncludesNamesRelativeToTheHbaFile()
    {
        var dir = Directory.CreateTempSubdirectory("poold-hba-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "users.list"), "alice, bob\n# a comment\ncarol @more.list\n");
            File.WriteAllText(Path.Combine(dir, "more.list"), "dave\n");
            var path = Path.Combine(dir, "pool_hba.conf");
            File.WriteAllText(path, "host all @users.list all md5\n");
            var file = HbaFile.Load(path);
            foreach (var user in new[] { "alice", "bob", "carol", "dave" })
            {
                Assert.That(MethodFor(file, Tcp("1.1.1.1", user: user)), Is.EqualTo(HbaMethod.Md5), user);
            }

            Assert.That(MethodFor(file, Tcp("1.1.1.1", user: "erin")), Is.Null);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void IncludeNameWithNulByte_IsALineError()
    {
        // Found by fuzzing (corpus/hba/crash-*): the file system's ArgumentException escaped Parse, which a reload does not catch.
        var e = Assert.Throws<ConfigException>(() => HbaFile.Parse("host all @users\0.list all md5\n", "/etc/pool_hba.conf"));
        Assert.That(e!.Diagnostics.Single().ToString(), Does.StartWith("/etc/pool_hba.conf:1: could not open secondary authentication file"));
    }

    [Test]
    public void BadLines_AreAllReportedWithFileAndLine()
    {
        var e = Assert.Throws<ConfigException>(() => HbaFile.Parse("""
            host all all 127.0.0.1/32 trust
            hots all all 127.0.0.1/32 trust
            host all all 127.0.0.1/40 trust
            host all all 127.0.0.1 md5
            host all all all ldap
            host all all all magic
            local all all
            host all all all cert
            host all all "unterminated trust
            """, "/etc/pool_hba.conf"));
        var messages = e!.Diagnostics.Select(d => d.ToString()).ToList();
        Assert.That(messages, Has.Count.EqualTo(8));
        Assert.That(messages[0], Does.StartWith("/etc/pool_hba.conf:2: invalid connection type \"hots\""));
        Assert.That(messages[1], Does.StartWith("/etc/pool_hba.conf:3: invalid CIDR mask"));
        Assert.That(messages[2], Does.StartWith("/etc/pool_hba.conf:4: invalid IP mask \"md5\""));
        Assert.That(messages[3], Does.StartWith("/etc/pool_hba.conf:5:").And.Contain("not supported by Poold"));
        Assert.That(messages[4], Does.StartWith("/etc/pool_hba.conf:6: invalid authentication method \"magic\""));
        Assert.That(messages[5], Does.StartWith("/etc/pool_hba.conf:7: end-of-line before authentication method"));
        Assert.That(messages[6], Does.StartWith("/etc/pool_hba.conf:8: cert authentication is only supported on hostssl"));
        Assert.That(messages[7], Does.StartWith("/etc/pool_hba.conf:9: unterminated quoted string"));
    }

    [Test]
    public void UnsupportedPgpoolKeywords_LoadWithAWarningAndNeverMatch()
    {
        var file = HbaFile.Parse("host samerole +admins all trust\n", "f");
        Assert.That(file.Warnings, Has.Count.EqualTo(2));
        Assert.That(MethodFor(file, Tcp("1.1.1.1", user: "admins", database: "samerole")), Is.Null);
    }
}
