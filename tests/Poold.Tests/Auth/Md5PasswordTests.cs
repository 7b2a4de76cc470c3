using System.Text;
using Poold.Auth;

namespace Poold.Tests.Auth;

public class Md5PasswordTests
{
    // Vectors recorded from Debian's pg_md5 4.3.5 and PostgreSQL 15's pg_authid (pgpool-compat.md Appendix A).
    [TestCase("secret", "alice", "md54a0a68b43b6cd5cf266fa02f196e2371")]
    [TestCase("bobpw", "bob", "md50f3f71a3dd77afe47f64231994dfd347")]
    public void Hash_MatchesPostgres(string password, string user, string expected) =>
        Assert.That(Md5Password.Hash(password, user), Is.EqualTo(expected));

    [TestCase("secret", "5ebe2294ecd0e0f08eab7690d2a6ee69")]
    [TestCase("pcppass", "0d0e5266f9ff6a4235a45222acf90cbb")]
    public void PcpHash_MatchesPgMd5(string password, string expected) => Assert.That(Md5Password.PcpHash(password), Is.EqualTo(expected));

    [Test]
    public void SaltedResponse_MatchesThePcpCapture()
    {
        // PCP salts the same way, over md5(pcp.conf hash ‖ user); capture in pgpool-compat.md Appendix C.
        var stored = "md5" + Md5Password.PcpHash(Md5Password.PcpHash("pcppass") + "pcpadmin");
        Assert.That(stored, Is.EqualTo("md51b8b3b27f78c40852d861a577971e03c"));
        Assert.That(Md5Password.SaltedResponse(stored, Convert.FromHexString("d1b1fcea")), Is.EqualTo("md56c8b67a166bf8aa0e594e339d0c2b0b1"));
    }

    [Test]
    public void Verify_RightAndWrongResponses()
    {
        var stored = Md5Password.Hash("secret", "alice");
        var salt = new byte[] { 1, 2, 3, 4 };
        var right = Encoding.ASCII.GetBytes(Md5Password.SaltedResponse(stored, salt));
        Assert.That(Md5Password.Verify(stored, salt, right), Is.True);
        Assert.That(Md5Password.Verify(stored, new byte[] { 1, 2, 3, 5 }, right), Is.False);
        Assert.That(Md5Password.Verify(Md5Password.Hash("other", "alice"), salt, right), Is.False);
    }
}
