using System.Security.Cryptography;
using System.Text;
using Poold.Auth;

namespace Poold.Tests.Auth;

public class ScramServerExchangeTests
{
    // RFC 7677 §3: user "user", password "pencil".
    private const string ClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    private const string ServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    private const string ServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    private const string ClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    private const string ServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    private static ScramVerifier Pencil() => ScramVerifier.Create("pencil", Convert.FromBase64String("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    [Test]
    public void Exchange_Rfc7677Vector_IsReproducedExactly()
    {
        var server = new ScramServerExchange(Pencil(), channelBindingHash: null, ServerNonce);
        Assert.That(Encoding.UTF8.GetString(server.HandleClientFirst("SCRAM-SHA-256", Utf8(ClientFirst))), Is.EqualTo(ServerFirst));
        Assert.That(server.HandleClientFinal(Utf8(ClientFinal), out var final), Is.True);
        Assert.That(Encoding.UTF8.GetString(final), Is.EqualTo(ServerFinal));
        Assert.That(server.ClientKey, Is.Not.Null);
    }

    [Test]
    public void WrongProof_IsRejectedWithoutThrowing()
    {
        var server = new ScramServerExchange(Pencil(), channelBindingHash: null, ServerNonce);
        server.HandleClientFirst("SCRAM-SHA-256", Utf8(ClientFirst));
        var tampered = ClientFinal[..^10] + "AAAAAAAAA=";
        Assert.That(server.HandleClientFinal(Utf8(tampered), out var final), Is.False);
        Assert.That(final, Is.Empty);
    }

    [Test]
    public void OurClientAgainstOurServer_WithChannelBinding_Succeeds()
    {
        var binding = SHA256.HashData("certificate"u8);
        var server = new ScramServerExchange(ScramVerifier.ForPassword("u", new Secret("pässword")), binding);
        var client = new ScramClientExchange("pässword", binding);
        var mechanism = client.ChooseMechanism(ScramServerExchange.Mechanisms(plus: true));
        Assert.That(mechanism, Is.EqualTo("SCRAM-SHA-256-PLUS"));
        var serverFirst = server.HandleClientFirst(mechanism, client.ClientFirstMessage());
        Assert.That(server.HandleClientFinal(client.HandleServerFirst(serverFirst), out var final), Is.True);
        Assert.DoesNotThrow(() => client.VerifyServerFinal(final));
    }

    [Test]
    public void ChannelBindingOfAnotherCertificate_Fails()
    {
        var server = new ScramServerExchange(ScramVerifier.ForPassword("u", new Secret("pw")), SHA256.HashData("ours"u8));
        var client = new ScramClientExchange("pw", SHA256.HashData("the relay's"u8));
        var mechanism = client.ChooseMechanism(ScramServerExchange.Mechanisms(plus: true));
        var serverFirst = server.HandleClientFirst(mechanism, client.ClientFirstMessage());
        Assert.That(() => server.HandleClientFinal(client.HandleServerFirst(serverFirst), out _),
            Throws.TypeOf<ScramException>().With.Message.Contain("channel binding"));
    }

    [Test]
    public void ClientThatCouldBindButSawNoPlus_IsRefusedWhenPlusWasOffered()
    {
        var server = new ScramServerExchange(ScramVerifier.ForPassword("u", new Secret("pw")), SHA256.HashData("ours"u8));
        Assert.That(() => server.HandleClientFirst("SCRAM-SHA-256", Utf8("y,,n=,r=abc")),
            Throws.TypeOf<ScramException>().With.Message.Contain("downgrade"));
    }

    [TestCase("SCRAM-SHA-256", "n,a=admin,n=,r=abc", "authorization identity")]
    [TestCase("SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc", "did not select SCRAM-SHA-256-PLUS")]
    [TestCase("SCRAM-SHA-256-PLUS", "n,,n=,r=abc", "invalid SASL authentication mechanism")]
    [TestCase("SCRAM-SHA-1", "n,,n=,r=abc", "invalid SASL authentication mechanism")]
    [TestCase("SCRAM-SHA-256", "n,,n=,x=abc", "malformed")]
    [TestCase("SCRAM-SHA-256", "garbage", "malformed")]
    public void MalformedClientFirst_IsAProtocolError(string mechanism, string message, string expected)
    {
        var server = new ScramServerExchange(ScramVerifier.ForPassword("u", new Secret("pw")), channelBindingHash: null);
        Assert.That(() => server.HandleClientFirst(mechanism, Utf8(message)), Throws.TypeOf<ScramException>().With.Message.Contain(expected));
    }

    [Test]
    public void ForPassword_ReusesTheDerivedKeysForTheSamePassword_AndVerifierParsesPostgresFormat()
    {
        var a = ScramVerifier.ForPassword("cache-user", new Secret("pw1"));
        Assert.That(ScramVerifier.ForPassword("cache-user", new Secret("pw1")), Is.SameAs(a));
        Assert.That(ScramVerifier.ForPassword("cache-user", new Secret("pw2")), Is.Not.SameAs(a));
        Assert.That(ScramVerifier.TryParse("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", out var v), Is.True);
        Assert.That(v.Matches("pencil"), Is.True);
        Assert.That(ScramVerifier.TryParse("SCRAM-SHA-256$4096:salt", out _), Is.False);
    }

    [Test]
    public void Mock_HasTheSaltAStoredPasswordOfTheSameUserWouldHave_AndTheSameOnEveryAttempt()
    {
        var known = ScramVerifier.ForPassword("mock-user", new Secret("pw"));
        var unknown = ScramVerifier.Mock("mock-user");
        Assert.That((unknown.Salt, unknown.Iterations), Is.EqualTo((known.Salt, known.Iterations)));
        Assert.That(ScramVerifier.Mock("mock-user").Salt, Is.EqualTo(unknown.Salt), "repeated attempts look identical");
        Assert.That(ScramVerifier.Mock("other-user").Salt, Is.Not.EqualTo(unknown.Salt));
        Assert.That(unknown.Salt, Has.Length.EqualTo(16));
    }

    [Test]
    public void Mock_LikeAPoolPasswdPassword_CostsOnePbkdf2PerUser_CachedAsAStoredPasswordIs()
    {
        var first = ScramVerifier.Mock("mock-cost-user");
        Assert.That(ScramVerifier.Mock("mock-cost-user"), Is.SameAs(first), "derived once, then from the cache, as ForPassword's");
        Assert.That(ScramVerifier.Mock("mock-cost-user-2"), Is.Not.SameAs(first));
        Assert.That(first.Iterations, Is.EqualTo(ScramVerifier.DefaultIterations));
    }

    [Test]
    [NonParallelizable]
    public void Mock_LikeAuthQuery_OffersTheIterationCountOfTheDatabasesVerifiers()
    {
        var salted = ScramVerifier.Create("pw", new byte[16], 10_000);
        var text = $"SCRAM-SHA-256$10000:{Convert.ToBase64String(salted.Salt)}${Convert.ToBase64String(salted.StoredKey)}:{Convert.ToBase64String(salted.ServerKey)}";
        try
        {
            Assert.That(AuthQueryResult.FromRows("known", [["known", text]]).Status, Is.EqualTo(AuthQueryStatus.Found));
            var mock = ScramVerifier.Mock("unknown", likeAuthQuery: true);
            Assert.That((mock.Iterations, mock.Salt.Length), Is.EqualTo((10_000, 16)), "an unknown user is offered what a known one is");
            Assert.That(ScramVerifier.Mock("unknown", likeAuthQuery: true).StoredKey, Is.Not.EqualTo(mock.StoredKey), "no PBKDF2: random keys");
        }
        finally
        {
            ScramVerifier.NoteAuthQueryIterations(ScramVerifier.DefaultIterations);
        }
    }

    [Test]
    public void Mock_NoProofMatches_TheRightPasswordIncluded()
    {
        var server = new ScramServerExchange(ScramVerifier.Mock("u"), channelBindingHash: null);
        var client = new ScramClientExchange("pw", channelBindingHash: null);
        var first = server.HandleClientFirst(client.ChooseMechanism(["SCRAM-SHA-256"]), client.ClientFirstMessage());
        Assert.That(server.HandleClientFinal(client.HandleServerFirst(first), out _), Is.False);
    }
}
