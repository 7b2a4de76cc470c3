using Poold.Auth;

namespace Poold.Tests.Auth;

public class PoolPasswdTests
{
    private static readonly Secret Key = new("mysecretkey");

    [Test]
    public void Parse_RecognisesEveryEntryKindByPrefix()
    {
        var file = PoolPasswd.Parse("""
            alice:AESYRai7zmB0fWbn5w5oqTKDw==
            bob:md50f3f71a3dd77afe47f64231994dfd347
            carol:TEXTcarolpw
            dave:davepw
            erin:md5short
            grace:SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=
            """, "pool_passwd");
        Assert.That(file.Find("alice")!.Kind, Is.EqualTo(PoolPasswdKind.Aes));
        Assert.That(file.Find("bob")!.Kind, Is.EqualTo(PoolPasswdKind.Md5));
        Assert.That(file.Find("carol")!.Kind, Is.EqualTo(PoolPasswdKind.Text));
        Assert.That(file.Find("dave")!.Kind, Is.EqualTo(PoolPasswdKind.Text));
        Assert.That(file.Find("erin")!.Kind, Is.EqualTo(PoolPasswdKind.Text), "md5 of the wrong length is a plain password");
        Assert.That(file.Find("grace")!.Kind, Is.EqualTo(PoolPasswdKind.Scram));

        Assert.That(file.Find("alice")!.Resolve(Key).Password!.Reveal(), Is.EqualTo("secret"));
        Assert.That(file.Find("bob")!.Resolve(Key).Md5Hash!.Reveal(), Is.EqualTo("md50f3f71a3dd77afe47f64231994dfd347"));
        Assert.That(file.Find("carol")!.Resolve(null).Password!.Reveal(), Is.EqualTo("carolpw"));
        Assert.That(file.Find("dave")!.Resolve(null).Password!.Reveal(), Is.EqualTo("davepw"));
        Assert.That(file.Find("erin")!.Resolve(null).Password!.Reveal(), Is.EqualTo("md5short"));
        Assert.That(file.Find("grace")!.Resolve(null).Verifier!.Matches("pencil"), Is.True, "RFC 7677's verifier for 'pencil'");
    }

    [Test]
    public void Parse_UserNamesUnescapeAndExtraFieldsAreIgnored()
    {
        var file = PoolPasswd.Parse("we\\:ird\\\\name:TEXTpw\nmapped:TEXTpw2:backenduser:backendpw\n", "f");
        Assert.That(file.Find("we:ird\\name")!.Resolve(null).Password!.Reveal(), Is.EqualTo("pw"));
        Assert.That(file.Find("mapped")!.Resolve(null).Password!.Reveal(), Is.EqualTo("pw2"));
    }

    [Test]
    public void Parse_FirstLineForAUserWins_AndCrlfIsDropped()
    {
        var file = PoolPasswd.Parse("u:TEXTfirst\r\nu:TEXTsecond\r\n\r\n#comment:TEXTx\n", "f");
        Assert.That(file.Find("u")!.Resolve(null).Password!.Reveal(), Is.EqualTo("first"));
        Assert.That(file.Find("u")!.Line, Is.EqualTo(1));
        Assert.That(file.Find("#comment"), Is.Not.Null, "no comment syntax: pgpool reads it as a user");
    }

    [Test]
    public void Resolve_AesWithoutOrWithWrongKey_NamesFileAndLine()
    {
        var file = PoolPasswd.Parse("x:TEXTa\nalice:AESYRai7zmB0fWbn5w5oqTKDw==\nbad:AES@@@\n", "/etc/pool_passwd");
        Assert.That(() => file.Find("alice")!.Resolve(null),
            Throws.TypeOf<PoolPasswdException>().With.Message.StartWith("/etc/pool_passwd:2:").And.Message.Contain("no key"));
        Assert.That(() => file.Find("alice")!.Resolve(new Secret("wrong")),
            Throws.TypeOf<PoolPasswdException>().With.Message.Contain("wrong key file"));
        Assert.That(() => file.Find("bad")!.Resolve(Key),
            Throws.TypeOf<PoolPasswdException>().With.Message.StartWith("/etc/pool_passwd:3:").And.Message.Contain("base64"));
    }

    [Test]
    public void StoredCredential_MatchesCleartextForEveryKind()
    {
        Assert.That(StoredCredential.FromPassword(new Secret("pw")).Matches("pw", "u"), Is.True);
        Assert.That(StoredCredential.FromPassword(new Secret("pw")).Matches("PW", "u"), Is.False);
        Assert.That(StoredCredential.FromMd5Hash(Md5Password.Hash("pw", "u")).Matches("pw", "u"), Is.True);
        Assert.That(StoredCredential.FromMd5Hash(Md5Password.Hash("pw", "u")).Matches("pw", "v"), Is.False);
        Assert.That(StoredCredential.FromMd5Hash(Md5Password.Hash("pw", "u")).Md5For("u"), Is.EqualTo(Md5Password.Hash("pw", "u")));
    }

    [Test]
    public void Writer_ReplacesTheUsersLineInPlace_AppendsNewUsers_KeepsMode()
    {
        var dir = Directory.CreateTempSubdirectory("poold-pp-").FullName;
        try
        {
            var path = Path.Combine(dir, "pool_passwd");
            File.WriteAllText(path, "a:TEXT1\nb:TEXT2\nc:TEXT3\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
            PoolPasswdWriter.Upsert(path, "b", "AESnew");
            PoolPasswdWriter.Upsert(path, "d:x", "TEXT4");
            Assert.That(File.ReadAllText(path), Is.EqualTo("a:TEXT1\nb:AESnew\nc:TEXT3\nd\\:x:TEXT4\n"));
            Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead));
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary file left behind");

            var fresh = Path.Combine(dir, "new_passwd");
            PoolPasswdWriter.Upsert(fresh, "u", "TEXTx");
            Assert.That(File.GetUnixFileMode(fresh), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
