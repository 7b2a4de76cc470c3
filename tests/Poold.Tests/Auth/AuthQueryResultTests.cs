using Poold.Auth;

namespace Poold.Tests.Auth;

public class AuthQueryResultTests
{
    private const string Verifier =
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    private static string?[] Row(string? name, string? password) => [name, password];

    [Test]
    public void OneRowWithAScramVerifier_IsFound()
    {
        var result = AuthQueryResult.FromRows("u", [Row("u", Verifier)]);
        Assert.That((result.Status, result.Problem), Is.EqualTo((AuthQueryStatus.Found, (string?)null)));
        Assert.That(result.Credential!.Verifier!.Iterations, Is.EqualTo(4096));
        Assert.That(result.Credential.Md5Hash, Is.Null);
    }

    [Test]
    public void OneRowWithAnMd5Hash_IsFound()
    {
        var hash = Md5Password.Hash("pw", "u");
        var result = AuthQueryResult.FromRows("u", [Row("u", hash)]);
        Assert.That(result.Status, Is.EqualTo(AuthQueryStatus.Found));
        Assert.That(result.Credential!.Md5For("u"), Is.EqualTo(hash));
    }

    [Test]
    public void NoRow_IsNotFound() =>
        Assert.That(AuthQueryResult.FromRows("u", []), Is.EqualTo(new AuthQueryResult(AuthQueryStatus.NotFound, null,
            "auth_query returned no row for user \"u\"")));

    [TestCase(null, "auth_query returned a NULL password for user \"u\": the user has no password")]
    [TestCase("SCRAM-SHA-256$4096:W22Z$WG5d8oPm3OtcPnkdi4Uo7Bk:wfPL", "auth_query returned a malformed SCRAM-SHA-256 verifier for user \"u\"")]
    [TestCase("md5xyz", "auth_query returned a password for user \"u\" that is neither a SCRAM-SHA-256 verifier nor an md5 hash")]
    [TestCase("md5ABCDEF0123456789ABCDEF0123456789", "auth_query returned a password for user \"u\" that is neither a SCRAM-SHA-256 verifier nor an md5 hash")]
    [TestCase("plain text", "auth_query returned a password for user \"u\" that is neither a SCRAM-SHA-256 verifier nor an md5 hash")]
    public void UnusablePassword_SaysWhy(string? password, string problem) =>
        Assert.That(AuthQueryResult.FromRows("u", [Row("u", password)]), Is.EqualTo(new AuthQueryResult(AuthQueryStatus.Unusable, null, problem)));

    [Test]
    public void TwoRows_IsAFailure() =>
        Assert.That(AuthQueryResult.FromRows("u", [Row("u", Verifier), Row("u", Verifier)]), Is.EqualTo(AuthQueryResult.Failed(
            "auth_query returned 2 rows for user \"u\"; it must return at most one (user name, password)")));

    [Test]
    public void WrongColumnCount_IsAFailure() =>
        Assert.That(AuthQueryResult.FromRows("u", [[Verifier]]).Problem,
            Is.EqualTo("auth_query returned 1 columns for user \"u\"; it must return two (user name, password)"));
}
