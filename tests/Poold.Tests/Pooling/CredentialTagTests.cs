using Poold.Auth;
using Poold.Pooling;

namespace Poold.Tests.Pooling;

public class CredentialTagTests
{
    [Test]
    public void TheSamePassword_MatchesItself_AcrossSeparateCredentials()
    {
        var a = CredentialTag.Of(StoredCredential.FromPassword(new Secret("s3cret")));
        var b = CredentialTag.Of(StoredCredential.FromPassword(new Secret("s3cret")));
        Assert.That(a!.Matches(b!), Is.True);
    }

    [Test]
    public void AnotherPassword_OrTheSameTextAsAnMd5Hash_DoesNotMatch()
    {
        var password = CredentialTag.Of(StoredCredential.FromPassword(new Secret("md5abc")))!;
        Assert.That(password.Matches(CredentialTag.Of(StoredCredential.FromPassword(new Secret("md5abd")))!), Is.False);
        Assert.That(password.Matches(CredentialTag.Of(StoredCredential.FromMd5Hash("md5abc"))!), Is.False,
            "a password and a stored hash that happen to read the same are different credentials");
    }

    [Test]
    public void NoCredential_HasNoTag_AndTheTagNeverShowsTheSecret()
    {
        Assert.That(CredentialTag.Of(null), Is.Null);
        Assert.That(CredentialTag.Of(StoredCredential.FromPassword(new Secret("visible?")))!.ToString(), Does.Not.Contain("visible"));
    }
}
